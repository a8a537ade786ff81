//! Write load through real HTTP clients, because the price of durability is
//! what a client waits for; the disk's bare fsync time is the floor to read
//! those latencies against.

use std::path::Path;
use std::time::{Duration, Instant};

use gameraft::event::GameEvent;
use tokio::task::JoinHandle;

use crate::client::post_event;
use crate::generate::event;
use crate::node::{cpu_secs, mem, node_command, spawn_node, Mem, Node};
use crate::{Bench, CLIENT_COUNTS, RUN, START_LIMIT, WARMUP};

pub struct Throughput {
    pub clients: usize,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// CPU seconds per wall second used by the node and by this bench process.
    pub node_cpu: f64,
    pub bench_cpu: f64,
}

/// What one load client saw.
#[derive(Default)]
struct ClientRun {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

pub struct ThroughputReport {
    pub runs: Vec<Throughput>,
    pub warmup_ok: u64,
    /// `/status` event count after the runs, against the acknowledged writes.
    pub final_count: u64,
    pub acknowledged: u64,
    /// The node's VmRSS and VmHWM (peak since its start) after the runs.
    pub mem: Mem,
}

impl Bench {
    pub async fn throughput(&self) -> ThroughputReport {
        let data = self.root.join("node-throughput");
        let serve = node_command(1, "127.0.0.1:0", "127.0.0.1:0", &data, None);
        let node = spawn_node("node-throughput", &self.root, serve).await;
        self.wait_ready(&node, START_LIMIT).await.unwrap_or_else(|e| panic!("{e}\n{}", node.log_tail()));

        eprintln!("throughput: warm-up {WARMUP:?} at 16 clients");
        let warmup = self.post_load(&node, 16, WARMUP, 1 << 40).await;
        let mut runs = Vec::new();
        for (round, &clients) in CLIENT_COUNTS.iter().enumerate() {
            eprintln!("throughput: {clients} clients for {RUN:?}");
            runs.push(self.post_load(&node, clients, RUN, (round as u64 + 2) << 40).await);
        }
        let acknowledged = warmup.ok + runs.iter().map(|r| r.ok).sum::<u64>();
        let final_count = self.status(&node).await.expect("status after the throughput runs").event_count;
        ThroughputReport { runs, warmup_ok: warmup.ok, final_count, acknowledged, mem: mem(node.pid) }
    }

    /// `clients` tasks each POST critical events back to back for `run`.
    async fn post_load(&self, node: &Node, clients: usize, run: Duration, tag_base: u64) -> Throughput {
        let url = format!("{}/events", node.base);
        let cpu_before = (cpu_secs(&node.pid.to_string()), cpu_secs("self"));
        let started = Instant::now();
        let deadline = started + run;
        let tasks: Vec<JoinHandle<ClientRun>> = (0..clients)
            .map(|client| {
                let http = self.http.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let mut run = ClientRun::default();
                    let mut tag = tag_base + ((client as u64) << 24);
                    while Instant::now() < deadline {
                        tag += 1;
                        let body = serde_json::json!({ "event": GameEvent::Critical(event(tag)) });
                        let sent = Instant::now();
                        match post_event(&http, &url, &body).await {
                            Ok(_) => run.latencies.push(sent.elapsed()),
                            Err(err) => {
                                run.errors += 1;
                                run.first_error.get_or_insert(err);
                            }
                        }
                    }
                    run
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for task in tasks {
            let run = task.await.expect("a load client panicked");
            latencies.extend(run.latencies);
            errors += run.errors;
            if first_error.is_none() {
                first_error = run.first_error;
            }
        }
        let elapsed = started.elapsed();
        let node_cpu = (cpu_secs(&node.pid.to_string()) - cpu_before.0) / elapsed.as_secs_f64();
        let bench_cpu = (cpu_secs("self") - cpu_before.1) / elapsed.as_secs_f64();
        latencies.sort_unstable();
        Throughput {
            clients,
            ok: latencies.len() as u64,
            errors,
            first_error,
            elapsed,
            median: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            node_cpu,
            bench_cpu,
        }
    }
}

impl Bench {
    /// `clients` tasks POST `total` critical events between them; every one
    /// must be acknowledged.
    pub async fn post_count(&self, node: &Node, clients: u64, total: u64) -> u64 {
        let url = format!("{}/events", node.base);
        let tasks: Vec<JoinHandle<Result<u64, String>>> = (0..clients)
            .map(|client| {
                let http = self.http.clone();
                let url = url.clone();
                let count = total / clients + u64::from(client < total % clients);
                tokio::spawn(async move {
                    for i in 0..count {
                        let tag = (7 << 40) + (client << 24) + i;
                        let body = serde_json::json!({ "event": GameEvent::Critical(event(tag)) });
                        post_event(&http, &url, &body).await?;
                    }
                    Ok(count)
                })
            })
            .collect();
        let mut acknowledged = 0;
        for task in tasks {
            match task.await.expect("a writer panicked") {
                Ok(count) => acknowledged += count,
                Err(err) => panic!("write before kill -9 failed: {err}\n{}", node.log_tail()),
            }
        }
        acknowledged
    }
}

/// Median time of a 4 KiB append plus `fdatasync` in `dir`: what one durable
/// write costs this disk at least.
pub async fn fsync_probe(dir: &Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut samples = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let block = [7u8; 4096];
        let samples: Vec<Duration> = (0..200)
            .map(|_| {
                let started = Instant::now();
                file.write_all(&block).expect("write the fsync probe");
                file.sync_data().expect("fdatasync the fsync probe");
                started.elapsed()
            })
            .collect();
        drop(file);
        std::fs::remove_file(&path).expect("remove the fsync probe");
        samples
    })
    .await
    .expect("the fsync probe panicked");
    samples.sort_unstable();
    percentile(&samples, 0.5)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
