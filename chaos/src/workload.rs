//! Concurrent clients that append and read through the faults, recording
//! every operation with its invoke and complete times and its outcome.
//!
//! An append carries a unique request id (also its event's `name`) and a
//! unique `player_id`. When an attempt times out or fails in a way that does
//! not prove the event was rejected (a 5xx, a 503, a reset), the client retries
//! with the same id on another node until it gets an answer or gives up; the
//! server's request-id window makes those retries safe. Only a 4xx proves
//! the event was not applied (`fail`); giving up leaves it `unknown`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gameraft_chaos::history::{Entry, Op, OpKind, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::nodes::Nodes;

/// How long a client's append keeps retrying before it is `unknown`.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// Most entries one read asks for.
const READ_LIMIT: u64 = 500;

/// Shared by every client of one run.
pub struct Workload {
    pub nodes: Arc<Nodes>,
    pub started: Instant,
    pub stop: AtomicBool,
    /// The highest Raft log index an acknowledged append was given: how far
    /// the leader's log has grown.
    pub highest_log_index: AtomicU64,
    next_op: AtomicU64,
    http: reqwest::Client,
    ops: mpsc::UnboundedSender<Op>,
}

/// The answer to one append attempt.
enum Attempt {
    Ok { log_index: Option<u64>, duplicate: bool },
    Rejected,
    Retry,
}

impl Workload {
    pub fn new(nodes: Arc<Nodes>, started: Instant, ops: mpsc::UnboundedSender<Op>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self {
            nodes,
            started,
            stop: AtomicBool::new(false),
            highest_log_index: AtomicU64::new(0),
            next_op: AtomicU64::new(0),
            http,
            ops,
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// One client: appends (most operations), reads, and now and then a
    /// malformed append that must be rejected, until told to stop.
    pub async fn client(self: Arc<Self>, client: u32, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ u64::from(client).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut seen_total: u64 = 0;
        let mut sequence = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let roll = rng.gen_range(0..100);
            if roll < 75 {
                sequence += 1;
                self.append(client, &format!("c{client}-{sequence}"), &mut rng, true, RETRY_FOR).await;
            } else if roll < 76 {
                sequence += 1;
                self.append(client, &format!("c{client}-{sequence}-bad"), &mut rng, false, RETRY_FOR).await;
            } else {
                let from = if rng.gen_bool(0.1) { 0 } else { seen_total.saturating_sub(100) };
                if let Some(total) = self.read(client, from, &mut rng).await {
                    seen_total = seen_total.max(total);
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..150))).await;
        }
    }

    fn random_node(&self, rng: &mut StdRng) -> u64 {
        let ids = self.nodes.ids();
        ids[rng.gen_range(0..ids.len())]
    }

    /// Appends one event with `request_id`, retrying on other nodes.
    /// `valid: false` sends an event missing a field, which must get a 400.
    pub async fn append(
        &self,
        client: u32,
        request_id: &str,
        rng: &mut StdRng,
        valid: bool,
        retry_for: Duration,
    ) -> Op {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let player_id = 1_000_000 + id;
        let event = match valid {
            true => json!({"PlayerJoin": {"player_id": player_id, "name": request_id, "timestamp": id}}),
            false => json!({"PlayerJoin": {"player_id": player_id, "timestamp": id}}),
        };
        let body = json!({"event": {"Critical": event}, "request_id": request_id});
        let invoke_ns = self.now_ns();
        let give_up = Instant::now() + retry_for;
        let mut nodes = Vec::new();
        let mut node = self.random_node(rng);
        let (outcome, log_index, duplicate) = loop {
            nodes.push(node);
            match self.attempt_append(node, &body).await {
                Attempt::Ok { log_index, duplicate } => {
                    if let Some(index) = log_index {
                        self.highest_log_index.fetch_max(index, Ordering::Relaxed);
                    }
                    break (Outcome::Ok, log_index, duplicate);
                }
                Attempt::Rejected => break (Outcome::Fail, None, false),
                Attempt::Retry if Instant::now() >= give_up => break (Outcome::Unknown, None, false),
                Attempt::Retry => {
                    let ids = self.nodes.ids();
                    let others: Vec<u64> = ids.iter().copied().filter(|n| *n != node).collect();
                    node = if others.is_empty() { node } else { others[rng.gen_range(0..others.len())] };
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(100..300))).await;
                }
            }
        };
        let op = Op {
            id,
            client,
            invoke_ns,
            complete_ns: self.now_ns(),
            outcome,
            kind: OpKind::Append {
                request_id: request_id.to_string(),
                player_id,
                log_index,
                duplicate,
                attempts: nodes.len() as u32,
                nodes,
            },
        };
        let _ = self.ops.send(op.clone());
        op
    }

    async fn attempt_append(&self, node: u64, body: &Value) -> Attempt {
        #[derive(Deserialize)]
        struct Answer {
            success: bool,
            log_index: Option<u64>,
            #[serde(default)]
            duplicate: bool,
        }
        let url = format!("http://{}/events", self.nodes.http_addr(node));
        let Ok(response) = self.http.post(url).json(body).send().await else { return Attempt::Retry };
        let status = response.status();
        if status.is_client_error() {
            return Attempt::Rejected;
        }
        if !status.is_success() {
            return Attempt::Retry;
        }
        match response.json::<Answer>().await {
            Ok(answer) if answer.success => Attempt::Ok { log_index: answer.log_index, duplicate: answer.duplicate },
            _ => Attempt::Retry,
        }
    }

    /// Reads up to [`READ_LIMIT`] entries from `from` on a random node;
    /// returns the node's event count.
    async fn read(&self, client: u32, from: u64, rng: &mut StdRng) -> Option<u64> {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let node = self.random_node(rng);
        let incarnation = self.nodes.incarnation(node);
        let invoke_ns = self.now_ns();
        let page = read_log_page(&self.http, &self.nodes.http_addr(node), from, READ_LIMIT).await;
        let complete_ns = self.now_ns();
        // A read that spanned a restart belongs to neither incarnation.
        let same_process = self.nodes.incarnation(node) == incarnation;
        let (outcome, entries, total) = match page {
            Ok(page) if same_process => (Outcome::Ok, page.entries, page.total),
            Ok(_) => (Outcome::Unknown, Vec::new(), 0),
            Err(_) => (Outcome::Fail, Vec::new(), 0),
        };
        let op = Op {
            id,
            client,
            invoke_ns,
            complete_ns,
            outcome,
            kind: OpKind::Read { node, incarnation, from, total, entries },
        };
        let ok = matches!(op.outcome, Outcome::Ok);
        let _ = self.ops.send(op);
        ok.then_some(total)
    }
}

/// One page of `GET /log`, taken apart.
pub struct PositionedEventsPage {
    pub entries: Vec<Entry>,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("status {0}")]
    Status(reqwest::StatusCode),
    #[error("unexpected body: {0}")]
    Body(String),
}

pub async fn read_log_page(
    http: &reqwest::Client,
    http_addr: &str,
    from: u64,
    limit: u64,
) -> Result<PositionedEventsPage, ReadError> {
    #[derive(Deserialize)]
    struct Page {
        entries: Vec<RawEntry>,
        total: u64,
    }
    #[derive(Deserialize)]
    struct RawEntry {
        log_index: u64,
        request_id: Option<String>,
        event: Value,
    }
    let url = format!("http://{http_addr}/log?from={from}&limit={limit}");
    let response = http.get(url).send().await?;
    if !response.status().is_success() {
        return Err(ReadError::Status(response.status()));
    }
    let page: Page = response.json().await?;
    let entries = page
        .entries
        .into_iter()
        .map(|raw| {
            // {"Critical": {"<Variant>": {"player_id": N, ...}}}
            let player_id = raw
                .event
                .get("Critical")
                .and_then(Value::as_object)
                .and_then(|variant| variant.values().next())
                .and_then(|fields| fields.get("player_id"))
                .and_then(Value::as_u64)
                .ok_or_else(|| ReadError::Body(format!("event without player_id: {}", raw.event)))?;
            Ok(Entry { log_index: raw.log_index, request_id: raw.request_id, player_id })
        })
        .collect::<Result<Vec<_>, ReadError>>()?;
    Ok(PositionedEventsPage { entries, total: page.total })
}

/// Every entry of node `http_addr`'s log, page by page.
pub async fn read_full_log(http: &reqwest::Client, http_addr: &str) -> Result<Vec<Entry>, ReadError> {
    let mut entries = Vec::new();
    loop {
        let page = read_log_page(http, http_addr, entries.len() as u64, 10_000).await?;
        let done = page.entries.is_empty() || entries.len() as u64 + page.entries.len() as u64 >= page.total;
        entries.extend(page.entries);
        if done {
            return Ok(entries);
        }
    }
}
