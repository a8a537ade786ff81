//! One run: form the cluster, load it through the nemesis, heal, check.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gameraft_chaos::checker;
use gameraft_chaos::history::{self, History, NodeLog, Op};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hosts::Hosts;
use crate::nemesis::Nemesis;
use crate::nodes::{lock, Founding, Nodes, SnapshotSettings};
use crate::report::{Liveness, RunShape, Summary};
use crate::workload::{read_full_log, Workload};

pub struct Options {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    pub clients: u32,
    pub binary: PathBuf,
    pub out: PathBuf,
    pub loopback: bool,
    pub keep_data: bool,
    pub snapshots: SnapshotSettings,
}

/// How long the healed cluster has to acknowledge a write and converge.
const RECOVERY: Duration = Duration::from_secs(60);

/// Runs the whole thing; `Ok(false)` when a property or liveness failed.
pub async fn run(options: Options) -> anyhow::Result<bool> {
    if options.out.exists() {
        std::fs::remove_dir_all(&options.out).with_context(|| format!("clearing {}", options.out.display()))?;
    }
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let out = std::fs::canonicalize(&options.out)?;
    let hosts = Hosts::create(options.nodes, options.loopback).await;
    match &hosts.loopback_reason {
        None => println!("hosts: {} network namespaces on a bridge", options.nodes),
        Some(reason) => println!("hosts: 127.0.0.x on loopback; partitions and packet loss are skipped: {reason}"),
    }
    println!(
        "seed {} ({} nodes, {:?} of faults, {} clients, a snapshot every {} entries keeping {}); artifacts in {}",
        options.seed,
        options.nodes,
        options.duration,
        options.clients,
        options.snapshots.snapshot_after_logs,
        options.snapshots.logs_kept_after_snapshot,
        out.display()
    );
    let nodes = Arc::new(Nodes::new(hosts, options.binary.clone(), out.clone(), options.snapshots)?);
    let result = run_on(&nodes, &options, &out).await;
    nodes.stop_all().await;
    nodes.hosts.destroy().await;
    let passed = result?;
    if passed && !options.keep_data {
        for id in nodes.ids() {
            let _ = std::fs::remove_dir_all(nodes.data_dir(id));
        }
    }
    match passed {
        true => println!("PASS: history and logs in {}", out.display()),
        false => println!("FAIL: history, nemesis log, node logs and data left in {}", out.display()),
    }
    Ok(passed)
}

async fn run_on(nodes: &Arc<Nodes>, options: &Options, out: &std::path::Path) -> anyhow::Result<bool> {
    let ids = nodes.ids();
    let first = ids[0];
    nodes.start(first, Founding::Bootstrap)?;
    nodes.wait_for_voters(&[first], Duration::from_secs(30)).await?;
    for id in &ids[1..] {
        nodes.start(*id, Founding::Join(first))?;
    }
    nodes.wait_for_voters(&ids, Duration::from_secs(60)).await?;
    println!("cluster formed: {ids:?}");

    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_history(ops_rx, out.join("history.jsonl")));
    let workload = Arc::new(Workload::new(nodes.clone(), Instant::now(), ops_tx)?);
    let clients: Vec<_> =
        (0..options.clients).map(|client| tokio::spawn(workload.clone().client(client, options.seed))).collect();

    let nemesis_log = std::fs::File::create(out.join("nemesis.jsonl"))?;
    let mut nemesis = Nemesis::new(nodes.clone(), workload.clone(), options.seed, nemesis_log);
    nemesis.run(Instant::now() + options.duration).await;
    nemesis.heal_all().await;
    println!("[{:>7.1}s] healed; clients finish their operations", workload.now_ns() as f64 / 1e9);
    workload.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }

    // Liveness: the healed cluster takes a write and every node converges.
    let healed_at = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let barrier = workload.append(u32::MAX, "barrier", &mut rng, true, RECOVERY).await;
    let barrier_ms = (barrier.outcome == history::Outcome::Ok).then(|| healed_at.elapsed().as_millis() as u64);
    let converged = converge(nodes, RECOVERY).await;
    let converged_ms = converged.then(|| healed_at.elapsed().as_millis() as u64);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut final_logs = Vec::new();
    for id in &ids {
        let entries = read_full_log(&http, &nodes.http_addr(*id))
            .await
            .with_context(|| format!("reading node {id}'s final log"))?;
        final_logs.push(NodeLog { node: *id, entries });
    }
    let faults = nemesis.counts();
    let records = lock(&nemesis.records).clone();
    drop(nemesis);
    drop(workload);
    let ops = writer.await??;
    std::fs::write(out.join("final-logs.json"), serde_json::to_vec(&final_logs)?)?;
    let history = History { ops, final_logs };
    let report = checker::check(&history);
    let liveness = Liveness { barrier_ms, converged_ms, panics: nodes.panics() };
    let summary =
        Summary::new(shape(options, nodes.hosts.has_network_faults()), &history, &report, faults, &records, liveness);
    let text = summary.to_string();
    println!("{text}");
    std::fs::write(out.join("summary.txt"), &text)?;
    Ok(summary.passed())
}

/// Writes each operation as it completes, so a run that dies still leaves
/// its history, and returns them all once every sender is gone.
async fn write_history(mut ops: mpsc::UnboundedReceiver<Op>, path: PathBuf) -> anyhow::Result<Vec<Op>> {
    let mut file = BufWriter::new(std::fs::File::create(&path)?);
    let mut all = Vec::new();
    while let Some(op) = ops.recv().await {
        history::write_jsonl(std::slice::from_ref(&op), &mut file)?;
        all.push(op);
    }
    file.flush()?;
    Ok(all)
}

/// Waits until every node reports the same event count twice in a row.
async fn converge(nodes: &Nodes, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut previous = None;
    while Instant::now() < deadline {
        let mut counts = Vec::new();
        for id in nodes.ids() {
            counts.push(nodes.status(id).await.map(|s| s.event_count));
        }
        let all_same = counts.iter().all(|c| c.is_some() && *c == counts[0]);
        if all_same && previous.as_ref() == Some(&counts) {
            return true;
        }
        previous = Some(counts);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

fn shape(options: &Options, namespaces: bool) -> RunShape {
    RunShape { seed: options.seed, nodes: options.nodes, duration_secs: options.duration.as_secs(), namespaces }
}
