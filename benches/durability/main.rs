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

mod client;
mod generate;
mod held;
mod node;
mod report;
mod throughput;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use generate::generate;
use node::fixed_addr;
use report::Report;
use throughput::fsync_probe;

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
    large.node.child.process.kill().await.expect("SIGKILL the 1M-event node");
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
