//! `gameraft cluster`: a local cluster of `gameraft serve` processes on
//! 127.0.0.1, for trying gameraft out and for demos.
//!
//! Node 1 founds the cluster (`--bootstrap`); the others join it through
//! `--join`. Each node's log
//! goes to `<dir>/node-<id>.log` and its data to `<dir>/node-<id>/`; started
//! again, the nodes resume from their data (the `--join` is then ignored). Ctrl-C (or SIGTERM) stops every node with
//! SIGTERM, and SIGKILLs any that has not exited after a grace period.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Client;
use crate::config::RaftTimings;

#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// HTTP port of node 1; node i listens on base + i - 1.
    #[arg(long, default_value_t = 8081)]
    pub base_http_port: u16,
    /// Raft port of node 1; node i listens on base + i - 1.
    #[arg(long, default_value_t = 5001)]
    pub base_raft_port: u16,
    /// Directory for the nodes' log files (`node-<id>.log`) and data
    /// directories (`node-<id>/`). Running the command again on it resumes
    /// the same cluster with its events; delete it to start from scratch.
    #[arg(long, default_value = "gameraft-cluster")]
    pub dir: PathBuf,
    /// Keep every node's state in memory: nothing survives a stop.
    #[arg(long)]
    pub in_memory: bool,
    #[command(flatten)]
    pub raft: RaftTimings,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--nodes must be between 1 and 99")]
    NodeCount,
    #[error("cannot find the gameraft executable: {0}")]
    Executable(std::io::Error),
    #[error("cannot create {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot start node {id}: {source}")]
    Spawn { id: u16, source: std::io::Error },
    #[error("the cluster did not form within {0:?}; see the node logs")]
    NotFormed(Duration),
    #[error("node {id} exited unexpectedly ({status})")]
    NodeExited { id: u16, status: String },
    #[error("waiting for a signal: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}

/// Starts the cluster, prints where it is, and runs until Ctrl-C.
pub async fn run(config: ClusterConfig) -> Result<(), ClusterError> {
    if !(1..=99).contains(&config.nodes) {
        return Err(ClusterError::NodeCount);
    }
    let exe = std::env::current_exe().map_err(ClusterError::Executable)?;
    std::fs::create_dir_all(&config.dir).map_err(|source| ClusterError::Dir { path: config.dir.clone(), source })?;

    let mut pids = Vec::new();
    let mut exits = JoinSet::new();
    let first_url = format!("http://127.0.0.1:{}", config.base_http_port);
    for id in 1..=config.nodes {
        let http_port = config.base_http_port + id - 1;
        let raft_port = config.base_raft_port + id - 1;
        let log_path = config.dir.join(format!("node-{id}.log"));
        let log = std::fs::File::create(&log_path).map_err(|source| ClusterError::Dir { path: log_path, source })?;
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(["--id", &id.to_string()])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--raft-addr", &format!("127.0.0.1:{raft_port}")])
            .args(storage_args(&config, id))
            .args(timing_args(&config.raft))
            .env_remove("WORKER_ID")
            .env_remove("MASTER_URL")
            .env_remove("DATA_DIR")
            .env_remove("GAMERAFT_BOOTSTRAP")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        match id {
            1 => command.arg("--bootstrap"),
            _ => command.args(["--join", &first_url]),
        };
        let mut child = command.spawn().map_err(|source| ClusterError::Spawn { id, source })?;
        if let Some(pid) = child.id() {
            pids.push(Pid::from_raw(pid as i32));
        }
        exits.spawn(async move { (id, child.wait().await) });
    }

    let outcome = tokio::select! {
        formed = wait_until_formed(&config) => match formed {
            Ok(()) => wait_for_stop(&mut exits).await,
            Err(err) => Err(err),
        },
        Some(Ok((id, status))) = exits.join_next() => Err(node_exited(id, status)),
    };
    stop_all(&pids, &mut exits).await;
    outcome
}

fn storage_args(config: &ClusterConfig, id: u16) -> Vec<std::ffi::OsString> {
    match config.in_memory {
        true => vec!["--in-memory".into()],
        false => vec!["--data-dir".into(), config.dir.join(format!("node-{id}")).into_os_string()],
    }
}

fn timing_args(raft: &RaftTimings) -> Vec<String> {
    [
        ("--heartbeat-ms", raft.heartbeat_ms),
        ("--election-timeout-min-ms", raft.election_timeout_min_ms),
        ("--election-timeout-max-ms", raft.election_timeout_max_ms),
        ("--install-snapshot-timeout-ms", raft.install_snapshot_timeout_ms),
        ("--max-payload-entries", raft.max_payload_entries),
        ("--logs-kept-after-snapshot", raft.logs_kept_after_snapshot),
        ("--snapshot-after-logs", raft.snapshot_after_logs),
        ("--leader-probe-ms", raft.leader_probe_ms),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect()
}

/// Polls until every node is a voter and all agree on a leader, then prints
/// the cluster.
async fn wait_until_formed(config: &ClusterConfig) -> Result<(), ClusterError> {
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let clients: Vec<Client> = (0..config.nodes)
        .map(|i| Client::new(format!("http://127.0.0.1:{}", config.base_http_port + i)))
        .collect::<Result<_, _>>()?;
    loop {
        if let Some(leader) = agreed_leader(&clients, config.nodes).await {
            println!("gameraft local cluster: {} nodes, leader is node {leader}", config.nodes);
            for (i, client) in clients.iter().enumerate() {
                let id = i as u64 + 1;
                let role = if id == leader { "  (leader)" } else { "" };
                println!("  node {id}  {}  raft 127.0.0.1:{}{role}", client.base(), config.base_raft_port + i as u16);
            }
            println!("Node logs are in {}/. Press Ctrl-C to stop the cluster.", config.dir.display());
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NotFormed(limit));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn agreed_leader(clients: &[Client], expected_voters: u16) -> Option<u64> {
    let mut leader = None;
    for client in clients {
        let nodes = client.nodes().await.ok()?;
        let voters = nodes.nodes.iter().filter(|n| n.role == "voter").count();
        if voters != usize::from(expected_voters) || nodes.leader.is_none() {
            return None;
        }
        if leader.is_some() && leader != nodes.leader {
            return None;
        }
        leader = nodes.leader;
    }
    leader
}

/// Runs until Ctrl-C or SIGTERM. A node that dies (say, killed to watch a
/// failover) is reported and the others keep running.
async fn wait_for_stop(
    exits: &mut JoinSet<(u16, std::io::Result<std::process::ExitStatus>)>,
) -> Result<(), ClusterError> {
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ClusterError::Signal)?;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return result.map_err(ClusterError::Signal),
            _ = sigterm.recv() => return Ok(()),
            Some(Ok((id, status))) = exits.join_next() => {
                println!("{}; the other nodes keep running", node_exited(id, status));
            }
        }
    }
}

fn node_exited(id: u16, status: std::io::Result<std::process::ExitStatus>) -> ClusterError {
    let status = match status {
        Ok(status) => status.to_string(),
        Err(err) => err.to_string(),
    };
    ClusterError::NodeExited { id, status }
}

async fn stop_all(pids: &[Pid], exits: &mut JoinSet<(u16, std::io::Result<std::process::ExitStatus>)>) {
    println!("stopping {} nodes", pids.len());
    for pid in pids {
        // The node may already have exited; nothing to do then.
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let grace = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = exits.join_next() => if next.is_none() { return },
            () = &mut grace => {
                for pid in pids {
                    let _ = kill(*pid, Signal::SIGKILL);
                }
                while exits.join_next().await.is_some() {}
                return;
            }
        }
    }
}
