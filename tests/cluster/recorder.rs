//! What a test's clients did, recorded as a chaos history
//! (`gameraft_chaos::history`) and checked by the chaos checker against
//! every node's final log: each acknowledged write is there exactly once, at
//! the log index its writer was told; nothing is there that nobody wrote; a
//! write acknowledged before another was sent comes first; the nodes' logs
//! agree; and every log read earlier is a prefix of the final one. See
//! `chaos/src/checker/mod.rs` for the whole list.
//!
//! The history names each write. A write sent with a request id is named by
//! it ([`Naming::RequestId`]); a write sent without one gets an id from the
//! node that the client never sees, so it is named by its event's tag
//! ([`Naming::Tag`]), which must then be unique to it.

use std::sync::{Arc, Mutex};

use gameraft::api::PositionedEvent;
use gameraft::client::{Client, ClientError, RawResponse};
use gameraft_chaos::checker::{self, Report};
use gameraft_chaos::history::{Entry, History, NodeLog, Op, OpKind, Outcome};
use tokio::time::Instant;

use crate::harness::{event, tag_of};

/// How a log entry is matched with the write that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// By the request id the client sent.
    RequestId,
    /// By the tag of the event: for writes sent without a request id.
    Tag,
}

/// The name of a write sent without a request id.
pub fn tag_name(tag: u64) -> String {
    format!("tag-{tag}")
}

/// One write, from before its first request on.
#[derive(Debug, Clone)]
pub struct Write {
    /// The logical client that sent it.
    pub client: u32,
    /// Its request id, or [`tag_name`] for a write sent without one.
    pub name: String,
    pub tag: u64,
    pub invoke_ns: u64,
    /// The nodes it was sent to, one per attempt.
    pub nodes: Vec<u64>,
}

/// The operations of one test, shared by its client tasks.
#[derive(Clone)]
pub struct Recorder {
    naming: Naming,
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    pub fn new(naming: Naming) -> Self {
        Self { naming, start: Instant::now(), ops: Arc::default() }
    }

    /// Nanoseconds since the recorder was made: the history's clock.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A write about to be sent for the first time.
    pub fn begin(&self, client: u32, name: String, tag: u64) -> Write {
        Write { client, name, tag, invoke_ns: self.now_ns(), nodes: Vec::new() }
    }

    /// `write` was answered 200 with `log_index`.
    pub fn acked(&self, write: Write, log_index: u64, duplicate: bool) {
        self.push(write, Outcome::Ok, Some(log_index), duplicate);
    }

    /// `write` got no 200: it may have been applied, at most once, or not.
    pub fn unknown(&self, write: Write) {
        self.push(write, Outcome::Unknown, None, false);
    }

    fn push(&self, write: Write, outcome: Outcome, log_index: Option<u64>, duplicate: bool) {
        let complete_ns = self.now_ns();
        let mut ops = self.ops.lock().expect("history lock");
        let kind = OpKind::Append {
            request_id: write.name,
            player_id: write.tag,
            log_index,
            duplicate,
            attempts: write.nodes.len().max(1) as u32,
            nodes: write.nodes,
        };
        let id = ops.len() as u64;
        ops.push(Op { id, client: write.client, invoke_ns: write.invoke_ns, complete_ns, outcome, kind });
    }

    /// `POST /events` of the event tagged `tag`, without a request id,
    /// through `node`; recorded as acknowledged if answered 200, as unknown
    /// otherwise.
    pub async fn post_tagged(&self, node: u64, client: &Client, tag: u64) -> Result<RawResponse, ClientError> {
        assert_eq!(self.naming, Naming::Tag, "a write without a request id is named by its tag");
        let mut write = self.begin(0, tag_name(tag), tag);
        write.nodes.push(node);
        let answer = client.post_event(&event(tag)).await;
        match &answer {
            Ok(resp) if resp.status == 200 => {
                let log_index = resp.body["log_index"].as_u64().expect("a 200 carries its log_index");
                self.acked(write, log_index, false);
            }
            _ => self.unknown(write),
        }
        answer
    }

    /// Node `node` (in its `incarnation`-th process) was read to hold `log`,
    /// by a read begun at `invoke_ns`: every later final log must start with it.
    pub fn read(&self, node: u64, incarnation: u32, invoke_ns: u64, log: &[PositionedEvent]) {
        let entries = self.entries(log);
        let complete_ns = self.now_ns();
        let mut ops = self.ops.lock().expect("history lock");
        let kind = OpKind::Read { node, incarnation, from: 0, total: entries.len() as u64, entries };
        let id = ops.len() as u64;
        ops.push(Op { id, client: 0, invoke_ns, complete_ns, outcome: Outcome::Ok, kind });
    }

    /// Checks the history against every node's final `logs` (node id, its
    /// whole `GET /log`), read after the last write was acknowledged, and
    /// panics with the checker's report if any property fails.
    pub fn check(&self, logs: &[(u64, Vec<PositionedEvent>)]) -> Report {
        let final_logs = logs.iter().map(|(node, log)| NodeLog { node: *node, entries: self.entries(log) }).collect();
        let history = History { ops: self.ops.lock().expect("history lock").clone(), final_logs };
        let report = checker::check(&history);
        assert!(report.passed(), "the history fails the checker:\n{report}{}", report.stats);
        eprintln!("history checked against {} final logs: {}", logs.len(), report.stats);
        report
    }

    /// `log` as the checker sees it. Asserts that positions count up from 0.
    fn entries(&self, log: &[PositionedEvent]) -> Vec<Entry> {
        log.iter()
            .enumerate()
            .map(|(n, entry)| {
                assert_eq!(entry.position, n as u64, "positions count up: {entry:?}");
                let tag = tag_of(&entry.event);
                let request_id = match self.naming {
                    Naming::RequestId => entry.request_id.clone(),
                    Naming::Tag => Some(tag_name(tag)),
                };
                Entry { log_index: entry.log_index, request_id, player_id: tag }
            })
            .collect()
    }
}
