//! `gameraft-chaos`: runs a cluster under a nemesis, records a history, and
//! checks it. See the README's "Performance and proof under faults" section.
//!
//! ```text
//! cargo build --bins && target/debug/gameraft-chaos --profile short
//! target/release/gameraft-chaos --profile long --seed 42
//! ```

mod nemesis;
mod nodes;
mod report;
mod run;
mod workload;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
// In the library, for the cluster tests; `crate::hosts` here as before.
use gameraft_chaos::hosts;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// 3 nodes, about 2 minutes of faults: every kind at least once (CI).
    Short,
    /// 5 nodes, 30 minutes of faults.
    Long,
}

#[derive(Debug, Parser)]
#[command(about = "Jepsen-style fault injection and history checking for gameraft")]
struct Cli {
    #[arg(long, value_enum, default_value = "short")]
    profile: Profile,
    /// Nodes (overrides the profile).
    #[arg(long)]
    nodes: Option<usize>,
    /// Seconds of faults and load (overrides the profile).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Seed of the fault schedule and the workload; random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: u32,
    /// The gameraft binary; defaults to the one next to this binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the history, node logs and data go; `chaos-runs/seed-<seed>` by default.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use 127.0.0.x on loopback even if namespaces could be made (no partitions, no loss).
    #[arg(long)]
    loopback: bool,
    /// Keep the node data directories even when the run passes.
    #[arg(long)]
    keep_data: bool,
    /// Passed to every node: a snapshot after this many entries. Small, so
    /// that snapshots are built and sent to lagging followers during a run.
    #[arg(long, default_value_t = 300)]
    snapshot_after_logs: u64,
    /// Passed to every node: entries kept after a snapshot.
    #[arg(long, default_value_t = 50)]
    logs_kept_after_snapshot: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (nodes, duration) = match cli.profile {
        Profile::Short => (3, 120),
        Profile::Long => (5, 1800),
    };
    let seed = cli.seed.unwrap_or_else(rand::random);
    let binary = match cli.binary {
        Some(binary) => binary,
        None => nodes::default_binary().ok_or_else(|| {
            anyhow::anyhow!("no gameraft binary next to this one; build it (cargo build --bins) or pass --binary")
        })?,
    };
    let options = run::Options {
        nodes: cli.nodes.unwrap_or(nodes),
        duration: std::time::Duration::from_secs(cli.duration_secs.unwrap_or(duration)),
        seed,
        clients: cli.clients,
        binary,
        out: cli.out.unwrap_or_else(|| PathBuf::from(format!("chaos-runs/seed-{seed}"))),
        loopback: cli.loopback,
        keep_data: cli.keep_data,
        snapshots: nodes::SnapshotSettings {
            snapshot_after_logs: cli.snapshot_after_logs,
            logs_kept_after_snapshot: cli.logs_kept_after_snapshot,
        },
    };
    let passed = run::run(options).await?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}
