//! The committed events on disk (or in memory for `--in-memory` nodes).
//!
//! ```text
//! state/
//!   CURRENT                 name of the live generation, replaced atomically
//!   gen-000001/
//!     events.dat            one checksummed record per applied Raft entry
//!     events.idx            event position -> offset of its record (u64 LE)
//!     snapshot.json         the snapshot: its meta and the events.dat length it covers
//!   incoming-<n>/           a snapshot being received; becomes the next generation
//! ```
//!
//! Every applied entry, blank and membership ones included, is one record,
//! so the last record *is* `last_applied`, and membership changes are in
//! the same file: the state and what it was applied up to cannot disagree.
//! `events.dat` is append-only, so a snapshot is just its length at build
//! time (after an fsync): building one copies nothing.
//!
//! Records after the snapshot are not fsynced: after a crash they may be cut
//! short. Recovery replays from the snapshot point, cuts a torn tail, and
//! rebuilds the index for what it replays; OpenRaft re-applies the rest from
//! the log, which keeps everything after the snapshot. Installing a received
//! snapshot builds a whole new generation beside the live one and switches
//! `CURRENT` in one rename: a crash leaves the old state or the new.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::CriticalEvent;
use crate::storage::record::{self, ScanEnd};
use crate::storage::{atomic_write, read_json, sync_dir, ByteFile, DataDirError};
use crate::types::{LogId, Membership, SnapshotMeta, StoredMembership};

const CURRENT_FILE: &str = "CURRENT";
const DAT_FILE: &str = "events.dat";
const IDX_FILE: &str = "events.idx";
const SNAPSHOT_FILE: &str = "snapshot.json";
const INCOMING_PREFIX: &str = "incoming-";
const GEN_PREFIX: &str = "gen-";

/// One applied Raft entry, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct AppliedEntry {
    log_id: LogId,
    /// Event position of this entry's first event (the event count before it).
    first_position: u64,
    payload: AppliedPayload,
}

#[derive(Debug, Serialize, Deserialize)]
enum AppliedPayload {
    Blank,
    Membership(Membership),
    Events(Vec<CriticalEvent>),
}

/// How far the store has applied, and what that produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub event_count: u64,
    /// Length of `events.dat` holding exactly the records applied.
    pub dat_len: u64,
}

/// The content of `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub meta: SnapshotMeta,
    pub state: AppliedState,
}

/// One generation of the store: an event file and its index.
#[derive(Debug)]
pub struct Generation {
    /// `None` for an in-memory store.
    pub dir: Option<PathBuf>,
    pub dat: ByteFile,
    idx: ByteFile,
}

impl Generation {
    pub fn memory() -> Self {
        Self { dir: None, dat: ByteFile::memory(), idx: ByteFile::memory() }
    }

    /// An in-memory generation holding received snapshot bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { dir: None, dat: ByteFile::Memory(std::sync::RwLock::new(bytes)), idx: ByteFile::memory() }
    }

    fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: Some(dir.to_path_buf()),
            dat: ByteFile::open(&dir.join(DAT_FILE))?,
            idx: ByteFile::open(&dir.join(IDX_FILE))?,
        })
    }

    pub fn dat_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(DAT_FILE))
    }

    /// Appends the records for `entries`, updating `state`. Returns, per
    /// entry, the position of its first event and how many it had.
    pub fn append(&self, state: &mut AppliedState, entries: Vec<Applied>) -> io::Result<Vec<(u64, u64)>> {
        let mut dat = Vec::new();
        let mut idx = Vec::new();
        let mut results = Vec::with_capacity(entries.len());
        for applied in entries {
            let record_offset = state.dat_len + dat.len() as u64;
            let first_position = state.event_count;
            let payload = match applied.payload {
                AppliedPayloadIn::Blank => AppliedPayload::Blank,
                AppliedPayloadIn::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(applied.log_id), membership.clone());
                    AppliedPayload::Membership(membership)
                }
                AppliedPayloadIn::Events(events) => {
                    for _ in &events {
                        idx.extend_from_slice(&record_offset.to_le_bytes());
                    }
                    state.event_count += events.len() as u64;
                    AppliedPayload::Events(events)
                }
            };
            let entry = AppliedEntry { log_id: applied.log_id, first_position, payload };
            record::encode(&mut dat, &serde_json::to_vec(&entry).map_err(io::Error::other)?);
            state.last_applied = Some(applied.log_id);
            results.push((first_position, state.event_count - first_position));
        }
        // Data first: an index entry must never point past the data.
        self.dat.append(&dat)?;
        self.idx.append(&idx)?;
        state.dat_len += dat.len() as u64;
        Ok(results)
    }

    /// Up to `limit` events from position `from`, with the Raft index of the
    /// entry that carried each; `count` bounds what is visible.
    pub fn read_events(&self, from: u64, limit: u64, count: u64) -> io::Result<Vec<(u64, CriticalEvent)>> {
        let end = from.saturating_add(limit).min(count);
        if from >= end {
            return Ok(Vec::new());
        }
        let mut offset_bytes = [0u8; 8];
        self.idx.read_exact_at(&mut offset_bytes, from * 8)?;
        let mut offset = u64::from_le_bytes(offset_bytes);
        let mut out = Vec::with_capacity(usize::try_from(end - from).unwrap_or(0));
        while (from + out.len() as u64) < end {
            let payload = record::read_at(&self.dat, offset)?;
            offset += record::HEADER_LEN + payload.len() as u64;
            let entry: AppliedEntry = serde_json::from_slice(&payload).map_err(invalid)?;
            let AppliedPayload::Events(events) = entry.payload else { continue };
            for (position, event) in (entry.first_position..).zip(events) {
                if position >= from && position < end {
                    out.push((entry.log_id.index, event));
                }
            }
        }
        Ok(out)
    }

    /// Replays records from `state.dat_len` to the end (or the first bad
    /// record), writing their index entries and advancing `state`.
    fn replay(&self, state: &mut AppliedState) -> io::Result<ScanEnd> {
        let mut idx = Vec::new();
        let end = record::scan(self.dat.reader_at(state.dat_len), state.dat_len, |offset, payload| {
            let entry: AppliedEntry = serde_json::from_slice(payload).map_err(invalid)?;
            if entry.first_position != state.event_count {
                return Err(invalid(format!(
                    "record at offset {offset} starts at event {} but {} events precede it",
                    entry.first_position, state.event_count
                )));
            }
            if state.last_applied.is_some_and(|last| last.index >= entry.log_id.index) {
                return Err(invalid(format!("record at offset {offset} repeats log index {}", entry.log_id.index)));
            }
            match entry.payload {
                AppliedPayload::Blank => {}
                AppliedPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
                AppliedPayload::Events(events) => {
                    for _ in &events {
                        idx.extend_from_slice(&offset.to_le_bytes());
                    }
                    state.event_count += events.len() as u64;
                }
            }
            state.last_applied = Some(entry.log_id);
            if idx.len() >= 1 << 20 {
                self.idx.append(&idx)?;
                idx.clear();
            }
            Ok(())
        })?;
        self.idx.append(&idx)?;
        state.dat_len = end.clean_len;
        Ok(end)
    }

    /// Makes every record and index entry written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.dat.sync()?;
        self.idx.sync()
    }
}

/// An entry to apply, already taken apart.
pub struct Applied {
    pub log_id: LogId,
    pub payload: AppliedPayloadIn,
}

pub enum AppliedPayloadIn {
    Blank,
    Membership(Membership),
    Events(Vec<CriticalEvent>),
}

/// The durable store's directory: generations and the `CURRENT` pointer.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    current: u64,
}

/// What opening a store found.
pub struct Recovered {
    pub generation: Generation,
    pub state: AppliedState,
    pub snapshot: Option<SnapshotRecord>,
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
        Ok((state_dir, Recovered { generation, state, snapshot }))
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

    /// Turns the received event file at `dat_path` into the live generation
    /// for `meta`. Validates every record first; the switch is one rename of
    /// `CURRENT`.
    pub fn install(&mut self, dat_path: &Path, meta: &SnapshotMeta) -> io::Result<(Generation, SnapshotRecord)> {
        let incoming = dat_path.parent().ok_or_else(|| invalid("snapshot file has no directory"))?.to_path_buf();
        let generation = Generation::open(&incoming)?;
        let snapshot = validate_snapshot(&generation, meta)?;
        generation.sync()?;
        atomic_write(&incoming.join(SNAPSHOT_FILE), &serde_json::to_vec(&snapshot).map_err(io::Error::other)?)?;

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
        // The open files followed the rename; only the recorded path changes.
        Ok((Generation { dir: Some(next_dir), ..generation }, snapshot))
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

/// Builds the state of a received snapshot held in `generation` (its index
/// is rebuilt) and checks it ends where `meta` says.
pub fn validate_snapshot(generation: &Generation, meta: &SnapshotMeta) -> io::Result<SnapshotRecord> {
    generation.idx.truncate(0)?;
    let mut state = AppliedState::default();
    let end = generation.replay(&mut state)?;
    if let Some(bad) = end.bad {
        return Err(invalid(format!(
            "received snapshot {} is damaged at offset {}: {bad}",
            meta.snapshot_id, end.clean_len
        )));
    }
    if state.last_applied != meta.last_log_id {
        return Err(invalid(format!(
            "received snapshot {} ends at {:?} but its meta says {:?}",
            meta.snapshot_id, state.last_applied, meta.last_log_id
        )));
    }
    // OpenRaft's meta is authoritative for membership (it may be newer than
    // the last membership entry applied, see `applied_state`).
    state.membership = meta.last_membership.clone();
    Ok(SnapshotRecord { meta: meta.clone(), state })
}

/// Brings `generation` to its last whole record, starting from the
/// snapshot's state (trusted: it was fsynced) or from nothing.
fn recover(generation: &Generation, from: Option<AppliedState>, dir: &Path) -> Result<AppliedState, DataDirError> {
    let mut state = from.unwrap_or_default();
    let dat_len = generation.dat.len().map_err(|e| DataDirError::unreadable(dir, e))?;
    if dat_len < state.dat_len {
        return Err(DataDirError::corrupt(
            dir,
            format!("{DAT_FILE} has {dat_len} bytes but the snapshot covers {}", state.dat_len),
        ));
    }
    let idx_len = generation.idx.len().map_err(|e| DataDirError::unreadable(dir, e))?;
    if idx_len < state.event_count * 8 {
        tracing::warn!(dir = %dir.display(), "event index shorter than the snapshot; rebuilding it");
        state = AppliedState::default();
    }
    generation.idx.truncate(state.event_count * 8).map_err(|e| DataDirError::write(dir, e))?;
    let end = generation.replay(&mut state).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => DataDirError::corrupt(dir, e.to_string()),
        _ => DataDirError::unreadable(dir, e),
    })?;
    if let Some(bad) = end.bad {
        tracing::warn!(dir = %dir.display(), at = end.clean_len, %bad, "cutting unsynced records torn by a crash; the log re-applies them");
        generation.dat.truncate(end.clean_len).map_err(|e| DataDirError::write(dir, e))?;
    }
    Ok(state)
}

fn generation_name(generation: u64) -> String {
    format!("{GEN_PREFIX}{generation:06}")
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix(GEN_PREFIX)?.parse().ok()
}

fn invalid(err: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}
