//! The durable store's directory: which generation is live (`CURRENT`),
//! opening and recovering it, and switching to a received snapshot's
//! //! generation in one rename (prepared beside the live one, then published).
//! The layout is drawn in `disk/format.rs`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::event_store::{invalid, read_error, recover, validate_snapshot, Generation};
use super::request_ids::RequestIds;
use crate::disk::format::{
    AppliedState, SnapshotRecord, CURRENT_FILE, DAT_FILE, GEN_PREFIX, INCOMING_PREFIX, SNAPSHOT_FILE,
};
use crate::disk::{atomic_write, read_json, sync_dir, DataDirError};
use crate::types::SnapshotMeta;

/// The durable store's directory: generations and the `CURRENT` pointer.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    current: u64,
}

/// A received snapshot made into a generation, not yet live.
pub struct Prepared {
    incoming: PathBuf,
    generation: Generation,
    snapshot: SnapshotRecord,
}

/// What opening a store found.
pub struct Recovered {
    pub generation: Generation,
    pub state: AppliedState,
    pub snapshot: Option<SnapshotRecord>,
    pub request_ids: RequestIds,
}

impl StateDir {
    /// Opens the store in `dir`: the live generation, recovered to its last
    /// whole record. Leftovers of an interrupted install are removed.
    pub fn open(dir: &Path) -> Result<(Self, Recovered), DataDirError> {
        fs::create_dir_all(dir).map_err(|e| DataDirError::write(dir, e))?;
        let current_path = dir.join(CURRENT_FILE);
        let current = match fs::read_to_string(&current_path) {
            Ok(name) => parse_generation(name.trim())
                .ok_or_else(|| DataDirError::corrupt(&current_path, format!("names no generation: {name:?}")))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let first = 1;
                let gen_dir = dir.join(generation_name(first));
                if gen_dir.exists() {
                    fs::remove_dir_all(&gen_dir).map_err(|e| DataDirError::write(&gen_dir, e))?;
                }
                fs::create_dir(&gen_dir).map_err(|e| DataDirError::write(&gen_dir, e))?;
                atomic_write(&current_path, generation_name(first).as_bytes())
                    .map_err(|e| DataDirError::write(&current_path, e))?;
                first
            }
            Err(err) => return Err(DataDirError::unreadable(&current_path, err)),
        };
        let state_dir = Self { dir: dir.to_path_buf(), current };
        state_dir.remove_leftovers().map_err(|e| DataDirError::write(dir, e))?;

        let gen_dir = state_dir.generation_dir(current);
        if !gen_dir.is_dir() {
            return Err(DataDirError::corrupt(
                dir,
                format!("{CURRENT_FILE} names {} which is missing", gen_dir.display()),
            ));
        }
        let generation = Generation::open(&gen_dir).map_err(|e| DataDirError::unreadable(&gen_dir, e))?;
        let snapshot_path = gen_dir.join(SNAPSHOT_FILE);
        let snapshot: Option<SnapshotRecord> = read_json(&snapshot_path)?;
        let state = recover(&generation, snapshot.as_ref().map(|s| s.state.clone()), &gen_dir)?;
        // What was recovered may be a crashed process's unsynced writes, still
        // only in the page cache: make it durable, since the durable
        // watermark starts here and the log may be purged up to it.
        generation.sync().map_err(|e| DataDirError::write(&gen_dir, e))?;
        let request_ids = generation.load_request_ids(&state).map_err(|e| read_error(&gen_dir, e))?;
        Ok((state_dir, Recovered { generation, state, snapshot, request_ids }))
    }

    /// Writes `snapshot.json` into the live generation.
    pub fn save_snapshot(&self, generation: &Generation, snapshot: &SnapshotRecord) -> io::Result<()> {
        let Some(dir) = &generation.dir else { return Ok(()) };
        let bytes = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
        atomic_write(&dir.join(SNAPSHOT_FILE), &bytes)
    }

    /// A fresh directory to receive a snapshot into; returns the path of the
    /// event file to write.
    pub fn new_incoming(&self) -> io::Result<PathBuf> {
        let dir = self.dir.join(format!("{INCOMING_PREFIX}{}", self.current + 1));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir(&dir)?;
        Ok(dir.join(DAT_FILE))
    }

    /// Makes the received event file at `dat_path` a complete generation
    /// for `meta`, beside the live one: validates every record, builds the
    /// index, fsyncs it and writes its `snapshot.json`. Nothing is switched
    /// yet; see [`StateDir::publish`].
    pub fn prepare(&self, dat_path: &Path, meta: &SnapshotMeta) -> io::Result<Prepared> {
        let incoming = dat_path.parent().ok_or_else(|| invalid("snapshot file has no directory"))?.to_path_buf();
        let generation = Generation::open(&incoming)?;
        let snapshot = validate_snapshot(&generation, meta)?;
        generation.sync()?;
        atomic_write(&incoming.join(SNAPSHOT_FILE), &serde_json::to_vec(&snapshot).map_err(io::Error::other)?)?;
        Ok(Prepared { incoming, generation, snapshot })
    }

    /// Makes a prepared generation the live one: one rename of `CURRENT`,
    /// fsynced. The replaced generation's directory is then deleted.
    pub fn publish(&mut self, prepared: Prepared) -> io::Result<(Generation, SnapshotRecord)> {
        let Prepared { incoming, generation, snapshot } = prepared;
        let next = self.current + 1;
        let next_dir = self.generation_dir(next);
        if next_dir.exists() {
            fs::remove_dir_all(&next_dir)?;
        }
        fs::rename(&incoming, &next_dir)?;
        sync_dir(&self.dir)?;
        atomic_write(&self.dir.join(CURRENT_FILE), generation_name(next).as_bytes())?;
        let previous = self.generation_dir(self.current);
        self.current = next;
        if let Err(err) = fs::remove_dir_all(&previous) {
            tracing::warn!(dir = %previous.display(), %err, "cannot remove the replaced state; it is removed at the next start");
        }
        Ok((generation.moved_to(next_dir), snapshot))
    }

    fn generation_dir(&self, generation: u64) -> PathBuf {
        self.dir.join(generation_name(generation))
    }

    fn remove_leftovers(&self) -> io::Result<()> {
        for dirent in fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            let stale_generation = parse_generation(&name).is_some_and(|g| g != self.current);
            if stale_generation || name.starts_with(INCOMING_PREFIX) {
                fs::remove_dir_all(dirent.path())?;
            } else if name.ends_with(".tmp") {
                fs::remove_file(dirent.path())?;
            }
        }
        Ok(())
    }
}

/// Makes `dir`, a state directory that does not exist yet, hold a
/// snapshot for `meta` as if it had been received and installed: `write_dat`
/// writes its event file, which is then validated, indexed and published
/// as the live generation, by the same steps as an install. Returns the
/// state it holds. `gameraft restore` builds a new cluster's first node
/// this way.
pub fn install_restored(
    dir: &Path,
    meta: &SnapshotMeta,
    write_dat: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<SnapshotRecord> {
    if dir.exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", dir.display())));
    }
    let (mut state_dir, _empty) = StateDir::open(dir).map_err(io::Error::other)?;
    let dat_path = state_dir.new_incoming()?;
    write_dat(&dat_path)?;
    let prepared = state_dir.prepare(&dat_path, meta)?;
    let (_generation, record) = state_dir.publish(prepared)?;
    sync_dir(dir)?;
    Ok(record)
}

fn generation_name(generation: u64) -> String {
    format!("{GEN_PREFIX}{generation:06}")
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix(GEN_PREFIX)?.parse().ok()
}
