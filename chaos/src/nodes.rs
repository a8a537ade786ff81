//! The gameraft processes: start, kill -9, pause, wipe, and asking who leads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use gameraft::launcher::{ServeChild, ServeCommand};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::time::Instant;

use crate::hosts::{Hosts, HTTP_PORT, RAFT_PORT};

/// What `GET /status` says (the fields the harness needs).
#[derive(Debug, Deserialize)]
pub struct Status {
    pub is_leader: bool,
    pub current_leader: Option<u64>,
    pub current_term: u64,
    pub event_count: u64,
}

/// How a node is started when its data directory holds no state (with
/// state, every node resumes and ignores these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Founding {
    /// `--bootstrap`: found a new cluster.
    Bootstrap,
    /// `--join` through this member's API.
    Join(u64),
    /// Neither flag: a node without state must refuse to start.
    Neither,
}

/// Snapshot cadence passed to every node, small enough that snapshots are
/// built, logs purged, and lagging followers sent snapshots within a run.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSettings {
    pub snapshot_after_logs: u64,
    pub logs_kept_after_snapshot: u64,
}

struct Running {
    child: ServeChild,
    paused: bool,
}

/// Every node of the run and its process.
pub struct Nodes {
    pub hosts: Hosts,
    binary: PathBuf,
    out_dir: PathBuf,
    pub snapshots: SnapshotSettings,
    running: Mutex<HashMap<u64, Running>>,
    incarnations: Mutex<HashMap<u64, u32>>,
    http: reqwest::Client,
}

impl Nodes {
    pub fn new(hosts: Hosts, binary: PathBuf, out_dir: PathBuf, snapshots: SnapshotSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self { hosts, binary, out_dir, snapshots, running: Mutex::default(), incarnations: Mutex::default(), http })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.hosts.ids()
    }

    pub fn http_addr(&self, id: u64) -> String {
        self.hosts.get(id).map(|h| h.http_addr()).unwrap_or_default()
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.out_dir.join(format!("node-{id}"))
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.out_dir.join(format!("node-{id}.log"))
    }

    pub fn delay_file(&self, id: u64) -> PathBuf {
        self.out_dir.join(format!("node-{id}.delay"))
    }

    /// While this file exists, node `id` aborts in the middle of installing
    /// a snapshot it received.
    pub fn crash_in_install_file(&self, id: u64) -> PathBuf {
        self.out_dir.join(format!("node-{id}.crash-in-install"))
    }

    /// How many times node `id`'s process has been started.
    pub fn incarnation(&self, id: u64) -> u32 {
        lock(&self.incarnations).get(&id).copied().unwrap_or(0)
    }

    /// Whether node `id`'s process is alive (a process that exited on its
    /// own, say after a failed join, is forgotten here).
    pub fn is_running(&self, id: u64) -> bool {
        let mut running = lock(&self.running);
        let exited = match running.get_mut(&id) {
            None => return false,
            Some(node) => !matches!(node.child.process.try_wait(), Ok(None)),
        };
        if exited {
            running.remove(&id);
        }
        !exited
    }

    pub fn is_paused(&self, id: u64) -> bool {
        lock(&self.running).get(&id).is_some_and(|r| r.paused)
    }

    /// Starts node `id` on its data directory; `founding` says what it does
    /// if the directory holds no state. Does not wait for it to listen: a
    /// node may be meant to refuse, or to wait for a partition to heal.
    pub fn start(&self, id: u64, founding: Founding) -> anyhow::Result<()> {
        let host = self.hosts.get(id).context("no such node")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id))?;
        let serve = ServeCommand::new(&self.binary)
            .via(self.hosts.runner(id))
            .id(id)
            .http_addr(SocketAddr::from((host.ip, HTTP_PORT)))
            .raft_addr(SocketAddr::from((host.ip, RAFT_PORT)))
            .data_dir(self.data_dir(id))
            // The harness's nodes listen on namespace addresses and are the
            // harness's own: no client tokens.
            .arg("--insecure")
            .arg("--fault-peer-delay-file")
            .arg(self.delay_file(id))
            .arg("--fault-crash-in-install-file")
            .arg(self.crash_in_install_file(id))
            .args(["--snapshot-after-logs", &self.snapshots.snapshot_after_logs.to_string()])
            .args(["--logs-kept-after-snapshot", &self.snapshots.logs_kept_after_snapshot.to_string()])
            .env("RUST_LOG", std::env::var("CHAOS_NODE_LOG").unwrap_or_else(|_| "info".into()))
            .stderr(log);
        let serve = match founding {
            Founding::Join(member) => serve.join(&format!("http://{}", self.http_addr(member))),
            Founding::Bootstrap => serve.bootstrap(),
            Founding::Neither => serve,
        };
        let child = serve.spawn().with_context(|| format!("starting {}", self.binary.display()))?;
        lock(&self.running).insert(id, Running { child, paused: false });
        *lock(&self.incarnations).entry(id).or_insert(0) += 1;
        Ok(())
    }

    /// Waits up to `within` for node `id`'s process to exit by itself and
    /// returns how it ended; `None` if it is still running (or was never
    /// started).
    pub async fn wait_exit(&self, id: u64, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            {
                let mut running = lock(&self.running);
                let node = running.get_mut(&id)?;
                if let Ok(Some(status)) = node.child.process.try_wait() {
                    running.remove(&id);
                    return Some(status);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The length of node `id`'s log file, to read what a process wrote
    /// from there on with [`Nodes::log_since`].
    pub fn log_len(&self, id: u64) -> u64 {
        std::fs::metadata(self.log_path(id)).map(|m| m.len()).unwrap_or(0)
    }

    /// What node `id`'s processes wrote to its log after byte `offset`.
    pub fn log_since(&self, id: u64, offset: u64) -> String {
        let Ok(bytes) = std::fs::read(self.log_path(id)) else { return String::new() };
        let start = (offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// `kill -9` (a paused process dies too) and waits for it to be gone.
    pub async fn kill(&self, id: u64) {
        let running = lock(&self.running).remove(&id);
        if let Some(mut running) = running {
            let _ = running.child.process.start_kill();
            let _ = running.child.process.wait().await;
        }
    }

    pub fn pause(&self, id: u64) -> bool {
        self.signal(id, Signal::SIGSTOP, true)
    }

    pub fn resume(&self, id: u64) -> bool {
        self.signal(id, Signal::SIGCONT, false)
    }

    fn signal(&self, id: u64, signal: Signal, paused: bool) -> bool {
        let mut running = lock(&self.running);
        let Some(node) = running.get_mut(&id) else { return false };
        let Some(pid) = node.child.pid() else { return false };
        let sent = kill(Pid::from_raw(pid as i32), signal).is_ok();
        if sent {
            node.paused = paused;
        }
        sent
    }

    /// Removes node `id`'s data directory (the node must be stopped).
    pub fn wipe(&self, id: u64) -> anyhow::Result<()> {
        let dir = self.data_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        Ok(())
    }

    pub async fn status(&self, id: u64) -> Option<Status> {
        let url = format!("http://{}/status", self.http_addr(id));
        let response = self.http.get(url).send().await.ok()?;
        response.json().await.ok()
    }

    /// The node that says it leads with the highest term, among those that
    /// answer.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.ids() {
            if !self.is_running(id) || self.is_paused(id) {
                continue;
            }
            if let Some(status) = self.status(id).await {
                if status.is_leader && best.is_none_or(|(term, _)| status.current_term > term) {
                    best = Some((status.current_term, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Waits until some node leads and every node in `voters` is a voter.
    pub async fn wait_for_voters(&self, voters: &[u64], within: Duration) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct NodesResponse {
            leader: Option<u64>,
            nodes: Vec<NodeInfo>,
        }
        #[derive(Deserialize)]
        struct NodeInfo {
            id: u64,
            role: String,
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.leader().await {
                let url = format!("http://{}/nodes", self.http_addr(leader));
                if let Ok(response) = self.http.get(url).send().await {
                    if let Ok(nodes) = response.json::<NodesResponse>().await {
                        let is_voter = |id: &u64| nodes.nodes.iter().any(|n| n.id == *id && n.role == "voter");
                        if nodes.leader.is_some() && voters.iter().all(is_voter) {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("nodes {voters:?} were not all voters within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills every process (the namespaces are removed by the caller).
    pub async fn stop_all(&self) {
        for id in self.ids() {
            self.resume(id);
            self.kill(id).await;
        }
    }

    /// Lines of node logs that show a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut found = Vec::new();
        for id in self.ids() {
            let Ok(text) = std::fs::read_to_string(self.log_path(id)) else { continue };
            for line in text.lines().filter(|l| l.contains("panicked")) {
                found.push(format!("node {id}: {line}"));
            }
        }
        found
    }
}

/// Locks `mutex`, taking the data even if a panicking holder poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `gameraft` binary next to this one (same cargo target directory).
pub fn default_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("gameraft"), dir.join("../gameraft")].into_iter().find(|p| Path::new(p).is_file())
}
