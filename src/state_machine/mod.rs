//! The replicated state machine: the ordered list of committed critical events.
//!
//! OpenRaft calls `apply` with committed entries, in log order, on every node,
//! so every node's event list is the same sequence. Applying is deterministic:
//! it depends only on the entries, never on the node, the clock or randomness.
//!
//! The events live in an `event_store` (on disk for durable nodes, in a
//! buffer for `--in-memory` ones); memory holds counters and the last
//! window's request ids. Reads (`GET /events`, `/log`, `/status`) go through
//! an [`EventList`] handle that shares the live generation with the state
//! machine OpenRaft owns.
//!
//! Snapshots are the event file's prefix ([`SnapshotData`]); installing one
//! switches to a new generation atomically.
//!
//! How far the state is durable is published as a [`DurableWatermark`],
//! which bounds how far the log store may purge (`raft_log/watermark.rs`):
//! it moves at open, when a snapshot is built, and when a received one is
//! installed, never on apply.
//!
//! Exactly-once appends: an event whose request id was applied within the
//! last `W` of log time (the time and `W` stamped into the entry by the
//! leader) is not appended again; its outcome names the original
//! ([`EventOutcome::Duplicate`]), or the id's holder if the event differs
//! (`Reused`). The rule is the apply step's (`apply.rs`); the window's ids
//! are held in memory (`request_ids.rs`) and rebuilt from the event file,
//! where each event is stored with its id.
//!
//! [`EventOutcome::Duplicate`]: crate::types::EventOutcome::Duplicate

mod apply;
mod event_store;
mod request_ids;
mod state_dir;
mod writeback;

pub use self::state_dir::install_restored;

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use self::apply::apply_entries;
use self::event_store::Generation;
use self::request_ids::RequestIds;
use self::state_dir::StateDir;
use self::writeback::Writeback;
pub use crate::disk::format::AppliedState;
use crate::disk::format::SnapshotRecord;
use crate::disk::DataDirError;
use crate::event::CriticalEvent;
use crate::locks::{read, write};
use crate::raft_log::DurableWatermark;
use crate::types::{
    Entry, EventBatchResult, LogId, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// A critical event as committed: its position in the event list, the Raft
/// log index of the entry that carried it, and its request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    pub position: u64,
    pub log_index: u64,
    /// The client's request id, or the one the receiving node assigned
    /// (`auto-…`); `None` for events written before request ids existed.
    pub request_id: Option<String>,
    pub event: CriticalEvent,
}

/// What readers and the state machine share: the live generation, how far
/// it has been applied, and the current snapshot. Replaced whole under the
/// lock, so a reader always sees a consistent triple.
#[derive(Debug)]
struct Live {
    generation: Arc<Generation>,
    state: AppliedState,
    snapshot: Option<SnapshotRecord>,
}

/// A read-only view of the committed events, shared with the HTTP API.
#[derive(Debug, Clone)]
pub struct EventList {
    live: Arc<RwLock<Live>>,
}

impl EventList {
    /// Number of committed events on this node.
    pub fn len(&self) -> u64 {
        read(&self.live).state.event_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` events starting at event position `from` (0-based),
    /// read from the store: only what is returned is read.
    pub fn range(&self, from: u64, limit: u64) -> io::Result<Vec<CommittedEvent>> {
        self.range_within(from, limit, u64::MAX)
    }

    /// [`Self::range`], stopping after the log record that brings what was
    /// read to `max_bytes` (at least one record is read): a reader's memory
    /// is bounded by bytes, whatever the size of the events.
    pub fn range_within(&self, from: u64, limit: u64, max_bytes: u64) -> io::Result<Vec<CommittedEvent>> {
        let (generation, count) = {
            let live = read(&self.live);
            (live.generation.clone(), live.state.event_count)
        };
        generation.read_events(from, limit, count, max_bytes)
    }
}

impl EventList {
    /// The events applied at this moment, held for reading: the live
    /// generation and how far it was applied, taken together under the
    /// lock (as a snapshot build takes them), then read without it. The
    /// event file is append-only and an installed snapshot replaces the
    /// generation without touching its open file, so the prefix read
    /// through this never changes, however long the reading takes.
    pub fn freeze(&self) -> FrozenEvents {
        let live = read(&self.live);
        FrozenEvents { generation: live.generation.clone(), state: live.state.clone() }
    }
}

/// The first [`AppliedState::dat_len`] bytes of an event file and the
/// state they hold ([`EventList::freeze`]): exactly the records applied up
/// to `state().last_applied`.
#[derive(Debug, Clone)]
pub struct FrozenEvents {
    generation: Arc<Generation>,
    state: AppliedState,
}

impl FrozenEvents {
    pub fn state(&self) -> &AppliedState {
        &self.state
    }

    /// Up to `max` bytes of the prefix from `offset` (none at its end).
    /// Blocks on the disk: call it from a blocking thread.
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let left = self.state.dat_len.saturating_sub(offset);
        let mut buf = vec![0; usize::try_from(left).unwrap_or(usize::MAX).min(max)];
        self.generation.dat.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// The state machine OpenRaft drives.
#[derive(Debug)]
pub struct GameStateMachine {
    live: Arc<RwLock<Live>>,
    /// `None` for an in-memory store.
    dir: Option<Arc<tokio::sync::Mutex<StateDir>>>,
    /// The ids applied within `live.state.request_id_window_ms`. Only
    /// OpenRaft's state machine task uses it (apply and install), so it
    /// needs no lock.
    request_ids: RequestIds,
    writeback: Writeback,
    /// How far the state is durable; bounds log purges.
    durable: DurableWatermark,
    /// Test-only fault point (`--fault-crash-in-install-file`): while this
    /// file exists, an install aborts the process after the received
    /// snapshot is written and validated, before it is published.
    crash_in_install_file: Option<PathBuf>,
    /// Test-only: pauses an install once its new generation is in place on
    /// disk, before it is published to readers and snapshot builds.
    #[cfg(test)]
    pause_before_publish: Option<PauseHook>,
}

/// Test-only: where an install pauses, and what lets it go on.
#[cfg(test)]
pub(crate) struct PauseHook {
    pub reached: tokio::sync::oneshot::Sender<()>,
    pub resume: tokio::sync::oneshot::Receiver<()>,
}

#[cfg(test)]
impl std::fmt::Debug for PauseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PauseHook")
    }
}

impl GameStateMachine {
    /// A state machine that keeps its events in memory.
    pub fn in_memory() -> Self {
        let live = Live { generation: Arc::new(Generation::memory()), state: AppliedState::default(), snapshot: None };
        Self {
            live: Arc::new(RwLock::new(live)),
            dir: None,
            request_ids: RequestIds::default(),
            writeback: Writeback::default(),
            durable: DurableWatermark::new(None),
            crash_in_install_file: None,
            #[cfg(test)]
            pause_before_publish: None,
        }
    }

    /// Opens (or creates) the durable state machine in `dir`, recovered to
    /// its last whole applied entry.
    pub fn open(dir: &Path) -> Result<Self, DataDirError> {
        let (state_dir, recovered) = StateDir::open(dir)?;
        tracing::info!(
            events = recovered.state.event_count,
            request_ids = recovered.request_ids.len(),
            window_ms = recovered.state.request_id_window_ms,
            "opened the event store"
        );
        // `StateDir::open` synced what it recovered: all of it is durable.
        let durable = DurableWatermark::new(recovered.state.last_applied.map(|id| id.index));
        let live =
            Live { generation: Arc::new(recovered.generation), state: recovered.state, snapshot: recovered.snapshot };
        Ok(Self {
            live: Arc::new(RwLock::new(live)),
            dir: Some(Arc::new(tokio::sync::Mutex::new(state_dir))),
            request_ids: recovered.request_ids,
            writeback: Writeback::default(),
            durable,
            crash_in_install_file: None,
            #[cfg(test)]
            pause_before_publish: None,
        })
    }

    /// Test-only fault injection for the nemesis: see
    /// `--fault-crash-in-install-file`.
    pub fn with_crash_in_install_file(mut self, file: Option<PathBuf>) -> Self {
        self.crash_in_install_file = file;
        self
    }

    /// How far this state machine is durable; hand its
    /// [`purge_limit`](DurableWatermark::purge_limit) to the log store.
    pub fn durable_watermark(&self) -> DurableWatermark {
        self.durable.clone()
    }

    pub fn event_list(&self) -> EventList {
        EventList { live: self.live.clone() }
    }

    /// How far this store has applied (for tests and benchmarks).
    pub fn applied(&self) -> AppliedState {
        read(&self.live).state.clone()
    }
}

impl RaftStateMachine<TypeConfig> for GameStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let live = read(&self.live);
        Ok((live.state.last_applied, live.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EventBatchResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (generation, mut state) = {
            let live = read(&self.live);
            (live.generation.clone(), live.state.clone())
        };
        // Only OpenRaft's state machine task applies or installs, so nothing
        // else changes `state` between this read and the write below.
        let results = apply_entries(&generation, &mut state, entries, &mut self.request_ids).map_err(|e| {
            tracing::error!(%e, "cannot write applied events; this node stops");
            self.durable.stop(format!("cannot write applied events: {e}"));
            sm_error(ErrorVerb::Write, e)
        })?;
        self.writeback.applied(&generation, state.dat_len);
        write(&self.live).state = state;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { live: self.live.clone(), dir: self.dir.clone(), durable: self.durable.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        match &self.dir {
            None => Ok(Box::new(SnapshotData::Memory(Cursor::new(Vec::new())))),
            Some(dir) => {
                let path = dir.lock().await.new_incoming().map_err(|e| snapshot_error(ErrorVerb::Write, None, e))?;
                let data = SnapshotData::create(&path).await.map_err(|e| snapshot_error(ErrorVerb::Write, None, e))?;
                Ok(Box::new(data))
            }
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let durable = self.durable.clone();
        let fail = |e: io::Error| {
            tracing::error!(snapshot_id = %meta.snapshot_id, %e, "cannot install the received snapshot");
            durable.stop(format!("cannot install snapshot {}: {e}", meta.snapshot_id));
            snapshot_error(ErrorVerb::Write, Some(meta), e)
        };
        // Held until the new generation is published in `live`: a snapshot
        // build waiting for it must not see the generation this install
        // retires (its directory is deleted).
        let mut dir_guard = match &self.dir {
            Some(dir) => Some(dir.clone().lock_owned().await),
            None => None,
        };
        let (generation, record) = match (*snapshot, dir_guard.as_deref_mut()) {
            (SnapshotData::Memory(cursor), None) => {
                let generation = Generation::from_bytes(cursor.into_inner());
                let record = event_store::validate_snapshot(&generation, meta).map_err(fail)?;
                (generation, record)
            }
            (SnapshotData::File(file), Some(dir)) => {
                let path = file.sync_and_close().await.map_err(fail)?;
                let prepared = dir.prepare(&path, meta).map_err(fail)?;
                crash_if_file_exists(self.crash_in_install_file.as_deref());
                dir.publish(prepared).map_err(fail)?
            }
            _ => return Err(fail(io::Error::other("snapshot data does not match this store's kind"))),
        };
        // `CURRENT` names the new generation: the log may be purged up to it.
        self.durable.advance(record.state.last_applied.map(|id| id.index));
        #[cfg(test)]
        if let Some(hook) = self.pause_before_publish.take() {
            let _ = hook.reached.send(());
            let _ = hook.resume.await;
        }
        // The events before the snapshot point are new to this node: their
        // ids replace whatever it held.
        self.request_ids = generation.load_request_ids(&record.state).map_err(fail)?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            events = record.state.event_count,
            request_ids = self.request_ids.len(),
            "installed snapshot"
        );
        *write(&self.live) =
            Live { generation: Arc::new(generation), state: record.state.clone(), snapshot: Some(record) };
        drop(dir_guard);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (generation, record) = {
            let live = read(&self.live);
            (live.generation.clone(), live.snapshot.clone())
        };
        match record {
            None => Ok(None),
            Some(record) => Ok(Some(open_snapshot(&generation, record).await?)),
        }
    }
}

/// Builds a snapshot: fsyncs the event file and records its length and the
/// state it holds. Runs beside `apply`; the state it records is read under
/// the lock, so it matches the bytes up to that length exactly.
pub struct SnapshotBuilder {
    live: Arc<RwLock<Live>>,
    dir: Option<Arc<tokio::sync::Mutex<StateDir>>>,
    durable: DurableWatermark,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Holding the directory lock keeps an install from replacing the
        // generation while its snapshot is being recorded.
        let dir_guard = match &self.dir {
            Some(dir) => Some(dir.clone().lock_owned().await),
            None => None,
        };
        let (generation, state) = {
            let live = read(&self.live);
            (live.generation.clone(), live.state.clone())
        };
        let sync_gen = generation.clone();
        crate::disk::io_threads::run(move || sync_gen.sync())
            .await
            .and_then(|r| r)
            .map_err(|e| snapshot_error(ErrorVerb::Write, None, e))?;
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}-{}-{}", id.leader_id.term, id.leader_id.node_id, id.index, state.dat_len),
            None => format!("empty-{}", state.dat_len),
        };
        let meta =
            SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone(), snapshot_id };
        let record = SnapshotRecord { meta: meta.clone(), state };
        if let Some(dir) = &dir_guard {
            dir.save_snapshot(&generation, &record).map_err(|e| snapshot_error(ErrorVerb::Write, Some(&meta), e))?;
        }
        {
            let mut live = write(&self.live);
            if Arc::ptr_eq(&live.generation, &generation) {
                live.snapshot = Some(record.clone());
            }
        }
        drop(dir_guard);
        // The event file up to the snapshot is fsynced and recorded: OpenRaft
        // may purge the log up to it.
        self.durable.advance(record.state.last_applied.map(|id| id.index));
        tracing::info!(snapshot_id = %meta.snapshot_id, events = record.state.event_count, "built snapshot");
        open_snapshot(&generation, record).await
    }
}

/// The snapshot `record` of `generation`, ready to be read and sent.
async fn open_snapshot(generation: &Generation, record: SnapshotRecord) -> Result<Snapshot<TypeConfig>, StorageError> {
    let len = record.state.dat_len;
    let data = match generation.dat_path() {
        Some(path) => SnapshotData::open_prefix(&path, len).await,
        None => generation.dat.copy_prefix(len).map(|bytes| SnapshotData::Memory(Cursor::new(bytes))),
    }
    .map_err(|e| snapshot_error(ErrorVerb::Read, Some(&record.meta), e))?;
    Ok(Snapshot { meta: record.meta, snapshot: Box::new(data) })
}

/// The `--fault-crash-in-install-file` fault point (test-only): aborts the
/// process, so that nothing is cleaned up, as a crash would.
fn crash_if_file_exists(file: Option<&Path>) {
    if let Some(file) = file.filter(|file| file.exists()) {
        tracing::error!(file = %file.display(), "fault injected: crashing in the middle of a snapshot install");
        std::process::abort();
    }
}

fn sm_error(verb: ErrorVerb, err: io::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, openraft::AnyError::new(&err)).into()
}

fn snapshot_error(verb: ErrorVerb, meta: Option<&SnapshotMeta>, err: io::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(meta.map(|m| m.signature())), verb, openraft::AnyError::new(&err)).into()
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod dedup_tests;
