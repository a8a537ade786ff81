//! The write path from the HTTP handler to Raft: a critical event, under its
//! request id, goes into the leader's next Raft entry, and its outcome comes
//! back once that entry is committed and applied here.
//!
//! ```text
//!  api/events.rs::post_event ── parse, pick the RequestId (request_id.rs)
//!        │
//!        ▼
//!  Proposer::propose ── batcher.rs: queue, cut an EventBatch, Raft::client_write_ff
//!        │                                   │ (committed on a quorum)
//!        │                                   ▼
//!        │              state_machine::apply ── exactly-once rule, append ── EventOutcome
//!        ▼
//!  api/events.rs answers: the design's body, `duplicate`, or an error
//! ```
//!
//! Whether an event is appended, a duplicate of an earlier write or a reuse
//! of its id for another event is decided by every replica's state machine
//! in its apply step, from the log alone: the proposer only names the event.

mod batcher;
pub mod request_id;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal};

#[cfg(test)]
pub(crate) use batcher::event_bytes;
pub use batcher::{BatchLimits, Batcher};
pub use request_id::{RequestId, RequestIdError};

use crate::event::CriticalEvent;
use crate::types::{EventOutcome, NodeId, PeerAddr, ProposedEvent, Raft};

/// Why a write got no outcome; the same for every event of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// OpenRaft answered `ForwardToLeader`: this node does not lead, or it
    /// appended the entry and truncated it again as a deposed leader (a
    /// copy elsewhere may still commit). Retry on the new leader, with the
    /// same request id.
    #[error("this node is not the leader")]
    NotLeader,
    /// OpenRaft refused the entry for another reason; nothing was appended.
    #[error("{0}")]
    Refused(#[source] Arc<ClientWriteError<NodeId, PeerAddr>>),
    /// The entry was applied, but its result lacks this event's outcome.
    #[error("entry {index} was applied without an outcome for this event")]
    NoOutcome { index: u64 },
    /// Raft stopped (a storage failure, or shutdown) with the entry
    /// proposed: it may still commit.
    #[error("{0}")]
    RaftStopped(#[source] Arc<Fatal<NodeId>>),
    /// Raft stopped after the entry was proposed, before answering.
    #[error("Raft stopped before answering")]
    Unanswered,
    /// The batching task is gone (the node is shutting down).
    #[error("the write batcher has stopped")]
    BatcherStopped,
    /// The event alone would make an entry larger than a peer accepts;
    /// nothing was proposed.
    #[error("the event takes {bytes} bytes in a Raft entry; at most {limit} are allowed")]
    TooLarge { bytes: usize, limit: usize },
    /// No outcome within the write timeout: the entry may still commit.
    #[error("no outcome within {0:?}")]
    TimedOut(Duration),
}

/// Proposes critical events on the leader; cheap to clone.
#[derive(Debug, Clone)]
pub struct Proposer {
    batcher: Batcher,
    timeout: Duration,
    /// Set when this node hands its leadership over before it stops
    /// (`handoff.rs`): writes answer [`ProposeError::NotLeader`] and are
    /// retried on the next leader.
    handing_over: Arc<AtomicBool>,
}

impl Proposer {
    /// Starts the batching task on the current runtime. A write waits at
    /// most `timeout` for its outcome.
    pub fn spawn(raft: Raft, limits: BatchLimits, timeout: Duration) -> Self {
        Self { batcher: Batcher::spawn(raft, limits), timeout, handing_over: Arc::default() }
    }

    /// From now on, proposes nothing: this node is handing its leadership
    /// over, and its log must stop growing for a follower to catch up.
    /// Returns once every batch proposed before has reached Raft.
    pub async fn hand_over(&self) {
        self.handing_over.store(true, Ordering::Relaxed);
        self.batcher.close().await;
    }

    /// Proposes `event` under `id` in the leader's next entry and waits for
    /// its outcome on this node's state machine: appended, or the earlier
    /// event the id names (a retry, or an id reused for another event).
    pub async fn propose(&self, id: &RequestId, event: CriticalEvent) -> Result<EventOutcome, ProposeError> {
        if self.handing_over.load(Ordering::Relaxed) {
            return Err(ProposeError::NotLeader);
        }
        let proposed = ProposedEvent { request_id: Some(id.as_str().to_string()), event };
        tokio::time::timeout(self.timeout, self.batcher.write(proposed))
            .await
            .unwrap_or(Err(ProposeError::TimedOut(self.timeout)))
    }
}
