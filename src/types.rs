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
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

/// The application payload of one Raft entry.
///
/// It holds a batch so that the leader can later fold concurrent writes into
/// one entry (one fsync) without changing the log format; today every entry
/// carries exactly one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub events: Vec<CriticalEvent>,
}

impl Command {
    pub fn single(event: CriticalEvent) -> Self {
        Self { events: vec![event] }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} events)", self.events.len())
    }
}

/// What applying one entry produced. For a `Command`, the events were stored
/// at event positions `first_event_index..first_event_index + event_count`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub first_event_index: u64,
    pub event_count: u64,
}
