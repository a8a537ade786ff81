//! One node is kept running across start, reads, kill -9 restart and join,
//! so each phase meets the state the one before left, as a long-lived node
//! would.

use std::time::{Duration, Instant};

use gameraft::api::{EventsPage, EventsResponse, NodesResponse, MAX_PAGE_LIMIT};
use gameraft::event::GameEvent;
use gameraft::types::PeerAddr;

use crate::client::post_event;
use crate::generate::event;
use crate::node::{mem, node_command, reset_hwm, spawn_node, Mem, Node, RssSampler};
use crate::{Bench, JOIN_LIMIT, START_LIMIT};

pub struct StartTimes {
    pub label: &'static str,
    pub to_stdout: Duration,
    pub to_ready: Result<Duration, String>,
    pub to_first_write: Result<Duration, String>,
    /// Writes acknowledged while measuring (each adds one event).
    pub writes: u64,
}

pub struct ReadFigures {
    pub elapsed: Duration,
    pub body_bytes: u64,
    /// Highest VmRSS sampled every 10 ms during the read.
    pub max_rss_kib: u64,
    /// VmHWM after the read (reset before it when the kernel allows).
    pub hwm_kib: u64,
}

pub struct HeldFigures {
    pub events: u64,
    pub start: StartTimes,
    pub idle: Mem,
    pub full: ReadFigures,
    pub paged: ReadFigures,
    pub pages: u64,
    pub hwm_reset: bool,
}

pub struct Held {
    pub node: Node,
    pub expected_total: u64,
    pub figures: HeldFigures,
}

impl Bench {
    /// Starts node 1 on its generated directory and takes every start, memory
    /// and read figure.
    pub async fn held_node(&self, name: &str, events: u64, addr: &PeerAddr) -> Held {
        let (node, start) = self.start_existing(name, addr, "first start on the generated directory").await;
        let expected_total = events + start.writes;

        // Idle: let start-up settle, then read VmRSS and VmHWM (the peak
        // since the process started, start-up included).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = mem(node.pid);

        eprintln!("{name}: full GET /events");
        let hwm_reset = reset_hwm(node.pid);
        let sampler = RssSampler::start(node.pid);
        let (elapsed, body_bytes) = self.read_all(&node, events, expected_total).await;
        let full =
            ReadFigures { elapsed, body_bytes, max_rss_kib: sampler.stop().await, hwm_kib: mem(node.pid).hwm_kib };

        eprintln!("{name}: paging through GET /events?from=&limit={MAX_PAGE_LIMIT}");
        reset_hwm(node.pid);
        let sampler = RssSampler::start(node.pid);
        let (elapsed, body_bytes, pages) = self.read_pages(&node, events, expected_total).await;
        let paged =
            ReadFigures { elapsed, body_bytes, max_rss_kib: sampler.stop().await, hwm_kib: mem(node.pid).hwm_kib };

        Held { node, expected_total, figures: HeldFigures { events, start, idle, full, paged, pages, hwm_reset } }
    }

    /// Spawns node 1 on its existing directory and times the address line,
    /// `/ready` and the first acknowledged write, all from the spawn.
    pub async fn start_existing(&self, name: &str, addr: &PeerAddr, label: &'static str) -> (Node, StartTimes) {
        let data = self.root.join(name);
        let serve = node_command(1, &addr.http_addr, &addr.raft_addr, &data, None);
        eprintln!("{name}: {label}");
        let node = spawn_node(name, &self.root, serve).await;
        let ready = async {
            self.wait_ready(&node, START_LIMIT).await?;
            Ok(node.spawned_at.elapsed())
        };
        let write = async {
            let url = format!("{}/events", node.base);
            let deadline = Instant::now() + START_LIMIT;
            let mut tag = 9 << 40;
            loop {
                tag += 1;
                let body = serde_json::json!({ "event": GameEvent::Critical(event(tag)) });
                match post_event(&self.http, &url, &body).await {
                    Ok(_) => return Ok(node.spawned_at.elapsed()),
                    Err(err) if Instant::now() > deadline => return Err(format!("no write acknowledged: {err}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        };
        let (to_ready, to_first_write): (Result<Duration, String>, Result<Duration, String>) =
            tokio::join!(ready, write);
        let writes = u64::from(to_first_write.is_ok());
        for failed in [&to_ready, &to_first_write].into_iter().filter_map(|r| r.as_ref().err()) {
            eprintln!("{name}: {failed}\n{}", node.log_tail());
        }
        let times = StartTimes { label, to_stdout: node.to_stdout, to_ready, to_first_write, writes };
        (node, times)
    }

    /// The whole `GET /events` body, checked: valid JSON, `expected_total`
    /// events, the first `generated` of them exactly the generated ones.
    async fn read_all(&self, node: &Node, generated: u64, expected_total: u64) -> (Duration, u64) {
        let url = format!("{}/events", node.base);
        let started = Instant::now();
        let mut resp = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {url} status");
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap_or_else(|e| panic!("GET {url}: body cut: {e}")) {
            body.extend_from_slice(&chunk);
        }
        let elapsed = started.elapsed();
        let parsed: EventsResponse =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: body is not the expected JSON: {e}"));
        assert_eq!(parsed.count, expected_total, "GET {url}: count field");
        assert_eq!(parsed.events.len() as u64, expected_total, "GET {url}: events in the list");
        check_generated(&parsed.events, 0, generated);
        (elapsed, body.len() as u64)
    }

    /// Pages through every event with `?from=&limit=`; returns the time, the
    /// bytes read and the number of pages.
    async fn read_pages(&self, node: &Node, generated: u64, expected_total: u64) -> (Duration, u64, u64) {
        let started = Instant::now();
        let (mut from, mut bytes, mut pages) = (0, 0, 0);
        while from < expected_total {
            let url = format!("{}/events?from={from}&limit={MAX_PAGE_LIMIT}", node.base);
            let resp = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(resp.status().as_u16(), 200, "GET {url} status");
            let body = resp.bytes().await.unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
            let page: EventsPage =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: page does not parse: {e}"));
            assert_eq!(page.from, from, "GET {url}: from");
            assert_eq!(page.total, expected_total, "GET {url}: total");
            assert_eq!(page.count, page.events.len() as u64, "GET {url}: count");
            assert_eq!(page.count, MAX_PAGE_LIMIT.min(expected_total - from), "GET {url}: page size");
            assert_eq!(page.next, from + page.count, "GET {url}: next");
            check_generated(&page.events, from, generated);
            bytes += body.len() as u64;
            pages += 1;
            from = page.next;
        }
        (started.elapsed(), bytes, pages)
    }
}

/// Events at positions `first..` of the log must be the generated ones
/// (positions below `generated`).
fn check_generated(events: &[GameEvent], first: u64, generated: u64) {
    for (position, got) in (first..generated).zip(events) {
        let want = GameEvent::Critical(event(position));
        assert_eq!(got, &want, "event at position {position} is not the generated one");
    }
}

pub struct JoinFigures {
    pub to_stdout: Duration,
    /// Until the joiner's `/status` reports every event.
    pub to_full_count: Result<Duration, String>,
    /// Until the leader lists the joiner as a voter.
    pub to_voter: Result<Duration, String>,
    pub leader_hwm_kib: u64,
    pub leader_max_rss_kib: u64,
    pub joiner_hwm_kib: u64,
    pub joiner_max_rss_kib: u64,
    pub hwm_reset: bool,
}

impl Bench {
    pub async fn join(&self, leader: &Node, expected: u64) -> JoinFigures {
        let data = self.root.join("node-joiner");
        let join_url = format!("http://{}", leader.http_addr);
        let serve = node_command(2, "127.0.0.1:0", "127.0.0.1:0", &data, Some(&join_url));
        eprintln!("join: a fresh node joins the {expected}-event node");
        let hwm_reset = reset_hwm(leader.pid);
        let leader_sampler = RssSampler::start(leader.pid);
        let joiner = spawn_node("node-joiner", &self.root, serve).await;
        let joiner_sampler = RssSampler::start(joiner.pid);
        let deadline = joiner.spawned_at + JOIN_LIMIT;

        let full_count = async {
            let mut last = String::from("no answer yet");
            while Instant::now() < deadline {
                match self.status(&joiner).await {
                    Ok(status) if status.event_count >= expected => return Ok(joiner.spawned_at.elapsed()),
                    Ok(status) => last = format!("event_count {}", status.event_count),
                    Err(err) => last = err,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(format!("joiner's /status did not reach {expected} events within {JOIN_LIMIT:?} (last: {last})"))
        };
        let voter = async {
            let url = format!("{}/nodes", leader.base);
            let mut last = String::from("no answer yet");
            while Instant::now() < deadline {
                match self.get_json::<NodesResponse>(&url).await {
                    Ok(nodes) if nodes.nodes.iter().any(|n| n.id == 2 && n.role == "voter") => {
                        return Ok(joiner.spawned_at.elapsed())
                    }
                    Ok(nodes) => {
                        last = nodes.nodes.iter().map(|n| format!("{}={}", n.id, n.role)).collect::<Vec<_>>().join(",")
                    }
                    Err(err) => last = err,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(format!("leader did not list node 2 as voter within {JOIN_LIMIT:?} (last: {last})"))
        };
        let (to_full_count, to_voter): (Result<Duration, String>, Result<Duration, String>) =
            tokio::join!(full_count, voter);
        let leader_max_rss_kib = leader_sampler.stop().await;
        let joiner_max_rss_kib = joiner_sampler.stop().await;
        if to_full_count.is_err() || to_voter.is_err() {
            eprintln!("join failed:\n{}\n{}", leader.log_tail(), joiner.log_tail());
        }
        JoinFigures {
            to_stdout: joiner.to_stdout,
            to_full_count,
            to_voter,
            leader_hwm_kib: mem(leader.pid).hwm_kib,
            leader_max_rss_kib,
            joiner_hwm_kib: mem(joiner.pid).hwm_kib,
            joiner_max_rss_kib,
            hwm_reset,
        }
    }
}
