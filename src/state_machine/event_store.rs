//! The committed events on disk (or in memory for `--in-memory` nodes): the
//! event list of one generation, `state/gen-<n>/events.dat` and its index
//! (the files and their records are drawn in `disk/format.rs`).
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
//!
//! Each event is stored with its request id and its fingerprint, and each
//! entry's record with its log time and the request-id window it carried,
//! so the ids of the last window (the state machine's duplicate check,
//! `request_ids.rs`) can be rebuilt from the file alone: after a restart,
//! or from a received snapshot.

use std::io;
use std::path::{Path, PathBuf};

use super::request_ids::{RequestIds, Seen};
use super::CommittedEvent;
use crate::disk::format::{AppliedEntry, AppliedPayload, AppliedState, IdsOfEntry, SnapshotRecord, DAT_FILE, IDX_FILE};
use crate::disk::record::{self, ScanEnd};
use crate::disk::{ByteFile, DataDirError};
use crate::types::{LogId, SnapshotMeta, StoredMembership};

/// Why a scan for request ids stopped early.
enum ScanStop {
    /// Past the last position wanted.
    Done,
    Io(io::Error),
}

impl From<io::Error> for ScanStop {
    fn from(err: io::Error) -> Self {
        ScanStop::Io(err)
    }
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

    /// The same generation after its directory was renamed to `dir` (open
    /// files follow a rename; only the recorded path changes).
    pub(super) fn moved_to(self, dir: PathBuf) -> Self {
        Self { dir: Some(dir), ..self }
    }

    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: Some(dir.to_path_buf()),
            dat: ByteFile::open(&dir.join(DAT_FILE))?,
            idx: ByteFile::open(&dir.join(IDX_FILE))?,
        })
    }

    pub fn dat_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(DAT_FILE))
    }

    /// A writer that appends applied entries' records to this generation.
    pub fn writer(&self) -> EntryWriter<'_> {
        EntryWriter { generation: self, pending: Pending::default() }
    }

    /// Up to `limit` events from position `from`, each with the Raft index
    /// of the entry that carried it and its request id; `count` bounds what
    /// is visible. Reading stops after the record that brings the bytes
    /// read to `max_bytes`.
    pub fn read_events(&self, from: u64, limit: u64, count: u64, max_bytes: u64) -> io::Result<Vec<CommittedEvent>> {
        let end = from.saturating_add(limit).min(count);
        if from >= end {
            return Ok(Vec::new());
        }
        let mut offset = self.record_offset(from)?;
        let mut out = Vec::with_capacity(usize::try_from((end - from).min(1024)).unwrap_or(0));
        let mut read_bytes = 0u64;
        while (from + out.len() as u64) < end && read_bytes < max_bytes {
            let payload = record::read_at(&self.dat, offset)?;
            read_bytes += payload.len() as u64;
            let entry: AppliedEntry = serde_json::from_slice(&payload).map_err(invalid)?;
            let log_index = entry.log_id.index;
            let events = entry.payload.into_events();
            offset += record::HEADER_LEN + payload.len() as u64;
            for (position, (request_id, event)) in (entry.first_position..).zip(events) {
                if position >= from && position < end {
                    out.push(CommittedEvent { position, log_index, request_id, event });
                }
            }
        }
        Ok(out)
    }

    /// The request ids of the events at positions `[from, to)` (`to <=
    /// count`), oldest first. One sequential read from the first event's
    /// record, parsing only the ids: a restart loads a whole window this way.
    fn read_request_ids(&self, from: u64, to: u64, count: u64) -> io::Result<Vec<(String, Seen)>> {
        if from >= to.min(count) {
            return Ok(Vec::new());
        }
        let start = self.record_offset(from)?;
        let mut ids = Vec::new();
        let mut next = from;
        let scanned = record::scan(self.dat.reader_at(start), start, |offset, payload| {
            let entry: IdsOfEntry = serde_json::from_slice(payload).map_err(invalid)?;
            if entry.first_position >= to {
                return Err(ScanStop::Done);
            }
            let (at_ms, events) = entry.payload.into_events();
            for (position, event) in (entry.first_position..).zip(events) {
                if position < from || position >= to {
                    continue;
                }
                if position != next {
                    return Err(invalid(format!("record at offset {offset} holds event {position}, not {next}")).into());
                }
                next = position + 1;
                if let (Some(id), Some(fingerprint)) = (event.request_id, event.fingerprint) {
                    ids.push((id, Seen { position, log_index: entry.log_id.index, at_ms, fingerprint }));
                }
            }
            Ok(())
        });
        match scanned {
            Err(ScanStop::Io(err)) => return Err(err),
            Ok(_) | Err(ScanStop::Done) => {}
        }
        if next < to {
            return Err(invalid(format!("events {next}..{to} of {count} are missing from the store")));
        }
        Ok(ids)
    }

    /// The request ids of the events applied at log times `[from_ms,
    /// to_ms)`, oldest first.
    pub fn read_request_ids_between(&self, from_ms: u64, to_ms: u64, count: u64) -> io::Result<Vec<(String, Seen)>> {
        let from = self.first_position_at(from_ms, count)?;
        let to = self.first_position_at(to_ms, count)?;
        self.read_request_ids(from, to, count)
    }

    /// The first of `count` event positions applied at log time `at_ms` or
    /// later (`count` if none): a binary search, as log times never fall
    /// along positions, reading one record per step.
    fn first_position_at(&self, at_ms: u64, count: u64) -> io::Result<u64> {
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = low + (high - low) / 2;
            let offset = self.record_offset(middle)?;
            let entry: IdsOfEntry = serde_json::from_slice(&record::read_at(&self.dat, offset)?).map_err(invalid)?;
            let (time, _) = entry.payload.into_events();
            if time < at_ms {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }

    /// Where the record holding event `position` starts.
    fn record_offset(&self, position: u64) -> io::Result<u64> {
        let mut offset_bytes = [0u8; 8];
        self.idx.read_exact_at(&mut offset_bytes, position * 8)?;
        Ok(u64::from_le_bytes(offset_bytes))
    }

    /// The request-id index for a store at `state`: the ids applied within
    /// `state.request_id_window_ms` of its log time.
    pub fn load_request_ids(&self, state: &AppliedState) -> io::Result<RequestIds> {
        let from_ms = state.log_time_ms.saturating_sub(state.request_id_window_ms);
        if state.request_id_window_ms == 0 {
            // No entry carried a window yet: none of the ids is needed now,
            // and the first entry with a window reads what it needs.
            return Ok(RequestIds::nothing_held());
        }
        let read = self.read_request_ids_between(from_ms, u64::MAX, state.event_count)?;
        Ok(RequestIds::loaded(read, from_ms))
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
                AppliedPayload::Events { at_ms, request_id_window_ms, events } => {
                    if at_ms < state.log_time_ms {
                        return Err(invalid(format!(
                            "record at offset {offset} goes back in time ({at_ms} ms after {} ms)",
                            state.log_time_ms
                        )));
                    }
                    for _ in &events {
                        idx.extend_from_slice(&offset.to_le_bytes());
                    }
                    state.event_count += events.len() as u64;
                    state.log_time_ms = at_ms;
                    if request_id_window_ms > 0 {
                        state.request_id_window_ms = request_id_window_ms;
                    }
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

/// Appends the records of applied entries: builds them in memory and writes
/// them in one append per [`EntryWriter::flush`] (the data before its index
/// entries). What to store for each entry is the apply step's decision
/// (`apply.rs`); this only lays it out.
pub struct EntryWriter<'g> {
    generation: &'g Generation,
    pending: Pending,
}

impl EntryWriter<'_> {
    pub fn generation(&self) -> &Generation {
        self.generation
    }

    /// Adds the record of the entry `log_id` holding `payload`, and counts
    /// it into `state`: its events get the next positions, its membership
    /// becomes the current one, and it is the last applied entry.
    pub fn push(&mut self, state: &mut AppliedState, log_id: LogId, payload: AppliedPayload) -> io::Result<()> {
        let first_position = state.event_count;
        match &payload {
            AppliedPayload::Blank => {}
            AppliedPayload::Membership(membership) => {
                state.membership = StoredMembership::new(Some(log_id), membership.clone());
            }
            AppliedPayload::Events { events, .. } => {
                let offset = state.dat_len + self.pending.dat.len() as u64;
                for _ in events {
                    self.pending.idx.extend_from_slice(&offset.to_le_bytes());
                }
                state.event_count += events.len() as u64;
            }
        }
        let entry = AppliedEntry { log_id, first_position, payload };
        let bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        record::encode(&mut self.pending.dat, &bytes).map_err(io::Error::other)?;
        state.last_applied = Some(log_id);
        Ok(())
    }

    /// Writes what is pending and counts it into `state.dat_len`.
    pub fn flush(&mut self, state: &mut AppliedState) -> io::Result<()> {
        self.pending.write(self.generation, state)
    }
}

/// Records and index entries built but not yet written.
#[derive(Default)]
struct Pending {
    dat: Vec<u8>,
    idx: Vec<u8>,
}

impl Pending {
    /// Writes what is pending and counts it into `state.dat_len`.
    fn write(&mut self, generation: &Generation, state: &mut AppliedState) -> io::Result<()> {
        // Data first: an index entry must never point past the data.
        generation.dat.append(&self.dat)?;
        generation.idx.append(&self.idx)?;
        state.dat_len += self.dat.len() as u64;
        self.dat.clear();
        self.idx.clear();
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
pub(super) fn recover(
    generation: &Generation,
    from: Option<AppliedState>,
    dir: &Path,
) -> Result<AppliedState, DataDirError> {
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
    let end = generation.replay(&mut state).map_err(|e| read_error(dir, e))?;
    if let Some(bad) = end.bad {
        tracing::warn!(dir = %dir.display(), at = end.clean_len, %bad, "cutting unsynced records torn by a crash; the log re-applies them");
        generation.dat.truncate(end.clean_len).map_err(|e| DataDirError::write(dir, e))?;
    }
    Ok(state)
}

pub(super) fn read_error(dir: &Path, err: io::Error) -> DataDirError {
    match err.kind() {
        io::ErrorKind::InvalidData => DataDirError::corrupt(dir, err.to_string()),
        _ => DataDirError::unreadable(dir, err),
    }
}

pub(super) fn invalid(err: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}
