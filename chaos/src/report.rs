//! The summary table a run prints and leaves in `summary.txt`.

use std::collections::BTreeMap;
use std::fmt;

use gameraft_chaos::checker::Report;
use gameraft_chaos::history::{History, OpKind, Outcome};

use crate::nemesis::{FaultKind, FaultRecord};
use crate::run::Options;

/// What the healed cluster did.
pub struct Liveness {
    /// Time from the heal to the barrier write's acknowledgement.
    pub barrier_ms: Option<u64>,
    /// Time from the heal until every node held the same events.
    pub converged_ms: Option<u64>,
    /// Panic lines found in node logs.
    pub panics: Vec<String>,
}

pub struct Summary<'a> {
    seed: u64,
    nodes: usize,
    duration_secs: u64,
    namespaces: bool,
    faults: BTreeMap<FaultKind, u32>,
    appends: [u64; 3],
    retried: u64,
    duplicate_answers: u64,
    /// Acknowledged appends that shared their Raft entry with another one,
    /// and the most in one entry: shows that writes were batched.
    batched: (u64, u64),
    reads: [u64; 3],
    /// Per leader-fault kind: time from each such fault to the first
    /// acknowledgement of a write invoked after it, in ns, sorted.
    unavailable: BTreeMap<FaultKind, Vec<u64>>,
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
        options: &Options,
        namespaces: bool,
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
        let shared = per_entry.values().filter(|&&n| n > 1).sum();
        let batched = (shared, per_entry.values().copied().max().unwrap_or(0));
        Summary {
            seed: options.seed,
            nodes: options.nodes,
            duration_secs: options.duration.as_secs(),
            namespaces,
            faults,
            appends,
            retried,
            duplicate_answers,
            batched,
            reads,
            unavailable,
            report,
            liveness,
        }
    }

    pub fn passed(&self) -> bool {
        self.report.passed()
            && self.liveness.barrier_ms.is_some()
            && self.liveness.converged_ms.is_some()
            && self.liveness.panics.is_empty()
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.report.stats;
        let hosts = if self.namespaces { "network namespaces" } else { "loopback" };
        writeln!(
            f,
            "== gameraft chaos: seed {}, {} nodes on {hosts}, {} s of faults ==",
            self.seed, self.nodes, self.duration_secs
        )?;
        let faults: Vec<String> = self.faults.iter().map(|(kind, n)| format!("{} {n}", kind_name(*kind))).collect();
        let total: u32 = self.faults.values().sum();
        let mut rows = vec![
            ("faults injected", format!("{total}: {}", faults.join(", "))),
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
        ];
        for (kind, gaps) in &self.unavailable {
            let ms = |ns: u64| ns / 1_000_000;
            rows.push((
                "unavailable after a fault (median / max)",
                format!(
                    "{}: {} / {} ms over {} faults",
                    kind_name(*kind),
                    ms(gaps[gaps.len() / 2]),
                    ms(gaps[gaps.len() - 1]),
                    gaps.len()
                ),
            ));
        }
        if self.unavailable.is_empty() {
            rows.push(("unavailable after a fault (median / max)", "no leader fault".into()));
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

/// For each leader fault: the time from its start to the first
/// acknowledgement of a write invoked at or after it, by kind, sorted.
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
    for record in records.iter().filter(|r| r.phase == "start" && r.kind.hits_leader()) {
        let first = acknowledged.partition_point(|(invoke, _)| *invoke < record.t_ns);
        if earliest_after[first] != u64::MAX {
            unavailable.entry(record.kind).or_default().push(earliest_after[first] - record.t_ns);
        }
    }
    unavailable.values_mut().for_each(|gaps| gaps.sort_unstable());
    unavailable
}

fn ms(value: Option<u64>) -> String {
    value.map(|ms| format!("after {ms} ms")).unwrap_or_else(|| "NO (within 60 s)".into())
}

fn kind_name(kind: FaultKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(kind: FaultKind, t_ns: u64) -> FaultRecord {
        FaultRecord { t_ns, unix_ms: 0, kind, phase: "start", targets: vec![], detail: String::new() }
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
            start(FaultKind::KillNode, 10),     // not a leader fault
            start(FaultKind::PauseLeader, 300), // nothing acknowledged after it
        ];
        let gaps = unavailability(acknowledged, &records);
        assert_eq!(gaps.get(&FaultKind::KillLeader), Some(&vec![30, 110]));
        assert_eq!(gaps.get(&FaultKind::KillNode), None);
        assert_eq!(gaps.get(&FaultKind::PauseLeader), None);
    }
}
