//! The replicated state machine: the ordered list of committed critical events.
//!
//! OpenRaft calls `apply` with committed entries, in log order, on every node,
//! so every node's event list is the same sequence. Applying is deterministic:
//! it depends only on the entries, never on the node, the clock or randomness.
//!
//! Reads (`GET /events`, `/status`) go through an [`EventLog`] handle that
//! shares the state with the state machine OpenRaft owns.
//!
//! CAVEATS: state is held in memory and snapshots are built as one in-memory
//! buffer (`Cursor<Vec<u8>>`); both are lost with the process.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::event::CriticalEvent;
use crate::sync::{read, write};
use crate::types::{CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// A critical event as committed: its position in the event log and the Raft
/// log index of the entry that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    pub log_index: u64,
    pub event: CriticalEvent,
}

/// Everything the state machine holds; also the content of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateMachineData {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    events: Vec<CommittedEvent>,
}

/// A read-only view of the committed events, shared with the HTTP API.
#[derive(Debug, Clone)]
pub struct EventLog {
    data: Arc<RwLock<StateMachineData>>,
}

impl EventLog {
    /// Number of committed events on this node.
    pub fn len(&self) -> u64 {
        read(&self.data).events.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` events starting at event position `from` (0-based).
    pub fn range(&self, from: u64, limit: u64) -> Vec<CommittedEvent> {
        let data = read(&self.data);
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(data.events.len());
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        data.events[start..].iter().take(take).cloned().collect()
    }
}

/// The state machine OpenRaft drives.
#[derive(Debug, Default)]
pub struct GameStateMachine {
    data: Arc<RwLock<StateMachineData>>,
    current_snapshot: Arc<RwLock<Option<StoredSnapshot>>>,
    snapshot_seq: u64,
}

impl GameStateMachine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn event_log(&self) -> EventLog {
        EventLog { data: self.data.clone() }
    }
}

impl RaftStateMachine<TypeConfig> for GameStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = read(&self.data);
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut data = write(&self.data);
        let mut results = Vec::new();
        for entry in entries {
            data.last_applied = Some(entry.log_id);
            let first_event_index = data.events.len() as u64;
            let mut event_count = 0;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => {
                    event_count = command.events.len() as u64;
                    let log_index = entry.log_id.index;
                    data.events.extend(command.events.into_iter().map(|event| CommittedEvent { log_index, event }));
                }
                EntryPayload::Membership(membership) => {
                    data.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            results.push(CommandResult { first_event_index, event_count });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            data: self.data.clone(),
            current_snapshot: self.current_snapshot.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let installed: StateMachineData =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        *write(&self.data) = installed;
        *write(&self.current_snapshot) = Some(StoredSnapshot { meta: meta.clone(), data: bytes });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(read(&self.current_snapshot).as_ref().map(StoredSnapshot::to_snapshot))
    }
}

/// Builds a snapshot from a consistent copy of the state, taken under the lock
/// so that `apply` running concurrently cannot make it newer than its meta.
pub struct SnapshotBuilder {
    data: Arc<RwLock<StateMachineData>>,
    current_snapshot: Arc<RwLock<Option<StoredSnapshot>>>,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (bytes, last_applied, last_membership) = {
            let data = read(&self.data);
            let bytes = serde_json::to_vec(&*data).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            (bytes, data.last_applied, data.last_membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, self.seq),
            None => format!("empty-{}", self.seq),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id },
            data: bytes,
        };
        let snapshot = stored.to_snapshot();
        *write(&self.current_snapshot) = Some(stored);
        Ok(snapshot)
    }
}

/// A built snapshot kept by the state machine, ready to be sent to followers.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot { meta: self.meta.clone(), snapshot: Box::new(Cursor::new(self.data.clone())) }
    }
}
