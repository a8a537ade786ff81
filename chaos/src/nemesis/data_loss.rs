//! Faults that take a node's state: `wipe_and_rejoin_same_id` (its data
//! directory deleted) and `crash_in_snapshot_install` (it dies while
//! installing a snapshot). Each takes one voter down for a while, so each
//! waits until every other node is up and a voter.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::schedule::{FaultKind, WipeVariant};
use super::{outcome, Nemesis, Observation};
use crate::nodes::Founding;

/// How long a node started without state and without flags may take to
/// refuse and exit.
const REFUSAL_WITHIN: Duration = Duration::from_secs(20);
/// How long a wiped node may take to be admitted again as a voter (the
/// nodes' own join timeout is 60 s).
const VOTER_AGAIN_WITHIN: Duration = Duration::from_secs(60);
/// How long the log may take to grow past a stopped follower's purge point.
const GROWTH_WITHIN: Duration = Duration::from_secs(120);
/// How long a follower sent a snapshot may take to crash installing it.
const CRASH_WITHIN: Duration = Duration::from_secs(30);
/// How long a restarted follower may take to hold what its peers held.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);
/// Entries beyond the snapshot cadence, for appends in flight when the
/// follower was stopped (its log may be ahead of the last acknowledged one).
const GROWTH_MARGIN: u64 = 100;
/// What a node logs when the crash point fires.
const CRASH_LOG_LINE: &str = "crashing in the middle of a snapshot install";
/// What a node logs when its join was answered.
const JOINED_LOG_LINE: &str = "joined the cluster";

impl Nemesis {
    pub(super) async fn wipe_and_rejoin(
        &mut self,
        variant: WipeVariant,
        leader: Option<u64>,
        shuffled: &[u64],
        restart_after: Duration,
    ) {
        let kind = FaultKind::WipeAndRejoinSameId;
        let target = match variant.seed_node {
            true => Some(self.bootstrap),
            false => shuffled.iter().copied().find(|id| Some(*id) != leader && *id != self.bootstrap),
        };
        let Some(target) = target else {
            self.record(kind, "skipped", vec![], "no follower other than the seed node");
            return;
        };
        if let Some(why) = self.unsafe_to_take_a_voter().await {
            self.record(kind, "skipped", vec![target], format!("not wiping: {why}"));
            return;
        }
        let role = if Some(target) == leader { "the leader" } else { "a follower" };
        self.nodes.kill(target).await;
        let wiped = self.nodes.wipe(target);
        self.record(
            kind,
            "start",
            vec![target],
            format!("SIGKILL of {role}; data directory deleted{}", outcome(wiped)),
        );
        tokio::time::sleep(restart_after).await;
        let mut observations = Vec::new();
        let mut details = Vec::new();
        if !variant.join {
            let (refused, detail) = self.start_without_flags(target).await;
            observations.push(Observation::required("refused_to_start_without_flags", refused));
            details.push(detail);
        }
        let rejoin = self.rejoin(target).await;
        observations.push(Observation::required("voter_again", rejoin.voter));
        observations.push(Observation::reported("leader_replaced_old_incarnation", rejoin.replaced));
        details.push(rejoin.detail);
        self.record_observed(kind, "heal", vec![target], details.join("; "), observations);
    }

    /// Starts `target` (without state) with neither `--bootstrap` nor
    /// `--join`: it must exit by itself, non-zero, naming both flags.
    async fn start_without_flags(&self, target: u64) -> (bool, String) {
        let offset = self.nodes.log_len(target);
        if let Err(err) = self.nodes.start(target, Founding::Neither) {
            return (false, format!("could not start it without flags: {err:#}"));
        }
        let exit = self.nodes.wait_exit(target, REFUSAL_WITHIN).await;
        let output = self.nodes.log_since(target, offset);
        let message = output.lines().map(str::trim).find(|l| l.contains("--bootstrap") && l.contains("--join"));
        match (exit, message) {
            (None, _) => {
                self.nodes.kill(target).await;
                (false, format!("without flags it did NOT exit within {REFUSAL_WITHIN:?} (killed)"))
            }
            (Some(status), Some(message)) if !status.success() => {
                (true, format!("without flags it exited by itself ({status}): {}", clip(message)))
            }
            (Some(status), message) => (
                false,
                format!(
                    "without flags it exited ({status}) {}",
                    message
                        .map_or("WITHOUT naming --bootstrap and --join".to_string(), |m| format!("but: {}", clip(m)))
                ),
            ),
        }
    }

    /// Starts the wiped `target` with `--join` and waits until the leader
    /// has answered its join (the old incarnation is listed as a voter too,
    /// so `/nodes` alone proves nothing) and every node is a voter.
    async fn rejoin(&self, target: u64) -> Rejoin {
        let offset = self.nodes.log_len(target);
        let via = self.member_other_than(target);
        let began = Instant::now();
        let failed = |detail: String| Rejoin { voter: false, replaced: false, detail };
        if let Err(err) = self.nodes.start(target, Founding::Join(via)) {
            return failed(format!("restart with --join failed: {err:#}"));
        }
        let deadline = began + VOTER_AGAIN_WITHIN;
        let answer = loop {
            let output = self.nodes.log_since(target, offset);
            if let Some(line) = output.lines().find(|l| l.contains(JOINED_LOG_LINE)) {
                break line.to_string();
            }
            if !self.nodes.is_running(target) {
                let last = output.lines().last().unwrap_or_default().trim().to_string();
                return failed(format!("with --join via node {via} it exited: {}", clip(&last)));
            }
            if Instant::now() >= deadline {
                return failed(format!("with --join via node {via}: no join answer within {VOTER_AGAIN_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let replaced = answer.contains(r#""outcome":"replaced""#) || answer.contains("replaced its old");
        let remaining = deadline.saturating_duration_since(Instant::now());
        let voters = self.nodes.wait_for_voters(&self.nodes.ids(), remaining).await;
        let how = if replaced { "the leader replaced its old incarnation" } else { "joined WITHOUT a replacement" };
        let voter = voters.is_ok();
        let detail = match voters {
            Ok(()) => {
                format!("with --join via node {via}: {how}; a voter again after {} ms", began.elapsed().as_millis())
            }
            Err(err) => format!("with --join via node {via}: {how}, but {err:#}"),
        };
        Rejoin { voter, replaced, detail }
    }

    pub(super) async fn crash_in_snapshot_install(&mut self, leader: Option<u64>, shuffled: &[u64]) {
        let kind = FaultKind::CrashInSnapshotInstall;
        let Some(target) = shuffled.iter().copied().find(|id| Some(*id) != leader) else {
            self.record(kind, "skipped", vec![], "no follower");
            return;
        };
        if let Some(why) = self.unsafe_to_take_a_voter().await {
            self.record(kind, "skipped", vec![target], format!("not stopping a follower: {why}"));
            return;
        }
        self.nodes.kill(target).await;
        let crash_file = self.nodes.crash_in_install_file(target);
        let armed = std::fs::write(&crash_file, "");
        let from = self.workload.highest_log_index.load(Ordering::Relaxed);
        let settings = self.nodes.snapshots;
        let needed = from + settings.snapshot_after_logs + settings.logs_kept_after_snapshot + GROWTH_MARGIN;
        self.record(
            kind,
            "start",
            vec![target],
            format!(
                "SIGKILL of a follower near log index {from}; crash point set{}; waiting for the log to pass {needed}",
                outcome(armed)
            ),
        );
        let grown = self.wait_for_log_index(needed, GROWTH_WITHIN).await;

        let offset = self.nodes.log_len(target);
        let via = self.member_other_than(target);
        let started = self.nodes.start(target, Founding::Join(via));
        let exit = match started {
            Ok(()) => self.nodes.wait_exit(target, CRASH_WITHIN).await,
            Err(_) => None,
        };
        let crashed = exit.is_some() && self.nodes.log_since(target, offset).contains(CRASH_LOG_LINE);
        let _ = std::fs::remove_file(&crash_file);
        let mut details = vec![format!("log reached {grown}")];
        details.push(match (&started, exit, crashed) {
            (Err(err), _, _) => format!("restart failed: {err:#}"),
            (Ok(()), Some(status), true) => format!("crashed during install ({status})"),
            (Ok(()), Some(status), false) => format!("exited ({status}) but NOT in a snapshot install"),
            (Ok(()), None, _) => format!("no crash within {CRASH_WITHIN:?}: no snapshot was installed"),
        });
        if !self.nodes.is_running(target) {
            if let Err(err) = self.nodes.start(target, Founding::Join(self.member_other_than(target))) {
                details.push(format!("restart without the crash point failed: {err:#}"));
            }
        }
        let caught_up = self.catch_up(target).await;
        details.push(caught_up.1);
        let observations = vec![
            Observation::reported("crashed_during_install", crashed),
            Observation::required("caught_up", caught_up.0),
        ];
        self.record_observed(kind, "heal", vec![target], details.join("; "), observations);
    }

    /// Waits until an acknowledged append got a log index of at least
    /// `index`; returns the highest one seen.
    async fn wait_for_log_index(&self, index: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let highest = self.workload.highest_log_index.load(Ordering::Relaxed);
            if highest >= index || Instant::now() >= deadline || self.workload.stop.load(Ordering::Relaxed) {
                return highest;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `target` holds at least as many events as any other node
    /// held when the wait began.
    async fn catch_up(&self, target: u64) -> (bool, String) {
        let began = Instant::now();
        let mut goal = 0;
        for id in self.nodes.ids().into_iter().filter(|id| *id != target) {
            if let Some(status) = self.nodes.status(id).await {
                goal = goal.max(status.event_count);
            }
        }
        let mut held = 0;
        while began.elapsed() < CATCH_UP_WITHIN {
            if let Some(status) = self.nodes.status(target).await {
                held = status.event_count;
                if held >= goal {
                    return (true, format!("caught up to {goal} events after {} ms", began.elapsed().as_millis()));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (false, format!("NOT caught up within {CATCH_UP_WITHIN:?}: {held} of {goal} events"))
    }
}

struct Rejoin {
    voter: bool,
    replaced: bool,
    detail: String,
}

/// A log line, cut to a length that fits a record.
fn clip(line: &str) -> String {
    const MAX: usize = 240;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}
