//! Durability benchmark: what a durable (fsyncing) gameraft node costs.
//!
//! ```sh
//! cargo bench --bench durability
//! ```
//!
//! Runs real `gameraft serve` processes (the bench-profile binary) on
//! 127.0.0.1 and measures:
//!
//! 1. single-node `POST /events` throughput and latency at 1, 16 and 64
//!    concurrent HTTP clients (default config, durable data directory);
//! 2. the time to start a node on a data directory holding 100,000 and
//!    1,000,000 events: to its address line, to `/ready`, to the first
//!    acknowledged write; for 1,000,000 also after a `kill -9` that leaves
//!    4,000 HTTP writes in the log after the snapshot (log scan and replay);
//! 3. the node's memory (VmRSS, VmHWM) idle, while streaming the full
//!    `GET /events` and while paging through every event;
//! 4. the time for a fresh node to join the 1,000,000-event node with
//!    `--join` (the leader's log is purged, so this is a snapshot install).
//!
//! The 100,000- and 1,000,000-event data directories are generated through
//! gameraft's own storage API (the state machine and log store the node
//! runs), not through HTTP: at a few thousand writes per second the latter
//! would take minutes. Everything else goes through the real binary.
//!
//! Data directories and node logs are kept under
//! `target/tmp/bench-data/durability/` (emptied at the start of each run).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gameraft::api::{EventsPage, EventsResponse, NodesResponse, PostEventResponse, StatusResponse, MAX_PAGE_LIMIT};
use gameraft::event::{CriticalEvent, GameEvent};
use gameraft::state_machine::GameStateMachine;
use gameraft::storage::{DataDir, FileLogStore};
use gameraft::types::{Command, Entry, LogId, Membership, PeerAddr, Vote};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command as Process};
use tokio::task::JoinHandle;

const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];
const WARMUP: Duration = Duration::from_secs(2);
const RUN: Duration = Duration::from_secs(5);
const SMALL: u64 = 100_000;
const LARGE: u64 = 1_000_000;
/// Entries per `apply` call when generating a data directory.
const APPLY_BATCH: u64 = 10_000;
const RSS_TARGET_MIB: f64 = 150.0;
const START_LIMIT: Duration = Duration::from_secs(120);
const JOIN_LIMIT: Duration = Duration::from_secs(180);
/// HTTP writes after the snapshot before the kill -9 restart (below the
/// default `--snapshot-after-logs` 5000, so none is snapshotted).
const TAIL_WRITES: u64 = 4_000;
const RESTART_LABEL: &str = "restart after kill -9, 4000 writes in the log after the snapshot";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime for the bench");
    runtime.block_on(run());
}

async fn run() {
    let bench_started = Instant::now();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-data").join("durability");
    match std::fs::remove_dir_all(&root) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            panic!("cannot empty {}: {err}", root.display())
        }
        _ => {}
    }
    std::fs::create_dir_all(&root).expect("create the bench data directory");
    let bench = Bench { root: root.clone(), http: reqwest::Client::new() };
    eprintln!("durability bench: data and node logs in {}", root.display());

    let fsync = fsync_probe(&root).await;
    eprintln!("disk: 4 KiB append + fdatasync, median {fsync:.2?}");

    // Generate both data directories first (through the storage API).
    let small_addr = fixed_addr();
    let large_addr = fixed_addr();
    let small_gen = generate(&root.join("node-100k"), SMALL, small_addr.clone()).await;
    eprintln!("generated {SMALL} events in {:.1?}", small_gen.elapsed);
    let large_gen = generate(&root.join("node-1m"), LARGE, large_addr.clone()).await;
    eprintln!("generated {LARGE} events in {:.1?}", large_gen.elapsed);

    // 1. Throughput of a fresh single node.
    let throughput = bench.throughput().await;

    // 2 + 3. Start, memory and reads for 100k and 1M events.
    let small = bench.held_node("node-100k", SMALL, &small_addr).await;
    drop(small.node);
    let mut large = bench.held_node("node-1m", LARGE, &large_addr).await;

    // Restart after kill -9, with a log tail to recover: TAIL_WRITES events
    // written through HTTP after the snapshot (fewer than
    // --snapshot-after-logs, so they stay in the log and in unsnapshotted
    // state-machine records).
    let tail = bench.post_count(&large.node, 16, TAIL_WRITES).await;
    let before_kill = bench.status(&large.node).await.expect("status before kill -9").event_count;
    assert_eq!(before_kill, large.expected_total + tail, "events before kill -9 = generated + acknowledged");
    large.node.child.kill().await.expect("SIGKILL the 1M-event node");
    let (node, restart_after_kill) = bench.start_existing("node-1m", &large_addr, RESTART_LABEL).await;
    large.node = node;
    let expected_after_restart = before_kill + restart_after_kill.writes;
    let after_restart = bench.status(&large.node).await.expect("status after restart").event_count;
    assert_eq!(after_restart, expected_after_restart, "events after kill -9 and restart");

    // 4. A fresh node joins the 1M-event node.
    let join = bench.join(&large.node, expected_after_restart).await;
    drop(large.node);

    let report = Report {
        throughput,
        small_gen,
        large_gen,
        small: small.figures,
        large: large.figures,
        restart_after_kill,
        join,
        fsync,
        root,
        total: bench_started.elapsed(),
    };
    println!("{}", report.render());
}

struct Bench {
    root: PathBuf,
    http: reqwest::Client,
}

/// A running `gameraft serve`, killed when dropped.
struct Node {
    child: Child,
    pid: u32,
    base: String,
    http_addr: String,
    log_path: PathBuf,
    spawned_at: Instant,
    /// From spawning to the address line on stdout.
    to_stdout: Duration,
}

impl Node {
    fn log_tail(&self) -> String {
        log_tail(&self.log_path, 25)
    }
}

/// Spawns `gameraft serve` with `args` and waits for its address line.
async fn spawn_node(name: &str, log_dir: &Path, args: &[String]) -> Node {
    let log_path = log_dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("open node log {}: {e}", log_path.display()));
    let mut command = Process::new(env!("CARGO_BIN_EXE_gameraft"));
    command
        .arg("serve")
        .args(args)
        .env_remove("WORKER_ID")
        .env_remove("DATA_DIR")
        .env_remove("MASTER_URL")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let spawned_at = Instant::now();
    let mut child = command.spawn().expect("spawn gameraft serve");
    let pid = child.id().expect("a just-spawned child has a pid");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(START_LIMIT, lines.next_line()).await {
        Err(_) => panic!("{name} printed no address line within {START_LIMIT:?}:\n{}", log_tail(&log_path, 25)),
        Ok(Err(err)) => panic!("reading {name}'s stdout: {err}"),
        Ok(Ok(None)) => panic!("{name} exited at start:\n{}", log_tail(&log_path, 25)),
        Ok(Ok(Some(line))) => line,
    };
    let to_stdout = spawned_at.elapsed();
    // Keep draining stdout so the node never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addrs: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name}'s address line {line:?} is not JSON: {e}"));
    let http_addr = addrs["http_addr"].as_str().expect("address line has http_addr").to_string();
    Node { child, pid, base: format!("http://{http_addr}"), http_addr, log_path, spawned_at, to_stdout }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n    ");
            format!("  last lines of {}:\n    {tail}", path.display())
        }
        Err(err) => format!("  (cannot read {}: {err})", path.display()),
    }
}

/// A port that was free a moment ago: the generated membership must name the
/// addresses the node will listen on, so they are fixed in advance.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address").port()
}

fn fixed_addr() -> PeerAddr {
    PeerAddr { raft_addr: format!("127.0.0.1:{}", free_port()), http_addr: format!("127.0.0.1:{}", free_port()) }
}

fn event(tag: u64) -> CriticalEvent {
    CriticalEvent::ScoreUpdate { player_id: tag, score: (tag % 1000) as i32, timestamp: 1_700_000_000_000 + tag }
}

// ---------------------------------------------------------------------------
// Generating a data directory through the storage API

struct Generated {
    elapsed: Duration,
    /// Bytes of the event file, which is also the snapshot a joiner receives.
    dat_bytes: u64,
}

/// Builds the data directory of node 1, a one-voter cluster at `addr`, holding
/// `events` committed events, snapshotted, with its log purged up to the
/// snapshot: what a node that ran for a long time looks like.
async fn generate(path: &Path, events: u64, addr: PeerAddr) -> Generated {
    let started = Instant::now();
    let data_dir = DataDir::open(path, Some(1), || 1).expect("open the data directory to generate");
    let mut state_machine =
        GameStateMachine::open(&data_dir.state_dir()).expect("open the state machine of the generated directory");
    let leader = CommittedLeaderId::new(1, 1);
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, addr)]));
    let head = vec![
        Entry { log_id: LogId::new(leader, 0), payload: EntryPayload::Membership(membership) },
        Entry { log_id: LogId::new(leader, 1), payload: EntryPayload::Blank },
    ];
    state_machine.apply(head).await.expect("apply the membership and blank entries");
    // Event i travels in the entry at log index i + 2.
    let last_index = events + 1;
    let mut next = 2;
    while next <= last_index {
        let end = (next + APPLY_BATCH).min(last_index + 1);
        let batch: Vec<Entry> = (next..end)
            .map(|index| Entry {
                log_id: LogId::new(leader, index),
                payload: EntryPayload::Normal(Command::single(event(index - 2))),
            })
            .collect();
        state_machine.apply(batch).await.expect("apply a batch of generated events");
        next = end;
    }
    let applied = state_machine.applied();
    assert_eq!(applied.event_count, events, "generated state machine holds the wrong event count");
    let snapshot = state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build the snapshot of the generated state");
    let last = snapshot.meta.last_log_id.expect("the snapshot covers the generated entries");
    assert_eq!(last.index, last_index, "snapshot ends at the last generated entry");
    drop(snapshot);

    let mut log = FileLogStore::open(&data_dir.log_dir()).expect("open the log store of the generated directory");
    log.save_vote(&Vote::new_committed(1, 1)).await.expect("save the generated vote");
    log.purge(last).await.expect("purge the generated log up to the snapshot");
    drop(log);
    drop(state_machine);
    drop(data_dir); // releases the directory lock before the node opens it
    Generated { elapsed: started.elapsed(), dat_bytes: applied.dat_len }
}

// ---------------------------------------------------------------------------
// 1. Throughput

struct Throughput {
    clients: usize,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    median: Duration,
    p99: Duration,
    max: Duration,
    /// CPU seconds per wall second used by the node and by this bench process.
    node_cpu: f64,
    bench_cpu: f64,
}

/// What one load client saw.
#[derive(Default)]
struct ClientRun {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

struct ThroughputReport {
    runs: Vec<Throughput>,
    warmup_ok: u64,
    /// `/status` event count after the runs, against the acknowledged writes.
    final_count: u64,
    acknowledged: u64,
    /// The node's VmRSS and VmHWM (peak since its start) after the runs.
    mem: Mem,
}

impl Bench {
    async fn throughput(&self) -> ThroughputReport {
        let data = self.root.join("node-throughput");
        let args = strings(&[
            "--id",
            "1",
            "--http-addr",
            "127.0.0.1:0",
            "--raft-addr",
            "127.0.0.1:0",
            "--data-dir",
            path_str(&data),
        ]);
        let node = spawn_node("node-throughput", &self.root, &args).await;
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
    async fn post_count(&self, node: &Node, clients: u64, total: u64) -> u64 {
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
async fn fsync_probe(dir: &Path) -> Duration {
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

/// One `POST /events`; `Ok` only for a 200 with `"success": true`.
async fn post_event(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<PostEventResponse, String> {
    let resp = http
        .post(url)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("POST {url}: {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let answer: PostEventResponse =
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {url}: answer does not parse: {e}"))?;
    match answer.success {
        true => Ok(answer),
        false => Err(format!("POST {url}: success=false: {}", answer.message)),
    }
}

/// User + system CPU seconds of process `pid` ("self" for this one), threads
/// that already exited included.
fn cpu_secs(pid: &str) -> f64 {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // Fields after the command name (which may hold spaces) start at field 3.
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> f64 {
        fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or_else(|| panic!("{path}: no field {n}"))
    };
    (field(14) + field(15)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------
// 2 + 3. Starting on a full data directory; memory while idle and reading

struct StartTimes {
    label: &'static str,
    to_stdout: Duration,
    to_ready: Result<Duration, String>,
    to_first_write: Result<Duration, String>,
    /// Writes acknowledged while measuring (each adds one event).
    writes: u64,
}

#[derive(Default, Clone, Copy)]
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
}

struct ReadFigures {
    elapsed: Duration,
    body_bytes: u64,
    /// Highest VmRSS sampled every 10 ms during the read.
    max_rss_kib: u64,
    /// VmHWM after the read (reset before it when the kernel allows).
    hwm_kib: u64,
}

struct HeldFigures {
    events: u64,
    start: StartTimes,
    idle: Mem,
    full: ReadFigures,
    paged: ReadFigures,
    pages: u64,
    hwm_reset: bool,
}

struct Held {
    node: Node,
    expected_total: u64,
    figures: HeldFigures,
}

impl Bench {
    /// Starts node 1 on its generated directory and takes every start, memory
    /// and read figure.
    async fn held_node(&self, name: &str, events: u64, addr: &PeerAddr) -> Held {
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
    async fn start_existing(&self, name: &str, addr: &PeerAddr, label: &'static str) -> (Node, StartTimes) {
        let data = self.root.join(name);
        let args = strings(&[
            "--id",
            "1",
            "--http-addr",
            &addr.http_addr,
            "--raft-addr",
            &addr.raft_addr,
            "--data-dir",
            path_str(&data),
        ]);
        eprintln!("{name}: {label}");
        let node = spawn_node(name, &self.root, &args).await;
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

    async fn wait_ready(&self, node: &Node, limit: Duration) -> Result<(), String> {
        let url = format!("{}/ready", node.base);
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => format!("{}", resp.status()),
                Err(err) => err.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!("GET {url} not 200 within {limit:?}; last answer: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn status(&self, node: &Node) -> Result<StatusResponse, String> {
        self.get_json(&format!("{}/status", node.base)).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp =
            self.http.get(url).timeout(Duration::from_secs(10)).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: does not parse: {e}"))
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

fn mem(pid: u32) -> Mem {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{path} has no {name} line"))
    };
    Mem { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
}

/// Resets VmHWM to the current RSS (Linux >= 4.0, `clear_refs` value 5), so a
/// phase's peak is its own. Returns whether the kernel accepted it.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// Samples a process's VmRSS every 10 ms and keeps the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(mem(pid).rss_kib);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max.max(mem(pid).rss_kib)
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the RSS sampler panicked")
    }
}

// ---------------------------------------------------------------------------
// 4. Joining the 1M-event node

struct JoinFigures {
    to_stdout: Duration,
    /// Until the joiner's `/status` reports every event.
    to_full_count: Result<Duration, String>,
    /// Until the leader lists the joiner as a voter.
    to_voter: Result<Duration, String>,
    leader_hwm_kib: u64,
    leader_max_rss_kib: u64,
    joiner_hwm_kib: u64,
    joiner_max_rss_kib: u64,
    hwm_reset: bool,
}

impl Bench {
    async fn join(&self, leader: &Node, expected: u64) -> JoinFigures {
        let data = self.root.join("node-joiner");
        let join_url = format!("http://{}", leader.http_addr);
        let args = strings(&[
            "--id",
            "2",
            "--http-addr",
            "127.0.0.1:0",
            "--raft-addr",
            "127.0.0.1:0",
            "--data-dir",
            path_str(&data),
            "--join",
            &join_url,
        ]);
        eprintln!("join: a fresh node joins the {expected}-event node");
        let hwm_reset = reset_hwm(leader.pid);
        let leader_sampler = RssSampler::start(leader.pid);
        let joiner = spawn_node("node-joiner", &self.root, &args).await;
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

// ---------------------------------------------------------------------------
// The report

struct Report {
    throughput: ThroughputReport,
    small_gen: Generated,
    large_gen: Generated,
    small: HeldFigures,
    large: HeldFigures,
    restart_after_kill: StartTimes,
    join: JoinFigures,
    fsync: Duration,
    root: PathBuf,
    total: Duration,
}

impl Report {
    fn render(&self) -> String {
        let mut out = String::new();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let w = &mut out;
        let _ = writeln!(w, "\n## gameraft durability benchmark\n");
        let _ = writeln!(w, "rerun:   cargo bench --bench durability");
        let _ = writeln!(
            w,
            "machine: {cores} cores, {} RAM; bench-profile (optimised) binary; nodes on 127.0.0.1; data in {}",
            mem_total(),
            self.root.display()
        );
        let _ = writeln!(
            w,
            "disk:    4 KiB append + fdatasync in the data directory's file system, median {} (200 samples)",
            ms(self.fsync)
        );
        let _ = writeln!(w, "note:    the load generator runs on the same {cores} cores as the node(s) it measures");
        let _ = writeln!(w, "whole run: {:.0?}\n", self.total);

        let t = &self.throughput;
        let _ = writeln!(
            w,
            "### 1. Single-node POST /events (critical, fsync per append, default config), {}s per row after a {}s \
             warm-up",
            RUN.as_secs(),
            WARMUP.as_secs()
        );
        let _ = writeln!(
            w,
            "| clients | events/s | median | p99 | max | acknowledged | errors | node CPU | load-gen CPU |"
        );
        let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &t.runs {
            let _ = writeln!(
                w,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {:.2} cores | {:.2} cores |",
                r.clients,
                r.ok as f64 / r.elapsed.as_secs_f64(),
                ms(r.median),
                ms(r.p99),
                ms(r.max),
                r.ok,
                r.errors,
                r.node_cpu,
                r.bench_cpu
            );
        }
        for r in t.runs.iter().filter(|r| r.errors > 0) {
            let _ = writeln!(w, "first error at {} clients: {}", r.clients, r.first_error.as_deref().unwrap_or("?"));
        }
        let check = if t.final_count == t.acknowledged { "ok" } else { "MISMATCH" };
        let _ = writeln!(
            w,
            "check: /status event_count {} after {} acknowledged writes (warm-up {}): {check}",
            t.final_count, t.acknowledged, t.warmup_ok
        );
        let _ = writeln!(
            w,
            "node memory after the runs: VmRSS {}, VmHWM {} (peak since start, under write load)\n",
            mib(t.mem.rss_kib * 1024),
            mib(t.mem.hwm_kib * 1024)
        );

        let _ = writeln!(
            w,
            "### Data directories for 2-4: GENERATED THROUGH THE STORAGE API, not HTTP\n\
             (GameStateMachine::apply in batches of {APPLY_BATCH}, snapshot built, vote saved, log purged up to the \
             snapshot: the node starts from a snapshot with an empty log)"
        );
        let _ = writeln!(w, "| events | generated in | events.dat (= snapshot size) |");
        let _ = writeln!(w, "|---:|---:|---:|");
        for (events, gen) in [(SMALL, &self.small_gen), (LARGE, &self.large_gen)] {
            let _ = writeln!(w, "| {events} | {} | {} |", secs(gen.elapsed), mib(gen.dat_bytes));
        }
        let _ = writeln!(w);

        let _ = writeln!(w, "### 2. Starting a node on an existing data directory (times from spawning the process)");
        let _ = writeln!(w, "| events | start | address line | /ready 200 | first acknowledged write |");
        let _ = writeln!(w, "|---:|---|---:|---:|---:|");
        for (events, s) in [
            (self.small.events, &self.small.start),
            (self.large.events, &self.large.start),
            (self.large.events, &self.restart_after_kill),
        ] {
            let _ = writeln!(
                w,
                "| {events} | {} | {} | {} | {} |",
                s.label,
                ms(s.to_stdout),
                result_ms(&s.to_ready),
                result_ms(&s.to_first_write)
            );
        }
        for (events, s) in [
            (self.small.events, &self.small.start),
            (self.large.events, &self.large.start),
            (self.large.events, &self.restart_after_kill),
        ] {
            for failed in [&s.to_ready, &s.to_first_write].into_iter().filter_map(|r| r.as_ref().err()) {
                let _ = writeln!(w, "START PROBLEM ({events} events, {}): {failed}", s.label);
            }
        }
        let _ = writeln!(w);

        let _ = writeln!(
            w,
            "### 3. Node memory holding the events (target: < {RSS_TARGET_MIB:.0} MiB, independent of the event count)"
        );
        let reset = if self.small.hwm_reset && self.large.hwm_reset {
            "VmHWM reset (clear_refs 5) before each read phase, so each phase's VmHWM is its own peak"
        } else {
            "VmHWM could NOT be reset: it is the peak since the process started"
        };
        let _ = writeln!(w, "({reset}; max VmRSS sampled every 10 ms)");
        let _ = writeln!(w, "| events | phase | time | body | max VmRSS | VmHWM | under target |");
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---|");
        for h in [&self.small, &self.large] {
            let idle_ok = verdict(h.idle.hwm_kib.max(h.idle.rss_kib));
            let _ = writeln!(
                w,
                "| {} | idle after start (VmRSS now; VmHWM incl. start-up) | - | - | {} | {} | {idle_ok} |",
                h.events,
                mib(h.idle.rss_kib * 1024),
                mib(h.idle.hwm_kib * 1024)
            );
            for (phase, r) in [
                ("full GET /events (streamed, parsed, checked)".to_string(), &h.full),
                (format!("paging, {} pages of {MAX_PAGE_LIMIT}", h.pages), &h.paged),
            ] {
                let _ = writeln!(
                    w,
                    "| {} | {phase} | {} | {} | {} | {} | {} |",
                    h.events,
                    secs(r.elapsed),
                    mib(r.body_bytes),
                    mib(r.max_rss_kib * 1024),
                    mib(r.hwm_kib * 1024),
                    verdict(r.hwm_kib.max(r.max_rss_kib))
                );
            }
        }
        let _ = writeln!(w);

        let j = &self.join;
        let _ = writeln!(
            w,
            "### 4. A fresh node joins the {}-event node (--join, empty data dir; snapshot install in chunks)",
            self.large.events
        );
        let _ = writeln!(w, "| step (from spawning the joiner) | time |");
        let _ = writeln!(w, "|---|---:|");
        let _ = writeln!(w, "| address line | {} |", ms(j.to_stdout));
        let _ = writeln!(w, "| joiner's /status event_count = all events | {} |", result_ms(&j.to_full_count));
        let _ = writeln!(w, "| leader lists it as voter | {} |", result_ms(&j.to_voter));
        let reset = if j.hwm_reset { "leader's VmHWM reset before the join" } else { "leader's VmHWM since its start" };
        let _ = writeln!(
            w,
            "memory during the join ({reset}): leader max VmRSS {} / VmHWM {}; joiner max VmRSS {} / VmHWM {}",
            mib(j.leader_max_rss_kib * 1024),
            mib(j.leader_hwm_kib * 1024),
            mib(j.joiner_max_rss_kib * 1024),
            mib(j.joiner_hwm_kib * 1024)
        );
        for failed in [&j.to_full_count, &j.to_voter].into_iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(w, "JOIN PROBLEM: {failed}");
        }
        out
    }
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(|| "? ".to_string(), |kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
}

fn verdict(kib: u64) -> &'static str {
    if (kib as f64) / 1024.0 < RSS_TARGET_MIB {
        "yes"
    } else {
        "NO"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn result_ms(r: &Result<Duration, String>) -> String {
    match r {
        Ok(d) if *d >= Duration::from_secs(1) => secs(*d),
        Ok(d) => ms(*d),
        Err(_) => "FAILED (see below / stderr)".to_string(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("bench paths are UTF-8")
}
