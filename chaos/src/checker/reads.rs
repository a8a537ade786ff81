//! Checks on ok reads. A read carries a node's log from position `from` on
//! (often all of it), so the reads of a long run can hold far more entries
//! than F: every read is walked once, compared with F position by position,
//! and only entries that differ from F are looked up by id.
//!
//! A read's length (for `reads_monotonic` and "not longer than F") is the
//! node's log length it reported, [`Op::read_len`], not the number of
//! entries it carries.

use std::collections::{BTreeMap, HashMap};

use super::index::{describe_entry, describe_op, secs, Index};
use super::{Property, Tally};
use crate::history::{Entry, History, Op, OpKind, Outcome};

/// `reads_are_prefixes` and `reads_not_from_future`, plus phantoms and
/// duplicates in the parts of reads that differ from F.
pub(super) fn check_reads(history: &History, index: &Index, tally: &mut Tally) {
    let f = index.f;
    for op in &history.ops {
        let OpKind::Read { node, incarnation, from, entries, .. } = &op.kind else { continue };
        if op.outcome != Outcome::Ok {
            continue;
        }
        let from = usize::try_from(*from).unwrap_or(usize::MAX);
        let place = |pos: usize| format!("read op {} (node {node} incarnation {incarnation}) position {pos}", op.id);
        let mut first_mismatch = None;
        for (i, entry) in entries.iter().enumerate() {
            let pos = from.saturating_add(i);
            let append = if f.get(pos) == Some(entry) {
                // Already vetted as part of F.
                index.f_origin[pos].map(|a| &index.appends[a])
            } else {
                first_mismatch.get_or_insert(i);
                index.vet(entry, tally, || place(pos))
            };
            if let Some(append) = append.filter(|a| a.op.invoke_ns >= op.complete_ns) {
                tally.add(Property::ReadsNotFromFuture, || {
                    format!(
                        "{} shows {} but {} was invoked at {}, after the read completed",
                        place(pos),
                        describe_entry(entry),
                        describe_op(append.op),
                        secs(append.op.invoke_ns)
                    )
                });
            }
        }

        let len = op.read_len().unwrap_or(0);
        if first_mismatch.is_some() || len > f.len() as u64 {
            tally.add(Property::ReadsArePrefixes, || {
                let problem = match first_mismatch {
                    Some(i) => mismatch(index, from.saturating_add(i), &entries[i]),
                    None => format!("the node had {len} entries but F has {}", f.len()),
                };
                format!("{} is not a prefix of {}: {problem}", describe_op(op), index.f_name())
            });
        }
        if first_mismatch.is_some() {
            // A read that matches F has F's duplicates, already counted.
            check_duplicates(op, entries, tally);
        }
    }
}

/// How a read's entry at position `pos` differs from F, for examples.
fn mismatch(index: &Index, pos: usize, entry: &Entry) -> String {
    let missing = match entry.request_id.as_deref() {
        Some(id) if index.pos(id).is_none() => format!("; {id:?} is missing from F"),
        _ => String::new(),
    };
    match index.f.get(pos) {
        Some(expected) => {
            format!("position {pos} is {} instead of {}{missing}", describe_entry(entry), describe_entry(expected))
        }
        None => format!("position {pos} is {} but F has {} entries{missing}", describe_entry(entry), index.f.len()),
    }
}

fn check_duplicates(op: &Op, entries: &[Entry], tally: &mut Tally) {
    // id -> (first position, already reported)
    let mut seen: HashMap<&str, (usize, bool)> = HashMap::with_capacity(entries.len());
    for (pos, entry) in entries.iter().enumerate() {
        let Some(id) = entry.request_id.as_deref() else { continue };
        let (first, reported) = seen.entry(id).or_insert((pos, false));
        if *first != pos && !*reported {
            *reported = true;
            let first = *first;
            tally.add(Property::NoDuplicates, || {
                format!("{} shows {id:?} at positions {first} and {pos}", describe_op(op))
            });
        }
    }
}

/// `reads_monotonic`: on one (node, incarnation), if R1 completed before R2
/// was invoked then `len(R1) <= len(R2)`. Per group, the reads sorted by
/// completion time with a running maximum of their lengths; O(n log n).
pub(super) fn check_reads_monotonic(history: &History, tally: &mut Tally) {
    // BTreeMap so that examples come out in a stable order.
    let mut groups: BTreeMap<(u64, u32), Vec<(&Op, u64)>> = BTreeMap::new();
    for op in &history.ops {
        if let (OpKind::Read { node, incarnation, .. }, Outcome::Ok) = (&op.kind, op.outcome) {
            groups.entry((*node, *incarnation)).or_default().push((op, op.read_len().unwrap_or(0)));
        }
    }
    for reads in groups.values() {
        let mut by_complete = reads.clone();
        by_complete.sort_by_key(|&(op, _)| op.complete_ns);
        // longest[k] = the longest read among by_complete[..=k].
        let mut longest: Vec<(&Op, u64)> = Vec::with_capacity(by_complete.len());
        for &(op, len) in &by_complete {
            let best = match longest.last() {
                Some(&(best_op, best_len)) if best_len >= len => (best_op, best_len),
                _ => (op, len),
            };
            longest.push(best);
        }
        for &(r2, len2) in reads {
            let before = by_complete.partition_point(|&(op, _)| op.complete_ns < r2.invoke_ns);
            let Some(&(r1, len1)) = before.checked_sub(1).map(|k| &longest[k]) else { continue };
            if len1 > len2 {
                tally.add(Property::ReadsMonotonic, || {
                    format!(
                        "{} returned {len2} entries but {} returned {len1} and completed at {}, before it",
                        describe_op(r2),
                        describe_op(r1),
                        secs(r1.complete_ns)
                    )
                });
            }
        }
    }
}
