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
//!
//! Each event is stored with its request id, and each entry's record with
//! the request-id window it carried, so the ids of the last events (the
//! state machine's duplicate check, `request_ids.rs`) can be rebuilt from
//! the file alone: after a restart, or from a received snapshot.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::request_ids::{RequestIds, Seen};
use super::CommittedEvent;
use crate::event::CriticalEvent;
use crate::storage::record::{self, ScanEnd};
use crate::storage::{ByteFile, DataDirError};
use crate::types::{
    Command, CommandResult, EventOutcome, LogId, Membership, ProposedEvent, SnapshotMeta, StoredMembership,
};

pub(super) const CURRENT_FILE: &str = "CURRENT";
pub(super) const DAT_FILE: &str = "events.dat";
pub(super) const IDX_FILE: &str = "events.idx";
pub(super) const SNAPSHOT_FILE: &str = "snapshot.json";
pub(super) const INCOMING_PREFIX: &str = "incoming-";
pub(super) const GEN_PREFIX: &str = "gen-";

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
    /// Events without request ids: records written before ids existed.
    Events(Vec<CriticalEvent>),
    /// The events the entry appended (not its duplicates), each with its
    /// request id, and the request-id window the entry carried.
    Proposed {
        events: Vec<ProposedEvent>,
        request_id_window: u64,
    },
}

impl AppliedPayload {
    /// The stored events of this record, each with its request id.
    fn into_events(self) -> Vec<(Option<String>, CriticalEvent)> {
        match self {
            AppliedPayload::Blank | AppliedPayload::Membership(_) => Vec::new(),
            AppliedPayload::Events(events) => events.into_iter().map(|event| (None, event)).collect(),
            AppliedPayload::Proposed { events, .. } => events.into_iter().map(|p| (p.request_id, p.event)).collect(),
        }
    }
}

/// An [`AppliedEntry`] read for its request ids only: the events' bodies
/// and membership configs are skipped, not parsed.
#[derive(Deserialize)]
struct IdsOfEntry {
    log_id: LogId,
    first_position: u64,
    payload: IdsOfPayload,
}

#[derive(Deserialize)]
enum IdsOfPayload {
    Blank,
    Membership(serde::de::IgnoredAny),
    Events(Vec<serde::de::IgnoredAny>),
    Proposed { events: Vec<IdOfEvent> },
}

#[derive(Deserialize)]
struct IdOfEvent {
    #[serde(default)]
    request_id: Option<String>,
}

impl IdsOfPayload {
    fn into_events(self) -> Vec<IdOfEvent> {
        match self {
            IdsOfPayload::Blank | IdsOfPayload::Membership(_) => Vec::new(),
            IdsOfPayload::Events(events) => events.into_iter().map(|_| IdOfEvent { request_id: None }).collect(),
            IdsOfPayload::Proposed { events } => events,
        }
    }
}

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

/// How far the store has applied, and what that produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub event_count: u64,
    /// Length of `events.dat` holding exactly the records applied.
    pub dat_len: u64,
    /// How many of the last events' request ids the state machine holds: the
    /// window of the last entry that carried one (0 before any did). A
    /// restarted node loads that many, so it needs no read at its next write.
    #[serde(default)]
    pub request_id_window: u64,
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

    /// Appends the records for `entries`, updating `state` and `ids` (the
    /// ids of the last `state.request_id_window` events). An event whose
    /// request id is among the last `W` events, `W` the window its entry
    /// carries, is a duplicate and is not stored. Returns each entry's
    /// per-event outcomes.
    pub fn append(
        &self,
        state: &mut AppliedState,
        entries: Vec<Applied>,
        ids: &mut RequestIds,
    ) -> io::Result<Vec<CommandResult>> {
        let mut pending = Pending::default();
        let mut results = Vec::with_capacity(entries.len());
        for applied in entries {
            let first_position = state.event_count;
            let mut outcomes = Vec::new();
            let payload = match applied.payload {
                AppliedPayloadIn::Blank => AppliedPayload::Blank,
                AppliedPayloadIn::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(applied.log_id), membership.clone());
                    AppliedPayload::Membership(membership)
                }
                AppliedPayloadIn::Events(command) => {
                    let window = command.request_id_window;
                    if window > ids.covered() {
                        // The window grew: the older events' ids come from the
                        // store, which must first hold everything before them.
                        let older = match ids.older_to_read(state.event_count, window) {
                            Some((from, to)) => {
                                pending.write(self, state)?;
                                self.read_request_ids(from, to, state.event_count)?
                            }
                            None => Vec::new(),
                        };
                        ids.extend_older(older, window);
                    }
                    let record_offset = state.dat_len + pending.dat.len() as u64;
                    let log_index = applied.log_id.index;
                    let mut stored = Vec::with_capacity(command.events.len());
                    for proposed in command.events {
                        let original = match &proposed.request_id {
                            Some(id) if window > 0 => ids.find(id, state.event_count, window),
                            _ => None,
                        };
                        if let Some(original) = original {
                            outcomes.push(EventOutcome::Duplicate {
                                position: original.position,
                                log_index: original.log_index,
                            });
                            continue;
                        }
                        let position = state.event_count;
                        if let Some(id) = &proposed.request_id {
                            ids.insert(id, Seen { position, log_index });
                        }
                        pending.idx.extend_from_slice(&record_offset.to_le_bytes());
                        state.event_count += 1;
                        outcomes.push(EventOutcome::Appended { position, log_index });
                        stored.push(proposed);
                    }
                    // Entries from before request ids (window 0) check
                    // nothing and leave the window as it was.
                    if window > 0 {
                        state.request_id_window = window;
                    }
                    ids.retain_last(state.event_count, state.request_id_window);
                    AppliedPayload::Proposed { events: stored, request_id_window: window }
                }
            };
            let entry = AppliedEntry { log_id: applied.log_id, first_position, payload };
            record::encode(&mut pending.dat, &serde_json::to_vec(&entry).map_err(io::Error::other)?);
            state.last_applied = Some(applied.log_id);
            results.push(CommandResult { events: outcomes });
        }
        pending.write(self, state)?;
        Ok(results)
    }

    /// Up to `limit` events from position `from`, each with the Raft index
    /// of the entry that carried it and its request id; `count` bounds what
    /// is visible.
    pub fn read_events(&self, from: u64, limit: u64, count: u64) -> io::Result<Vec<CommittedEvent>> {
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
            let log_index = entry.log_id.index;
            for (position, (request_id, event)) in (entry.first_position..).zip(entry.payload.into_events()) {
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
        let mut offset_bytes = [0u8; 8];
        self.idx.read_exact_at(&mut offset_bytes, from * 8)?;
        let start = u64::from_le_bytes(offset_bytes);
        let mut ids = Vec::new();
        let mut next = from;
        let scanned = record::scan(self.dat.reader_at(start), start, |offset, payload| {
            let entry: IdsOfEntry = serde_json::from_slice(payload).map_err(invalid)?;
            if entry.first_position >= to {
                return Err(ScanStop::Done);
            }
            let positions = entry.first_position..;
            for (position, event) in positions.zip(entry.payload.into_events()) {
                if position < from || position >= to {
                    continue;
                }
                if position != next {
                    return Err(invalid(format!("record at offset {offset} holds event {position}, not {next}")).into());
                }
                next = position + 1;
                if let Some(id) = event.request_id {
                    ids.push((id, Seen { position, log_index: entry.log_id.index }));
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

    /// The request-id index for a store at `state`: the ids of its last
    /// `state.request_id_window` events.
    pub fn load_request_ids(&self, state: &AppliedState) -> io::Result<RequestIds> {
        let mut ids = RequestIds::default();
        let from = state.event_count.saturating_sub(state.request_id_window);
        let older = self.read_request_ids(from, state.event_count, state.event_count)?;
        ids.extend_older(older, state.request_id_window);
        Ok(ids)
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
                AppliedPayload::Proposed { events, request_id_window } => {
                    for _ in &events {
                        idx.extend_from_slice(&offset.to_le_bytes());
                    }
                    state.event_count += events.len() as u64;
                    if request_id_window > 0 {
                        state.request_id_window = request_id_window;
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

/// An entry to apply, already taken apart.
pub struct Applied {
    pub log_id: LogId,
    pub payload: AppliedPayloadIn,
}

pub enum AppliedPayloadIn {
    Blank,
    Membership(Membership),
    Events(Command),
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
