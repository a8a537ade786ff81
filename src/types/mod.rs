//! The OpenRaft type configuration and the data that travels in the Raft log.

use std::fmt;

use serde::{Deserialize, Serialize};

mod snapshot_data;

pub use snapshot_data::{SnapshotData, SnapshotFile};

use crate::event::CriticalEvent;

/// A node's id in the cluster: from `--id` / `WORKER_ID`, or generated.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// OpenRaft's type parameters for gameraft.
    pub TypeConfig:
        D = EventBatch,
        R = EventBatchResult,
        NodeId = NodeId,
        Node = PeerAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
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
/// fsync, one replication round) in `proposer/batcher.rs`. Events keep their
/// order in the batch and each gets its own position in the event list.
///
/// The two numbers below are the leader's, stamped when it proposes the
/// entry, so that whether an event is a duplicate is decided from the log
/// alone, the same way on every node (see `state_machine/request_ids.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<ProposedEvent>,
    /// The proposing leader's wall clock, in milliseconds since the Unix
    /// epoch. The state machine never goes back in time: an entry's time is
    /// the largest stamped so far in the log, so a new leader whose clock is
    /// behind cannot turn it back (see ARCHITECTURE.md on clock skew).
    pub proposed_at_ms: u64,
    /// The proposing leader's `--request-id-window-secs`, in milliseconds:
    /// an event is a duplicate if its request id was applied at a time at
    /// most this much earlier. 0 means no duplicate check (tests and
    /// benchmarks of the log; the API always stamps a window).
    pub request_id_window_ms: u64,
}

/// Bytes an event may take in its entry's encodings beyond its JSON (as
/// [`ProposedEvent`]): in the event file, its fingerprint (`"fp":` and up to
/// 20 digits); in protobuf, which is otherwise no larger than the JSON (one
/// byte of tag where JSON has a quoted field name), field tags and lengths.
/// The batcher counts it for every event; `config.rs` checks the limits
/// with it; `proposer/batcher.rs`'s tests check it against both encodings.
pub const EVENT_OVERHEAD_BYTES: usize = 64;
/// Bytes an entry may take beyond its events' in either encoding: its log
/// id, first position, time and window, tags and the record header.
pub const ENTRY_OVERHEAD_BYTES: usize = 512;

/// One event of an [`EventBatch`], with the request id it was sent under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedEvent {
    /// The client's request id, or one the first node assigned (`auto-…`);
    /// `None` in entries of tests and benchmarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub event: CriticalEvent,
}

impl EventBatch {
    /// One event with no request id and no duplicate check (tests and
    /// benchmarks of the log; the API always sends an id).
    pub fn single(event: CriticalEvent) -> Self {
        Self { events: vec![ProposedEvent { request_id: None, event }], proposed_at_ms: 0, request_id_window_ms: 0 }
    }

    /// One event under `request_id`, proposed at `at_ms`, checked against
    /// the ids applied in the `window_ms` before it.
    pub fn with_request_id(event: CriticalEvent, request_id: String, at_ms: u64, window_ms: u64) -> Self {
        Self {
            events: vec![ProposedEvent { request_id: Some(request_id), event }],
            proposed_at_ms: at_ms,
            request_id_window_ms: window_ms,
        }
    }
}

impl fmt::Display for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EventBatch({} events, at {} ms, window {} ms)",
            self.events.len(),
            self.proposed_at_ms,
            self.request_id_window_ms
        )
    }
}

/// What applying one entry produced: one outcome per event of an `EventBatch`
/// (none for blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatchResult {
    pub events: Vec<EventOutcome>,
}

/// What became of one proposed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventOutcome {
    /// Appended at event `position` by the entry at `log_index`.
    Appended { position: u64, log_index: u64 },
    /// Not appended: its request id and its event are those of the event
    /// already at `position`, committed at `log_index`, within the entry's
    /// window.
    Duplicate { position: u64, log_index: u64 },
    /// Not appended: its request id is that of the event at `position`
    /// within the entry's window, but the event differs. A reused id, not a
    /// retry; the API answers 409.
    Reused { position: u64, log_index: u64 },
}

impl EventOutcome {
    /// The log index the event is committed at: its own, or the original's.
    pub fn log_index(&self) -> u64 {
        match self {
            EventOutcome::Appended { log_index, .. }
            | EventOutcome::Duplicate { log_index, .. }
            | EventOutcome::Reused { log_index, .. } => *log_index,
        }
    }
}
