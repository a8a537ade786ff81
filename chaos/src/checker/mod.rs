//! Checks a [`History`] against the cluster's final log.
//!
//! Every append carries a unique request id, so the final log F gives every
//! event that took effect a position `pos(id)`, and every property below is a
//! direct check against F: no search over interleavings is needed (the idea of
//! Jepsen's `tests/kafka.clj`). Everything is O(n log n) in the number of ops
//! plus linear in the number of entries read.
//!
//! # The reference log F
//! F is the first node's final log. If the final logs differ, that is a
//! [`Property::LogsAgree`] violation and F is the longest final log (the first
//! of the longest), so the other checks still say something useful.
//!
//! # Properties
//! | property | checks |
//! |---|---|
//! | `acknowledged_present_once` | every ok append's id is in F exactly once |
//! | `no_phantoms` | every entry seen (F, ok reads, other final logs) belongs to an invoked append with the same player; no failed append shows up |
//! | `no_duplicates` | no id twice in F or in one ok read; no id used by two append ops (a harness error) |
//! | `logs_agree` | all final logs are identical |
//! | `index_matches` | ok appends' `log_index` is their entry's index in F; indexes never decrease along F (events of one Raft entry, a leader's batch, share its index) |
//! | `real_time_order` | A ok, `A.complete < B.invoke`, B in F ⇒ `pos(A) < pos(B)` |
//! | `reads_are_prefixes` | every ok read's entries equal `F[from..]` and the node's log is no longer than F |
//! | `reads_monotonic` | on one (node, incarnation), a read that starts after another ended does not see a shorter log |
//! | `reads_not_from_future` | every event an ok read shows was invoked before the read completed |
//! | `unknown_at_most_once` | an unknown append's id is in F at most once |
//!
//! An anomaly is counted where it is first visible: a phantom or a duplicate
//! in F is counted once for F, not again for every read that shows the same
//! prefix; reads and the other final logs add only entries that differ from F
//! at the same position.
//!
//! # Caveats
//! - Reads are treated as local (possibly follower) reads, so the
//!   linearizable-read condition "a read that starts after A was acknowledged
//!   shows A" is not checked.
//! - Unknown appends constrain nothing after them (their completion counts as
//!   +∞), and an unknown append missing from F is assumed never to take effect;
//!   that is only sound if F was read after a barrier append committed.
//! - Presence in F is by request id: an entry with an append's id but another
//!   player counts as that append's event (so not lost) and as a phantom.
//! - A paged read is checked on the entries it carries; the rest of the node's
//!   log only counts through its reported length (`total`).

mod appends;
mod index;
mod reads;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{History, OpKind, Outcome};
use index::Index;

/// How many examples a [`Verdict`] keeps.
pub const MAX_EXAMPLES: usize = 5;

/// One checked property. The serde and [`Property::name`] spellings are
/// stable: reports and CI logs refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Every ok append's request id appears exactly once in F.
    AcknowledgedPresentOnce,
    /// Every entry seen belongs to an invoked append with the same player id,
    /// and no failed append's id appears anywhere.
    NoPhantoms,
    /// No request id appears twice in F or within one ok read, and the
    /// harness used every request id for one append op only.
    NoDuplicates,
    /// All final logs are identical.
    LogsAgree,
    /// Every ok append's log index is its entry's index in F, and indexes
    /// never decrease along F (the events of one Raft entry, a batch the
    /// leader formed, share its index).
    IndexMatches,
    /// An append acknowledged before another was invoked comes first in F.
    RealTimeOrder,
    /// Every ok read is a prefix of F: its entries equal F's at the same
    /// positions and the node's log is no longer than F.
    ReadsArePrefixes,
    /// Reads of one node process never shrink over real time.
    ReadsMonotonic,
    /// No ok read shows an event invoked after the read completed.
    ReadsNotFromFuture,
    /// An unknown append's id appears in F at most once. (That it comes
    /// after every append acknowledged before it was invoked is
    /// [`Property::RealTimeOrder`].)
    UnknownAtMostOnce,
}

impl Property {
    /// Every property, in report order.
    pub const ALL: [Property; 10] = [
        Property::AcknowledgedPresentOnce,
        Property::NoPhantoms,
        Property::NoDuplicates,
        Property::LogsAgree,
        Property::IndexMatches,
        Property::RealTimeOrder,
        Property::ReadsArePrefixes,
        Property::ReadsMonotonic,
        Property::ReadsNotFromFuture,
        Property::UnknownAtMostOnce,
    ];

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Property::AcknowledgedPresentOnce => "acknowledged_present_once",
            Property::NoPhantoms => "no_phantoms",
            Property::NoDuplicates => "no_duplicates",
            Property::LogsAgree => "logs_agree",
            Property::IndexMatches => "index_matches",
            Property::RealTimeOrder => "real_time_order",
            Property::ReadsArePrefixes => "reads_are_prefixes",
            Property::ReadsMonotonic => "reads_monotonic",
            Property::ReadsNotFromFuture => "reads_not_from_future",
            Property::UnknownAtMostOnce => "unknown_at_most_once",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result for one property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub property: Property,
    pub violations: u64,
    /// The first [`MAX_EXAMPLES`] violations, human-readable.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.violations == 0
    }
}

/// Counts that say how much the run exercised, pass or fail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub appends_ok: u64,
    pub appends_fail: u64,
    pub appends_unknown: u64,
    pub reads_ok: u64,
    /// Reads that failed or timed out; their entries are not checked.
    pub reads_other: u64,
    /// Distinct request ids of ok appends.
    pub acknowledged_events: u64,
    /// Acknowledged ids missing from F.
    pub lost: u64,
    /// Distinct ids that appear more than once in F, whatever their outcome.
    pub duplicated: u64,
    /// Appends in F placed before an append acknowledged before they started.
    pub reordered: u64,
    pub final_log_len: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "appends: {} ok, {} fail, {} unknown; reads: {} ok, {} other; acknowledged events: {}; \
             lost: {}; duplicated: {}; reordered: {}; final log: {} entries",
            self.appends_ok,
            self.appends_fail,
            self.appends_unknown,
            self.reads_ok,
            self.reads_other,
            self.acknowledged_events,
            self.lost,
            self.duplicated,
            self.reordered,
            self.final_log_len
        )
    }
}

/// The checker's answer: one [`Verdict`] per property, in [`Property::ALL`]
/// order, plus [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub verdicts: Vec<Verdict>,
    pub stats: Stats,
}

impl Report {
    /// True if no property has a violation.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }

    /// The properties with at least one violation, in report order.
    pub fn failed(&self) -> Vec<Property> {
        self.verdicts.iter().filter(|v| !v.passed()).map(|v| v.property).collect()
    }

    /// The verdict for one property.
    pub fn verdict(&self, property: Property) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.property == property)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.verdicts {
            let status = if v.passed() { "PASS" } else { "FAIL" };
            writeln!(f, "{status} {}  ({} violations)", v.property, v.violations)?;
            for example in &v.examples {
                writeln!(f, "    {example}")?;
            }
            let unshown = v.violations.saturating_sub(v.examples.len() as u64);
            if unshown > 0 {
                writeln!(f, "    ... and {unshown} more")?;
            }
        }
        Ok(())
    }
}

/// Checks every property. Never fails: a malformed history (a request id
/// used twice, an ok append without an index) shows up as violations.
pub fn check(history: &History) -> Report {
    let mut tally = Tally::default();
    let mut stats = Stats::default();
    count_ops(history, &mut stats);

    let index = Index::build(history, &mut tally, &mut stats);
    appends::check_final_logs(history, &index, &mut tally, &mut stats);
    appends::check_appends(&index, &mut tally, &mut stats);
    appends::check_real_time_order(&index, &mut tally, &mut stats);
    reads::check_reads(history, &index, &mut tally);
    reads::check_reads_monotonic(history, &mut tally);

    Report { verdicts: tally.into_verdicts(), stats }
}

fn count_ops(history: &History, stats: &mut Stats) {
    for op in &history.ops {
        match (&op.kind, op.outcome) {
            (OpKind::Append { .. }, Outcome::Ok) => stats.appends_ok += 1,
            (OpKind::Append { .. }, Outcome::Fail) => stats.appends_fail += 1,
            (OpKind::Append { .. }, Outcome::Unknown) => stats.appends_unknown += 1,
            (OpKind::Read { .. }, Outcome::Ok) => stats.reads_ok += 1,
            (OpKind::Read { .. }, Outcome::Fail | Outcome::Unknown) => stats.reads_other += 1,
        }
    }
}

/// Violations found so far, per property.
#[derive(Default)]
struct Tally {
    violations: [u64; Property::ALL.len()],
    examples: [Vec<String>; Property::ALL.len()],
}

impl Tally {
    /// Counts one violation. The example is only formatted while there is
    /// room for it, so a history with a million violations stays cheap.
    fn add(&mut self, property: Property, example: impl FnOnce() -> String) {
        let slot = property.slot();
        self.violations[slot] += 1;
        if self.examples[slot].len() < MAX_EXAMPLES {
            self.examples[slot].push(example());
        }
    }

    fn into_verdicts(self) -> Vec<Verdict> {
        let Tally { violations, examples } = self;
        Property::ALL
            .into_iter()
            .zip(violations)
            .zip(examples)
            .map(|((property, violations), examples)| Verdict { property, violations, examples })
            .collect()
    }
}
