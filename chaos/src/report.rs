//! The summary table a run prints and leaves in `summary.txt`.

use std::collections::BTreeMap;
use std::fmt;

use gameraft_chaos::checker::Report;
use gameraft_chaos::history::{History, OpKind, Outcome};

#[cfg(test)]
use crate::nemesis::Observation;
use crate::nemesis::{FaultKind, FaultRecord};

/// What the healed cluster did.
pub struct Liveness {
    /// Time from the heal to the barrier write's acknowledgement.
    pub barrier_ms: Option<u64>,
    /// Time from the heal until every node held the same events.
    pub converged_ms: Option<u64>,
    /// Panic lines found in node logs.
    pub panics: Vec<String>,
}

/// How often one check of the nemesis held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub held: u32,
    pub total: u32,
    /// A required check that did not hold every time fails the run.
    pub required: bool,
}

impl Tally {
    fn failed(&self) -> bool {
        self.required && self.held < self.total
    }
}

/// What a run was asked to do, as the summary states it.
#[derive(Debug, Clone, Copy)]
pub struct RunShape {
    pub seed: u64,
    pub nodes: usize,
    pub duration_secs: u64,
    /// Whether the nodes ran in network namespaces (network faults possible).
    pub namespaces: bool,
}

pub struct Summary<'a> {
    shape: RunShape,
    faults: BTreeMap<FaultKind, u32>,
    appends: [u64; 3],
    retried: u64,
    duplicate_answers: u64,
    /// Acknowledged appends that shared their Raft entry with another one,
    /// and the most in one entry: shows that writes were batched.
    batched: (u64, u64),
    reads: [u64; 3],
    /// Per fault kind: time from each such fault to the first
    /// acknowledgement of a write invoked after it, in ns, sorted.
    unavailable: BTreeMap<FaultKind, Vec<u64>>,
    /// How many faults of each kind ran each variant.
    variants: BTreeMap<FaultKind, BTreeMap<&'static str, u32>>,
    /// Faults that could not be injected, by kind.
    skipped: BTreeMap<FaultKind, u32>,
    /// What the nemesis checked after its faults, by kind and check.
    checks: BTreeMap<(FaultKind, &'static str), Tally>,
    report: &'a Report,
    liveness: Liveness,
}

fn slot(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Fail => 1,
        Outcome::Unknown => 2,
    }
}

impl<'a> Summary<'a> {
    pub fn new(
        shape: RunShape,
        history: &History,
        report: &'a Report,
        faults: BTreeMap<FaultKind, u32>,
        records: &[FaultRecord],
        liveness: Liveness,
    ) -> Self {
        let (mut appends, mut reads, mut retried, mut duplicate_answers) = ([0; 3], [0; 3], 0, 0);
        let mut acknowledged: Vec<(u64, u64)> = Vec::new();
        let mut per_entry: BTreeMap<u64, u64> = BTreeMap::new();
        for op in &history.ops {
            match &op.kind {
                OpKind::Append { attempts, duplicate, log_index, .. } => {
                    appends[slot(&op.outcome)] += 1;
                    retried += u64::from(*attempts > 1);
                    duplicate_answers += u64::from(*duplicate);
                    if op.outcome == Outcome::Ok {
                        acknowledged.push((op.invoke_ns, op.complete_ns));
                        // A duplicate answer names the original's entry.
                        if let (Some(index), false) = (log_index, duplicate) {
                            *per_entry.entry(*index).or_default() += 1;
                        }
                    }
                }
                OpKind::Read { .. } => reads[slot(&op.outcome)] += 1,
            }
        }
        let unavailable = unavailability(acknowledged, records);
        let FaultOutcomes { variants, skipped, checks } = fault_outcomes(records);
        let shared = per_entry.values().filter(|&&n| n > 1).sum();
        let batched = (shared, per_entry.values().copied().max().unwrap_or(0));
        Summary {
            shape,
            faults,
            appends,
            retried,
            duplicate_answers,
            batched,
            reads,
            unavailable,
            variants,
            skipped,
            checks,
            report,
            liveness,
        }
    }

    pub fn passed(&self) -> bool {
        self.report.passed()
            && self.liveness.barrier_ms.is_some()
            && self.liveness.converged_ms.is_some()
            && self.liveness.panics.is_empty()
            && !self.checks.values().any(Tally::failed)
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.report.stats;
        let hosts = if self.shape.namespaces { "network namespaces" } else { "loopback" };
        writeln!(
            f,
            "== gameraft chaos: seed {}, {} nodes on {hosts}, {} s of faults ==",
            self.shape.seed, self.shape.nodes, self.shape.duration_secs
        )?;
        let faults: Vec<String> = self.faults.iter().map(|(kind, n)| format!("{} {n}", kind.name())).collect();
        let total: u32 = self.faults.values().sum();
        let mut rows = vec![("faults injected", format!("{total}: {}", faults.join(", ")))];
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self.skipped.iter().map(|(kind, n)| format!("{} {n}", kind.name())).collect();
            rows.push(("faults skipped (why: nemesis.jsonl)", skipped.join(", ")));
        }
        for (kind, variants) in &self.variants {
            let variants: Vec<String> = variants.iter().map(|(variant, n)| format!("{variant}: {n}")).collect();
            rows.push(("variants", format!("{}: {}", kind.name(), variants.join("; "))));
        }
        let mut kinds: Vec<FaultKind> = self.checks.keys().map(|(kind, _)| *kind).collect();
        kinds.dedup();
        for kind in kinds {
            let checks: Vec<String> = self
                .checks
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, name), tally)| {
                    let label = if tally.required { "" } else { " (reported)" };
                    let failed = if tally.failed() { " FAILED" } else { "" };
                    format!("{name} {}/{}{label}{failed}", tally.held, tally.total)
                })
                .collect();
            rows.push(("checked after the fault (held/total)", format!("{}: {}", kind.name(), checks.join(", "))));
        }
        rows.extend([
            (
                "appends",
                format!(
                    "ok {}, fail {}, unknown {} ({} retried, {} answered as duplicates)",
                    self.appends[0], self.appends[1], self.appends[2], self.retried, self.duplicate_answers
                ),
            ),
            (
                "batched (shared an entry; most in one)",
                format!("{} acknowledged appends; {}", self.batched.0, self.batched.1),
            ),
            ("reads", format!("ok {}, failed {}, spanning a restart {}", self.reads[0], self.reads[1], self.reads[2])),
            ("acknowledged events", stats.acknowledged_events.to_string()),
            ("lost", stats.lost.to_string()),
            ("duplicated", stats.duplicated.to_string()),
            ("reordered", stats.reordered.to_string()),
            ("final log (events)", stats.final_log_len.to_string()),
        ]);
        for (kind, gaps) in &self.unavailable {
            let ms = |ns: u64| ns / 1_000_000;
            rows.push((
                "unavailable after a fault (median / max)",
                format!(
                    "{}: {} / {} ms over {} faults",
                    kind.name(),
                    ms(gaps[gaps.len() / 2]),
                    ms(gaps[gaps.len() - 1]),
                    gaps.len()
                ),
            ));
        }
        if self.unavailable.is_empty() {
            rows.push(("unavailable after a fault (median / max)", "no fault".into()));
        }
        rows.push(("healed: barrier write acknowledged", ms(self.liveness.barrier_ms)));
        rows.push(("healed: every node converged", ms(self.liveness.converged_ms)));
        rows.push(("panics in node logs", self.liveness.panics.len().to_string()));
        for (name, value) in rows {
            writeln!(f, "{name:<42} {value}")?;
        }
        for panic in self.liveness.panics.iter().take(5) {
            writeln!(f, "  {panic}")?;
        }
        write!(f, "{}", self.report)?;
        writeln!(f, "verdict: {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// For each fault: the time from its start to the first acknowledgement of
/// a write invoked at or after it, by kind, sorted.
/// `acknowledged` holds `(invoke_ns, complete_ns)` of every ok append.
fn unavailability(mut acknowledged: Vec<(u64, u64)>, records: &[FaultRecord]) -> BTreeMap<FaultKind, Vec<u64>> {
    // Earliest acknowledgement among writes invoked at or after each
    // point: sort by invoke time, then a suffix minimum.
    acknowledged.sort_unstable();
    let mut earliest_after = vec![u64::MAX; acknowledged.len() + 1];
    for i in (0..acknowledged.len()).rev() {
        earliest_after[i] = earliest_after[i + 1].min(acknowledged[i].1);
    }
    let mut unavailable: BTreeMap<FaultKind, Vec<u64>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.phase == "start") {
        let first = acknowledged.partition_point(|(invoke, _)| *invoke < record.t_ns);
        if earliest_after[first] != u64::MAX {
            unavailable.entry(record.kind).or_default().push(earliest_after[first] - record.t_ns);
        }
    }
    unavailable.values_mut().for_each(|gaps| gaps.sort_unstable());
    unavailable
}

/// What the nemesis records say beyond the faults' times.
#[derive(Debug, Default)]
struct FaultOutcomes {
    /// How many faults of each kind ran each variant.
    variants: BTreeMap<FaultKind, BTreeMap<&'static str, u32>>,
    /// Faults that could not be injected, by kind.
    skipped: BTreeMap<FaultKind, u32>,
    /// How often each check held, by kind and check.
    checks: BTreeMap<(FaultKind, &'static str), Tally>,
}

fn fault_outcomes(records: &[FaultRecord]) -> FaultOutcomes {
    let mut outcomes = FaultOutcomes::default();
    for record in records {
        match record.phase {
            "start" if !record.variant.is_empty() => {
                *outcomes.variants.entry(record.kind).or_default().entry(record.variant).or_default() += 1;
            }
            "skipped" => *outcomes.skipped.entry(record.kind).or_default() += 1,
            _ => {}
        }
        for observation in &record.observations {
            let tally = outcomes.checks.entry((record.kind, observation.name)).or_default();
            tally.total += 1;
            tally.held += u32::from(observation.held);
            tally.required |= observation.required;
        }
    }
    outcomes
}

fn ms(value: Option<u64>) -> String {
    value.map(|ms| format!("after {ms} ms")).unwrap_or_else(|| "NO (within 60 s)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: FaultKind, phase: &'static str, t_ns: u64) -> FaultRecord {
        FaultRecord {
            t_ns,
            unix_ms: 0,
            kind,
            variant: "",
            phase,
            targets: vec![],
            detail: String::new(),
            observations: vec![],
        }
    }

    fn start(kind: FaultKind, t_ns: u64) -> FaultRecord {
        record(kind, "start", t_ns)
    }

    #[test]
    fn unavailability_counts_to_the_first_ack_of_a_write_invoked_after_the_fault() {
        let acknowledged = vec![
            (5, 100), // invoked before the fault: does not count, however late it completes
            (20, 70),
            (30, 40), // the first acknowledgement after the fault at 10
            (200, 260),
        ];
        let records = [
            start(FaultKind::KillLeader, 10),
            start(FaultKind::KillLeader, 150),
            start(FaultKind::KillNode, 10),
            start(FaultKind::PauseLeader, 300), // nothing acknowledged after it
        ];
        let gaps = unavailability(acknowledged, &records);
        assert_eq!(gaps.get(&FaultKind::KillLeader), Some(&vec![30, 110]));
        assert_eq!(gaps.get(&FaultKind::KillNode), Some(&vec![30]));
        assert_eq!(gaps.get(&FaultKind::PauseLeader), None);
    }

    #[test]
    fn every_kind_gets_its_median_and_max_and_heals_do_not_count() {
        let acknowledged = vec![(0, 1_000), (2_000, 2_500), (5_000, 9_000), (9_500, 9_600)];
        let records = [
            start(FaultKind::Delay, 1_900),                // 600
            start(FaultKind::Delay, 4_000),                // 5_000
            start(FaultKind::Delay, 9_000),                // 600
            start(FaultKind::WipeAndRejoinSameId, 4_500),  // 4_500
            start(FaultKind::CrashInSnapshotInstall, 100), // 2_400
            record(FaultKind::Delay, "heal", 9_100),
            record(FaultKind::AsymmetricRefuse, "skipped", 0),
        ];
        let gaps = unavailability(acknowledged, &records);
        assert_eq!(gaps.get(&FaultKind::Delay), Some(&vec![600, 600, 5_000]), "sorted: median 600, max 5_000");
        assert_eq!(gaps.get(&FaultKind::WipeAndRejoinSameId), Some(&vec![4_500]));
        assert_eq!(gaps.get(&FaultKind::CrashInSnapshotInstall), Some(&vec![2_400]));
        assert_eq!(gaps.get(&FaultKind::AsymmetricRefuse), None);
    }

    #[test]
    fn checks_are_tallied_per_kind_and_a_required_one_that_failed_once_fails() {
        let observed = |kind, observations| FaultRecord { observations, ..record(kind, "heal", 0) };
        let wipe = FaultKind::WipeAndRejoinSameId;
        let records = [
            FaultRecord { variant: "seed node, --join", ..start(wipe, 0) },
            FaultRecord { variant: "seed node, --join", ..start(wipe, 1) },
            FaultRecord { variant: "follower, --join", ..start(wipe, 2) },
            observed(wipe, vec![Observation::required("voter_again", true)]),
            observed(wipe, vec![Observation::required("voter_again", false)]),
            observed(
                FaultKind::AsymmetricRefuse,
                vec![Observation::reported("leader_kept", false), Observation::reported("leader_kept", true)],
            ),
            record(FaultKind::CrashInSnapshotInstall, "skipped", 3),
        ];
        let FaultOutcomes { variants, skipped, checks } = fault_outcomes(&records);
        let wipes = variants.get(&wipe).expect("wipe variants");
        assert_eq!(wipes.get("seed node, --join"), Some(&2));
        assert_eq!(wipes.get("follower, --join"), Some(&1));
        assert_eq!(skipped.get(&FaultKind::CrashInSnapshotInstall), Some(&1));
        let voter = checks[&(wipe, "voter_again")];
        assert_eq!(voter, Tally { held: 1, total: 2, required: true });
        assert!(voter.failed());
        let kept = checks[&(FaultKind::AsymmetricRefuse, "leader_kept")];
        assert_eq!(kept, Tally { held: 1, total: 2, required: false });
        assert!(!kept.failed(), "reported only");
    }
}
