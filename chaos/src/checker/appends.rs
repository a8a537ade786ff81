//! Checks on the final logs and the append ops.

use super::index::{describe_entry, describe_op, secs, Index};
use super::{Property, Stats, Tally};
use crate::history::{Entry, History, Outcome};

/// `logs_agree`, plus everything F alone shows: phantoms and failed appends
/// (also in the parts of other logs that differ from F), duplicates, and
/// indexes that decrease.
pub(super) fn check_final_logs(history: &History, index: &Index, tally: &mut Tally, stats: &mut Stats) {
    let f = index.f;
    for (pos, entry) in f.iter().enumerate() {
        index.vet(entry, tally, || format!("{} position {pos}", index.f_name()));
        if let Some(prev) = pos.checked_sub(1).map(|p| &f[p]) {
            // Equal is fine: the events of one Raft entry (a batch) share it.
            if entry.log_index < prev.log_index {
                tally.add(Property::IndexMatches, || {
                    format!(
                        "{}: log index decreases at position {pos}: {} after {}",
                        index.f_name(),
                        describe_entry(entry),
                        describe_entry(prev)
                    )
                });
            }
        }
        let Some(id) = entry.request_id.as_deref() else { continue };
        let occ = index.in_f[id];
        if occ.second == Some(pos) {
            stats.duplicated += 1;
            tally.add(Property::NoDuplicates, || {
                format!("{id:?} is in {} {} times, at positions {} and {pos}", index.f_name(), occ.count, occ.first)
            });
        }
    }

    for log in &history.final_logs {
        if log.entries == f {
            continue;
        }
        tally.add(Property::LogsAgree, || {
            format!(
                "node {}'s final log differs from {}: {}",
                log.node,
                index.f_name(),
                first_difference(&log.entries, f)
            )
        });
        for (pos, entry) in log.entries.iter().enumerate() {
            if f.get(pos) != Some(entry) {
                index.vet(entry, tally, || format!("node {}'s final log position {pos}", log.node));
            }
        }
    }
}

/// How `log` differs from `f`, for examples.
fn first_difference(log: &[Entry], f: &[Entry]) -> String {
    match log.iter().zip(f).position(|(a, b)| a != b) {
        Some(pos) => format!("position {pos} is {} instead of {}", describe_entry(&log[pos]), describe_entry(&f[pos])),
        None if log.len() < f.len() => format!("{} entries instead of {}, all agreeing", log.len(), f.len()),
        None => format!("{} entries but F has only {}", log.len(), f.len()),
    }
}

/// `acknowledged_present_once`, the ack side of `index_matches`, and
/// `unknown_at_most_once`.
pub(super) fn check_appends(index: &Index, tally: &mut Tally, stats: &mut Stats) {
    for append in &index.appends {
        let occ = index.in_f.get(append.request_id);
        let count = occ.map_or(0, |o| o.count);
        match append.op.outcome {
            Outcome::Ok => {
                if count == 0 {
                    stats.lost += 1;
                    tally.add(Property::AcknowledgedPresentOnce, || {
                        format!("lost: {} is missing from {}", describe_op(append.op), index.f_name())
                    });
                } else if count > 1 {
                    tally.add(Property::AcknowledgedPresentOnce, || {
                        format!("duplicated: {} is in {} {count} times", describe_op(append.op), index.f_name())
                    });
                }
                match (append.log_index, occ) {
                    (None, _) => tally.add(Property::IndexMatches, || {
                        format!("{} was acknowledged without a log index", describe_op(append.op))
                    }),
                    (Some(acked), Some(occ)) if index.f[occ.first].log_index != acked => {
                        tally.add(Property::IndexMatches, || {
                            format!(
                                "{} was acknowledged at log index {acked} but {} has it at {}",
                                describe_op(append.op),
                                index.f_name(),
                                describe_entry(&index.f[occ.first])
                            )
                        })
                    }
                    // Missing from F: counted as lost above.
                    (Some(_), _) => {}
                }
            }
            Outcome::Unknown if count > 1 => tally.add(Property::UnknownAtMostOnce, || {
                format!("{} is in {} {count} times", describe_op(append.op), index.f_name())
            }),
            // A failed append in F is a phantom, counted where it shows up.
            Outcome::Unknown | Outcome::Fail => {}
        }
    }
}

/// `real_time_order`: if A is ok, B is in F and A completed before B was
/// invoked, then `pos(A) < pos(B)`.
///
/// The ok appends in F are sorted by completion time with a running maximum
/// of their positions; for each B, a binary search finds the appends that
/// completed before B was invoked, and the running maximum says whether any of
/// them sits after B. O(n log n).
pub(super) fn check_real_time_order(index: &Index, tally: &mut Tally, stats: &mut Stats) {
    // (complete_ns, pos, append) of every ok append in F.
    let mut acked: Vec<(u64, usize, usize)> = index
        .appends
        .iter()
        .enumerate()
        .filter(|(_, a)| a.op.outcome == Outcome::Ok)
        .filter_map(|(i, a)| Some((a.op.complete_ns, index.pos(a.request_id)?, i)))
        .collect();
    acked.sort_unstable();
    // latest[k] = the append with the largest position among acked[..=k].
    let mut latest: Vec<(usize, usize)> = Vec::with_capacity(acked.len());
    for &(_, pos, i) in &acked {
        let best = match latest.last() {
            Some(&(best_pos, best_i)) if best_pos >= pos => (best_pos, best_i),
            _ => (pos, i),
        };
        latest.push(best);
    }

    for b in &index.appends {
        // A failed append in F is already a phantom; it orders nothing.
        if b.op.outcome == Outcome::Fail {
            continue;
        }
        let Some(b_pos) = index.pos(b.request_id) else { continue };
        let before = acked.partition_point(|&(complete, _, _)| complete < b.op.invoke_ns);
        let Some(&(a_pos, a)) = before.checked_sub(1).map(|k| &latest[k]) else { continue };
        if a_pos > b_pos {
            stats.reordered += 1;
            let a = &index.appends[a];
            tally.add(Property::RealTimeOrder, || {
                format!(
                    "{} completed at {} before {} was invoked, but {} has them at positions {a_pos} and {b_pos}",
                    describe_op(a.op),
                    secs(a.op.complete_ns),
                    describe_op(b.op),
                    index.f_name()
                )
            });
        }
    }
}
