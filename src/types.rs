//! The OpenRaft type configuration and the data that travels in the Raft log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::CriticalEvent;

/// A node's id in the cluster: from `--id` / `WORKER_ID`, or generated.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// OpenRaft's type parameters for gameraft.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = PeerAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::state_machine::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, PeerAddr>;
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerAddr>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, PeerAddr>;

/// Where a node can be reached. It is stored in the Raft membership, so every
/// member learns every peer's addresses from the log itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// `host:port` of the node's gRPC Raft service.
    pub raft_addr: String,
    /// `host:port` of the node's HTTP API.
    pub http_addr: String,
    /// Which incarnation of the node id this member is (see `identity`):
    /// every RPC to it names this, and a node that lost its data refuses
    /// RPCs for its old incarnation until it is admitted again.
    #[serde(default)]
    pub incarnation: String,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

/// The application payload of one Raft entry.
///
/// It holds a batch: the leader folds concurrent writes into one entry (one
/// fsync, one replication round) in `api/batcher.rs`. Events keep their
/// order in the batch and each gets its own position in the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub events: Vec<ProposedEvent>,
    /// The proposing leader's `--request-id-window`. It travels in the entry,
    /// rather than each node using its own flag, so that whether an event is
    /// a duplicate is decided the same way on every node. 0 (entries written
    /// before request ids existed) means: no duplicate check.
    #[serde(default)]
    pub request_id_window: u64,
}

/// One event of a [`Command`], with the request id it was sent under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedEvent {
    /// The client's request id, or one the first node assigned (`auto-…`);
    /// `None` only in entries written before request ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub event: CriticalEvent,
}

impl Command {
    /// One event with no request id and no duplicate check (tests and
    /// benchmarks of the log; the API always sends an id).
    pub fn single(event: CriticalEvent) -> Self {
        Self { events: vec![ProposedEvent { request_id: None, event }], request_id_window: 0 }
    }

    /// One event under `request_id`, checked against the last `window` events.
    pub fn with_request_id(event: CriticalEvent, request_id: String, window: u64) -> Self {
        Self { events: vec![ProposedEvent { request_id: Some(request_id), event }], request_id_window: window }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} events, window {})", self.events.len(), self.request_id_window)
    }
}

/// What applying one entry produced: one outcome per event of a `Command`
/// (none for blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub events: Vec<EventOutcome>,
}

/// What became of one proposed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventOutcome {
    /// Appended at event `position` by the entry at `log_index`.
    Appended { position: u64, log_index: u64 },
    /// Not appended: its request id is that of the event already at
    /// `position`, committed at `log_index`, within the entry's window.
    Duplicate { position: u64, log_index: u64 },
}

impl EventOutcome {
    /// The log index the event is committed at: its own, or the original's.
    pub fn log_index(&self) -> u64 {
        match self {
            EventOutcome::Appended { log_index, .. } | EventOutcome::Duplicate { log_index, .. } => *log_index,
        }
    }
}
