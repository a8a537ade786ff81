//! Batching: concurrent critical writes share Raft entries.
//!
//! OpenRaft 0.9 appends (and fsyncs) each `client_write` on its own, one
//! after the other, so one entry per event caps a leader at one fsync per
//! event whatever the number of clients. Here every critical write on the
//! leader (a client's, or one a follower forwarded over HTTP: both reach
//! `POST /events` on this node) is queued, and one task takes everything
//! queued, up to `--write-batch-max-events` events and
//! `--write-batch-max-bytes` bytes, into one [`EventBatch`], stamps it with its
//! wall-clock time and the request-id window, and proposes it.
//!
//! No entry exceeds what a peer accepts: an event counts its JSON plus
//! [`EVENT_OVERHEAD_BYTES`], a batch is cut before its events would pass the
//! byte bound or the entry limit (the record limit, and the gRPC message
//! limit shared by `--max-payload-entries` entries), and an event too large
//! to go even alone is refused before it is queued.
//!
//! There is no timer. A write that finds the queue empty and a slot free
//! leaves at once; writes that arrive while `--write-batches-in-flight`
//! batches are being committed wait for a slot and leave together. Batches
//! are proposed in the order they were cut, so events keep their queue order.
//!
//! Each event gets its own answer: the state machine returns one
//! [`EventOutcome`] per event of the entry (appended at its own dense event
//! position, or a duplicate naming the original), and `log_index` is the
//! index of the entry that carried it, so events of one batch share it.
//! Errors are the entry's, so every event of a batch gets the same one; a
//! retry after `NotLeader` is safe because each event carries a request id.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, RwLock, Semaphore};

use super::ProposeError;
use crate::config::NodeConfig;
use crate::types::{EventBatch, EventOutcome, ProposedEvent, Raft, ENTRY_OVERHEAD_BYTES, EVENT_OVERHEAD_BYTES};

/// Bounds of one batch and of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_events: usize,
    /// Where a batch is cut (events counted as in `event_bytes`); a single
    /// larger event still goes alone, within `entry_limit`.
    pub max_bytes: usize,
    /// The largest entry a peer accepts ([`NodeConfig::entry_limit_bytes`]).
    pub entry_limit: usize,
    pub in_flight: usize,
    /// Stamped into every entry (see [`EventBatch::request_id_window_ms`]).
    pub request_id_window_ms: u64,
}

impl BatchLimits {
    pub fn from_config(config: &NodeConfig) -> Self {
        let batching = &config.batching;
        Self {
            max_events: batching.write_batch_max_events.max(1),
            max_bytes: batching.write_batch_max_bytes.max(1),
            entry_limit: usize::try_from(config.entry_limit_bytes()).unwrap_or(usize::MAX),
            in_flight: batching.write_batches_in_flight.max(1),
            request_id_window_ms: u64::try_from(config.exactly_once.request_id_window().as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// Most event bytes in one entry: the batch bound, within the limit.
    fn batch_budget(&self) -> usize {
        self.max_bytes.min(self.event_budget())
    }

    /// Most bytes one event may take: alone, it must fit the entry limit.
    fn event_budget(&self) -> usize {
        self.entry_limit.saturating_sub(ENTRY_OVERHEAD_BYTES)
    }
}

type Reply = oneshot::Sender<Result<EventOutcome, ProposeError>>;

/// One queued write.
struct Pending {
    event: ProposedEvent,
    /// [`event_bytes`], for the byte bounds.
    bytes: usize,
    reply: Reply,
}

/// Queues writes for the batching task; cheap to clone. The task ends when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    event_budget: usize,
    /// `true` once [`Batcher::close`] ran: batches are answered
    /// [`ProposeError::NotLeader`] instead of proposed. The task holds it
    /// read-locked while it proposes, so `close` returns only after the last
    /// proposal reached Raft.
    closed: Arc<RwLock<bool>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("event", &self.event).field("bytes", &self.bytes).finish()
    }
}

impl Batcher {
    /// Starts the batching task on the current runtime.
    pub fn spawn(raft: Raft, limits: BatchLimits) -> Self {
        // Room for several full batches; beyond that, handlers wait to
        // enqueue (their write timeout still runs).
        let (queue, rx) = mpsc::channel(limits.max_events.saturating_mul(limits.in_flight + 2).max(1024));
        let closed = Arc::new(RwLock::new(false));
        tokio::spawn(run(raft, rx, limits, closed.clone()));
        Self { queue, event_budget: limits.event_budget(), closed }
    }

    /// Proposes nothing more: every batch from now on is answered
    /// [`ProposeError::NotLeader`]. Returns once no proposal is under way, so
    /// every entry this node will append has been handed to Raft.
    pub async fn close(&self) {
        *self.closed.write().await = true;
    }

    /// Proposes `event` in the next batch and waits for its outcome (after
    /// the entry is committed and applied on this node). Dropping the
    /// future before its batch is cut withdraws the event.
    pub async fn write(&self, event: ProposedEvent) -> Result<EventOutcome, ProposeError> {
        let bytes = event_bytes(&event);
        if bytes > self.event_budget {
            return Err(ProposeError::TooLarge { bytes, limit: self.event_budget });
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { event, bytes, reply }).await.map_err(|_| ProposeError::BatcherStopped)?;
        answer.await.unwrap_or(Err(ProposeError::BatcherStopped))
    }
}

async fn run(raft: Raft, mut queue: mpsc::Receiver<Pending>, limits: BatchLimits, closed: Arc<RwLock<bool>>) {
    let slots = Arc::new(Semaphore::new(limits.in_flight));
    // A write that did not fit the byte bound of the previous batch.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Some(pending) => pending,
                None => return, // every handle dropped: the node is shutting down
            },
        };
        // Writes keep queueing while all slots are taken: that is the batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        let mut bytes = batch[0].bytes;
        while batch.len() < limits.max_events {
            match queue.try_recv() {
                Ok(next) if bytes + next.bytes > limits.batch_budget() => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    bytes += next.bytes;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // A handler that gave up (its write timed out, or the client left)
        // has answered already; its event need not be proposed.
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.event, p.reply)).unzip();
        let command =
            EventBatch { events, proposed_at_ms: now_ms(), request_id_window_ms: limits.request_id_window_ms };
        let gate = closed.read().await;
        if *gate {
            answer_all(replies, ProposeError::NotLeader);
            continue;
        }
        // Sent from this task, so entries are proposed in the order batches
        // were cut; the answers are awaited in their own tasks.
        let proposed = raft.client_write_ff(command).await;
        drop(gate);
        match proposed {
            Err(fatal) => answer_all(replies, ProposeError::RaftStopped(Arc::new(fatal))),
            Ok(applied) => {
                tokio::spawn(async move {
                    match applied.await {
                        Ok(result) => answer(result, replies),
                        Err(_) => answer_all(replies, ProposeError::Unanswered),
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Gives each event of the entry its outcome, in order.
fn answer(result: openraft::raft::ClientWriteResult<crate::types::TypeConfig>, replies: Vec<Reply>) {
    match result {
        Ok(response) => {
            let index = response.log_id.index;
            let mut outcomes = response.data.events.into_iter();
            for reply in replies {
                let outcome = outcomes.next().ok_or(ProposeError::NoOutcome { index });
                let _ = reply.send(outcome);
            }
        }
        Err(ClientWriteError::ForwardToLeader(_)) => answer_all(replies, ProposeError::NotLeader),
        Err(err) => answer_all(replies, ProposeError::Refused(Arc::new(err))),
    }
}

fn answer_all(replies: Vec<Reply>, err: ProposeError) {
    for reply in replies {
        // The handler may have given up; nobody to tell then.
        let _ = reply.send(Err(err.clone()));
    }
}

/// This node's wall clock in milliseconds since the Unix epoch (0 for a
/// clock set before it: the log's time then simply does not advance).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// What `event` counts towards its entry's size: its JSON length plus
/// [`EVENT_OVERHEAD_BYTES`].
pub(crate) fn event_bytes(event: &ProposedEvent) -> usize {
    json_len(event) + EVENT_OVERHEAD_BYTES
}

/// The length of `event`'s JSON, without building it.
fn json_len(event: &ProposedEvent) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a plain data type into a counter cannot fail; 0 would
    // only make the batch a little larger.
    let _ = serde_json::to_writer(&mut count, event);
    count.0
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::disk::record;
    use crate::event::CriticalEvent;
    use crate::proto::pb;
    use crate::state_machine::GameStateMachine;
    use crate::types::{Entry, LogId};

    fn event() -> impl Strategy<Value = CriticalEvent> {
        prop_oneof![
            (any::<u64>(), ".{0,64}", any::<u64>())
                .prop_map(|(player_id, name, timestamp)| CriticalEvent::PlayerJoin { player_id, name, timestamp }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(player_id, timestamp)| CriticalEvent::PlayerLeave { player_id, timestamp }),
            (any::<u64>(), any::<i32>(), any::<u64>())
                .prop_map(|(player_id, score, timestamp)| CriticalEvent::ScoreUpdate { player_id, score, timestamp }),
            (".{0,64}", any::<u64>())
                .prop_map(|(state, timestamp)| CriticalEvent::GameStateChange { state, timestamp }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// What the batcher counts for an entry bounds both of its
        /// encodings: the Raft log's protobuf record and the event file's
        /// JSON record, with the largest numbers either can hold.
        #[test]
        fn the_counted_size_bounds_both_encodings_of_an_entry(
            events in proptest::collection::vec(
                (proptest::option::of("\\PC{1,32}|[\"\\\\\u{1}]{1,128}"), event()),
                1..20,
            )
        ) {
            let events: Vec<ProposedEvent> =
                events.into_iter().map(|(request_id, event)| ProposedEvent { request_id, event }).collect();
            let counted: usize = events.iter().map(event_bytes).sum::<usize>() + ENTRY_OVERHEAD_BYTES;
            let command = EventBatch { events, proposed_at_ms: u64::MAX, request_id_window_ms: u64::MAX };
            let log_id = LogId::new(CommittedLeaderId::new(u64::MAX, u64::MAX), u64::MAX);
            let entry = Entry { log_id, payload: EntryPayload::Normal(command) };

            let protobuf = pb::Entry::from(entry.clone()).encoded_len() + record::HEADER_LEN as usize;
            prop_assert!(protobuf <= counted, "log record {protobuf} > counted {counted}");

            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let stored = runtime.block_on(async {
                let mut sm = GameStateMachine::in_memory();
                sm.apply([entry]).await.expect("apply");
                sm.applied().dat_len as usize
            });
            prop_assert!(stored <= counted, "event file record {stored} > counted {counted}");
        }
    }
}
