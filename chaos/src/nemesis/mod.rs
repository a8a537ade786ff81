//! Faults on a seeded random schedule.
//!
//! The seed fixes which faults come, in what order, with what durations and
//! which random targets; "the leader" is whoever leads when the fault starts.
//! The first round injects every kind once, and every variant of the kinds
//! that have some (shuffled), and always completes, so even a short run
//! covers them all; later rounds pick kinds and variants at random. Each
//! fault is healed before the next one starts, and every start and heal is
//! logged with its time to `nemesis.jsonl` and stdout. Some faults check
//! what the cluster did (a wiped node is a voter again, a node without
//! state refused to start, ...): each check is an [`Observation`] on the
//! heal record, and a required one that does not hold fails the run.

mod data_loss;
mod refuse;
mod schedule;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
pub use schedule::FaultKind;
use schedule::{first_round, random_fault, Planned};
use serde::Serialize;
use tokio::time::Instant;

use crate::nodes::{lock, Founding, Nodes};
use crate::workload::Workload;

/// One line of `nemesis.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub t_ns: u64,
    /// Wall-clock time, to find the moment in the node logs.
    pub unix_ms: u64,
    pub kind: FaultKind,
    /// Which variant of the kind, for kinds that have several.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub variant: &'static str,
    /// `start`, `heal`, or `skipped`.
    pub phase: &'static str,
    pub targets: Vec<u64>,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
}

/// Something the nemesis checked about what the cluster did during or
/// after a fault.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub name: &'static str,
    pub held: bool,
    /// A required observation that does not hold fails the run; the others
    /// are reported only.
    pub required: bool,
}

impl Observation {
    pub fn required(name: &'static str, held: bool) -> Self {
        Self { name, held, required: true }
    }

    pub fn reported(name: &'static str, held: bool) -> Self {
        Self { name, held, required: false }
    }
}

pub struct Nemesis {
    nodes: Arc<Nodes>,
    workload: Arc<Workload>,
    rng: StdRng,
    log: Mutex<std::fs::File>,
    pub records: Mutex<Vec<FaultRecord>>,
    /// The node that founded the cluster (`--bootstrap`).
    bootstrap: u64,
    /// The variant of the fault being injected, for its records.
    variant: &'static str,
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
            variant: "",
        }
    }

    fn record(&self, kind: FaultKind, phase: &'static str, targets: Vec<u64>, detail: impl Into<String>) {
        self.record_observed(kind, phase, targets, detail, Vec::new());
    }

    fn record_observed(
        &self,
        kind: FaultKind,
        phase: &'static str,
        targets: Vec<u64>,
        detail: impl Into<String>,
        observations: Vec<Observation>,
    ) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let record = FaultRecord {
            t_ns: self.workload.now_ns(),
            unix_ms,
            kind,
            variant: self.variant,
            phase,
            targets,
            detail: detail.into(),
            observations,
        };
        let variant = if record.variant.is_empty() { String::new() } else { format!(" ({})", record.variant) };
        let failed: Vec<&str> = record.observations.iter().filter(|o| !o.held).map(|o| o.name).collect();
        let failed = if failed.is_empty() { String::new() } else { format!(" [did not hold: {}]", failed.join(", ")) };
        println!(
            "[{:>7.1}s] nemesis {:<8} {:?}{variant} {:?} {}{failed}",
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
        let mut queue = first_round(&kinds, &mut self.rng).into_iter();
        // The first round always completes, even past `until`, so every
        // kind is injected at least once.
        while (Instant::now() < until || queue.len() > 0) && !self.workload.stop.load(Ordering::Relaxed) {
            let quiet = Duration::from_millis(self.rng.gen_range(2_000..4_000));
            tokio::time::sleep(quiet).await;
            if Instant::now() >= until && queue.len() == 0 {
                break;
            }
            let Some(planned) = queue.next().or_else(|| random_fault(&kinds, &mut self.rng)) else { break };
            let hold = Duration::from_millis(self.rng.gen_range(4_000..8_000));
            self.variant = planned.variant_name();
            self.inject(planned, hold).await;
            self.variant = "";
        }
    }

    async fn inject(&mut self, planned: Planned, hold: Duration) {
        let kind = planned.kind;
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
                let detail = match self.nodes.start(target, Founding::Join(self.member_other_than(target))) {
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
                self.record(kind, "start", flatten(&groups), format!("groups {groups:?}{}", outcome(result)));
                tokio::time::sleep(hold).await;
                let result = self.nodes.hosts.heal().await;
                self.record(kind, "heal", vec![], format!("rules removed{}", outcome(result)));
            }
            FaultKind::PacketLoss => {
                let mut results = Vec::new();
                for id in &ids {
                    results.push(self.nodes.hosts.lose(*id, 30).await);
                }
                let failed = results.into_iter().find_map(Result::err);
                self.record(kind, "start", ids.clone(), format!("30% of peer packets dropped{}", outcome_err(failed)));
                tokio::time::sleep(hold).await;
                let result = self.nodes.hosts.heal().await;
                self.record(kind, "heal", vec![], format!("rules removed{}", outcome(result)));
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
                let join = Founding::Join(self.member_other_than(target));
                let detail = match self.nodes.wipe(target).and_then(|()| self.nodes.start(target, join)) {
                    Ok(()) => "wiped and restarted with --join".to_string(),
                    Err(err) => format!("rejoin failed: {err:#}"),
                };
                self.record(kind, "heal", vec![target], detail);
            }
            FaultKind::WipeAndRejoinSameId => {
                self.wipe_and_rejoin(planned.wipe(), leader, &shuffled, restart_after).await;
            }
            FaultKind::AsymmetricRefuse => self.asymmetric_refuse(planned.refused(), leader, hold).await,
            FaultKind::CrashInSnapshotInstall => self.crash_in_snapshot_install(leader, &shuffled).await,
        }
    }

    /// A member other than `target` to join through: the first one running,
    /// else the founder.
    fn member_other_than(&self, target: u64) -> u64 {
        let ids = self.nodes.ids();
        let running = ids.iter().copied().find(|id| *id != target && self.nodes.is_running(*id));
        running.or_else(|| ids.iter().copied().find(|id| *id != target)).unwrap_or(self.bootstrap)
    }

    /// Why a fault that takes a voter's data must wait, if it must: it is
    /// only safe while every node is up, unpaused, and a voter, so that the
    /// others keep a majority of intact voters.
    async fn unsafe_to_take_a_voter(&self) -> Option<String> {
        let ids = self.nodes.ids();
        if let Some(down) = ids.iter().find(|id| !self.nodes.is_running(**id) || self.nodes.is_paused(**id)) {
            return Some(format!("node {down} is down or paused"));
        }
        match self.nodes.wait_for_voters(&ids, Duration::from_secs(10)).await {
            Ok(()) => None,
            Err(err) => Some(format!("{err:#}")),
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
    /// and crash points removed, paused nodes continued, dead nodes
    /// restarted, removed or wiped nodes joined again.
    pub async fn heal_all(&self) {
        let _ = self.nodes.hosts.heal().await;
        for id in self.nodes.ids() {
            let _ = std::fs::remove_file(self.nodes.delay_file(id));
            let _ = std::fs::remove_file(self.nodes.crash_in_install_file(id));
            if self.nodes.is_paused(id) {
                self.nodes.resume(id);
            }
        }
        for id in self.nodes.ids() {
            if !self.nodes.is_running(id) {
                let _ = self.nodes.start(id, Founding::Join(self.member_other_than(id)));
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
    err.map(|e| format!(" (FAILED: {e})")).unwrap_or_default()
}
