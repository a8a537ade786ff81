//! Faults on a seeded random schedule.
//!
//! The seed fixes which faults come, in what order, with what durations and
//! which random targets; "the leader" is whoever leads when the fault starts.
//! The first round injects every kind once (shuffled), and always
//! completes, so even a short run covers them all; later rounds pick kinds at random. Each fault is healed
//! before the next one starts, and every start and heal is logged with its
//! time to `nemesis.jsonl` and stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::nodes::{lock, Nodes};
use crate::workload::Workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9` of a random node, restarted on its data directory.
    KillNode,
    /// `kill -9` of the leader, restarted on its data directory.
    KillLeader,
    /// SIGSTOP of the leader for longer than the election timeout, then SIGCONT.
    PauseLeader,
    /// The leader cut off from every peer (clients still reach it).
    IsolateLeader,
    /// A random majority and minority cut off from each other.
    SplitMajority,
    /// Two halves that share one node, which talks to both.
    Bridge,
    /// 30% of every node's peer packets dropped.
    PacketLoss,
    /// Every Raft RPC delayed 40-120 ms.
    Delay,
    /// A follower removed from the cluster, wiped, and added back by join.
    RemoveAndRejoin,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillNode,
        FaultKind::KillLeader,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::SplitMajority,
        FaultKind::Bridge,
        FaultKind::PacketLoss,
        FaultKind::Delay,
        FaultKind::RemoveAndRejoin,
    ];

    fn needs_network(self) -> bool {
        matches!(self, Self::IsolateLeader | Self::SplitMajority | Self::Bridge | Self::PacketLoss)
    }

    /// Faults after which the cluster needs a new leader: the time to the
    /// next acknowledged write is the unavailability they cause.
    pub fn hits_leader(self) -> bool {
        matches!(self, Self::KillLeader | Self::PauseLeader | Self::IsolateLeader)
    }
}

/// One line of `nemesis.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub t_ns: u64,
    /// Wall-clock time, to find the moment in the node logs.
    pub unix_ms: u64,
    pub kind: FaultKind,
    /// `start`, `heal`, or `skipped`.
    pub phase: &'static str,
    pub targets: Vec<u64>,
    pub detail: String,
}

pub struct Nemesis {
    nodes: Arc<Nodes>,
    workload: Arc<Workload>,
    rng: StdRng,
    log: Mutex<std::fs::File>,
    pub records: Mutex<Vec<FaultRecord>>,
    /// Node that joins newcomers (any member that is up).
    bootstrap: u64,
}

impl Nemesis {
    pub fn new(nodes: Arc<Nodes>, workload: Arc<Workload>, seed: u64, log: std::fs::File) -> Self {
        let bootstrap = nodes.ids().first().copied().unwrap_or(1);
        Self {
            nodes,
            workload,
            rng: StdRng::seed_from_u64(seed),
            log: Mutex::new(log),
            records: Mutex::default(),
            bootstrap,
        }
    }

    fn record(&self, kind: FaultKind, phase: &'static str, targets: Vec<u64>, detail: impl Into<String>) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let record = FaultRecord { t_ns: self.workload.now_ns(), unix_ms, kind, phase, targets, detail: detail.into() };
        println!(
            "[{:>7.1}s] nemesis {:<8} {:?} {:?} {}",
            record.t_ns as f64 / 1e9,
            phase,
            kind,
            record.targets,
            record.detail
        );
        if let Ok(line) = serde_json::to_string(&record) {
            let mut log = lock(&self.log);
            let _ = writeln!(log, "{line}");
        }
        lock(&self.records).push(record);
    }

    /// Injects faults until `until`, then returns with everything healed.
    pub async fn run(&mut self, until: Instant) {
        let network = self.nodes.hosts.has_network_faults();
        let (kinds, skipped): (Vec<FaultKind>, Vec<FaultKind>) =
            FaultKind::ALL.iter().partition(|kind| network || !kind.needs_network());
        for kind in skipped {
            self.record(kind, "skipped", vec![], "no network namespaces");
        }
        let mut round = kinds.clone();
        round.shuffle(&mut self.rng);
        let mut queue = round.into_iter();
        // The first round always completes, even past `until`, so every
        // kind is injected at least once.
        while (Instant::now() < until || queue.len() > 0) && !self.workload.stop.load(Ordering::Relaxed) {
            let quiet = Duration::from_millis(self.rng.gen_range(2_000..4_000));
            tokio::time::sleep(quiet).await;
            if Instant::now() >= until && queue.len() == 0 {
                break;
            }
            let kind = queue.next().unwrap_or_else(|| kinds[self.rng.gen_range(0..kinds.len())]);
            let hold = Duration::from_millis(self.rng.gen_range(4_000..8_000));
            self.inject(kind, hold).await;
        }
    }

    async fn inject(&mut self, kind: FaultKind, hold: Duration) {
        let ids = self.nodes.ids();
        let leader = self.nodes.leader().await;
        let random = ids[self.rng.gen_range(0..ids.len())];
        // Draw from the rng the same way whatever the cluster state, so the
        // seed decides the same schedule.
        let mut shuffled = ids.clone();
        shuffled.shuffle(&mut self.rng);
        let pause_extra = self.rng.gen_range(0..2_000);
        let restart_after = Duration::from_millis(self.rng.gen_range(500..3_000));
        let target_leader = || leader.unwrap_or(random);
        match kind {
            FaultKind::KillNode | FaultKind::KillLeader => {
                let target = if kind == FaultKind::KillNode { random } else { target_leader() };
                self.nodes.kill(target).await;
                self.record(kind, "start", vec![target], "SIGKILL");
                tokio::time::sleep(restart_after).await;
                let detail = match self.nodes.start(target, Some(self.bootstrap)) {
                    Ok(()) => "restarted on its data directory".to_string(),
                    Err(err) => format!("restart failed: {err:#}"),
                };
                self.record(kind, "heal", vec![target], detail);
            }
            FaultKind::PauseLeader => {
                let target = target_leader();
                let paused = self.nodes.pause(target);
                // Longer than the 3 s election timeout.
                let hold = Duration::from_millis(3_500 + pause_extra);
                self.record(kind, "start", vec![target], format!("SIGSTOP for {hold:?} (sent: {paused})"));
                tokio::time::sleep(hold).await;
                self.nodes.resume(target);
                self.record(kind, "heal", vec![target], "SIGCONT");
            }
            FaultKind::IsolateLeader | FaultKind::SplitMajority | FaultKind::Bridge => {
                let groups = match kind {
                    FaultKind::IsolateLeader => {
                        let target = target_leader();
                        vec![vec![target], ids.iter().copied().filter(|id| *id != target).collect()]
                    }
                    FaultKind::SplitMajority => {
                        let minority = (ids.len() - 1) / 2;
                        vec![shuffled[..minority].to_vec(), shuffled[minority..].to_vec()]
                    }
                    _ => {
                        let middle = shuffled.len() / 2;
                        vec![shuffled[..=middle].to_vec(), shuffled[middle..].to_vec()]
                    }
                };
                let result = self.nodes.hosts.partition(&groups).await;
                self.record(kind, "start", flatten(&groups), format!("groups {groups:?} {}", outcome(result)));
                tokio::time::sleep(hold).await;
                let result = self.nodes.hosts.heal().await;
                self.record(kind, "heal", vec![], outcome(result));
            }
            FaultKind::PacketLoss => {
                let mut results = Vec::new();
                for id in &ids {
                    results.push(self.nodes.hosts.lose(*id, 30).await);
                }
                let failed = results.into_iter().find_map(Result::err);
                self.record(kind, "start", ids.clone(), format!("30% of peer packets dropped {}", outcome_err(failed)));
                tokio::time::sleep(hold).await;
                let result = self.nodes.hosts.heal().await;
                self.record(kind, "heal", vec![], outcome(result));
            }
            FaultKind::Delay => {
                for id in &ids {
                    let _ = std::fs::write(self.nodes.delay_file(*id), "40 80");
                }
                self.record(kind, "start", ids.clone(), "every Raft RPC delayed 40-120 ms");
                tokio::time::sleep(hold).await;
                for id in &ids {
                    let _ = std::fs::remove_file(self.nodes.delay_file(*id));
                }
                self.record(kind, "heal", vec![], "delay removed");
            }
            FaultKind::RemoveAndRejoin => {
                let candidates: Vec<u64> =
                    shuffled.iter().copied().filter(|id| Some(*id) != leader && *id != self.bootstrap).collect();
                let Some(&target) = candidates.first() else {
                    self.record(kind, "skipped", vec![], "no follower to remove");
                    return;
                };
                let removed = self.remove(target).await;
                self.record(kind, "start", vec![target], format!("DELETE /nodes/{target}: {removed}"));
                tokio::time::sleep(hold / 2).await;
                self.nodes.kill(target).await;
                let detail = match self.nodes.wipe(target).and_then(|()| self.nodes.start(target, Some(self.bootstrap)))
                {
                    Ok(()) => "wiped and restarted with --join".to_string(),
                    Err(err) => format!("rejoin failed: {err:#}"),
                };
                self.record(kind, "heal", vec![target], detail);
            }
        }
    }

    /// Asks the cluster (through any live node) to remove `target`.
    async fn remove(&self, target: u64) -> String {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build();
        let Ok(http) = http else { return "no HTTP client".into() };
        for id in self.nodes.ids().into_iter().filter(|id| *id != target) {
            let url = format!("http://{}/nodes/{target}", self.nodes.http_addr(id));
            if let Ok(response) = http.delete(url).send().await {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return format!("{status}");
                }
                if status.is_client_error() {
                    return format!("{status} {body}");
                }
            }
        }
        "no node accepted the removal".into()
    }

    /// Undoes everything, whatever state a fault left: rules flushed, delays
    /// removed, paused nodes continued, dead nodes restarted, removed nodes
    /// joined again.
    pub async fn heal_all(&self) {
        let _ = self.nodes.hosts.heal().await;
        for id in self.nodes.ids() {
            let _ = std::fs::remove_file(self.nodes.delay_file(id));
            if self.nodes.is_paused(id) {
                self.nodes.resume(id);
            }
            if !self.nodes.is_running(id) {
                let _ = self.nodes.start(id, Some(self.bootstrap));
            }
        }
    }

    /// How many faults of each kind were injected (skipped ones not counted).
    pub fn counts(&self) -> BTreeMap<FaultKind, u32> {
        let mut counts = BTreeMap::new();
        for record in lock(&self.records).iter() {
            if record.phase == "start" {
                *counts.entry(record.kind).or_insert(0) += 1;
            }
        }
        counts
    }
}

fn flatten(groups: &[Vec<u64>]) -> Vec<u64> {
    let mut all: Vec<u64> = groups.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn outcome<E: std::fmt::Display>(result: Result<(), E>) -> String {
    outcome_err(result.err())
}

fn outcome_err<E: std::fmt::Display>(err: Option<E>) -> String {
    err.map(|e| format!("(FAILED: {e})")).unwrap_or_default()
}
