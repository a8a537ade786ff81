//! Lookups the checks share: appends by request id, and the reference log F
//! with every entry's append and every id's positions.

use std::collections::HashMap;

use super::{Property, Stats, Tally};
use crate::history::{Entry, History, Op, OpKind, Outcome};

/// One append op, by request id.
pub(super) struct Append<'h> {
    pub op: &'h Op,
    pub request_id: &'h str,
    pub player_id: u64,
    pub log_index: Option<u64>,
}

/// Where a request id sits in F.
#[derive(Clone, Copy)]
pub(super) struct Occurrences {
    pub first: usize,
    /// Set once the id shows up a second time.
    pub second: Option<usize>,
    pub count: u32,
}

/// Which append an entry belongs to, if any.
pub(super) enum Origin {
    /// The index of the append in [`Index::appends`].
    Append(usize),
    NoRequestId,
    NotInvoked,
    /// The id is an append's but the player is not.
    WrongPlayer(usize),
}

pub(super) struct Index<'h> {
    /// Append ops in history order; the first op wins if the harness reused
    /// a request id.
    pub appends: Vec<Append<'h>>,
    by_id: HashMap<&'h str, usize>,
    /// The reference log.
    pub f: &'h [Entry],
    /// The node F was read from; `None` if there are no final logs.
    pub f_node: Option<u64>,
    /// Every request id in F.
    pub in_f: HashMap<&'h str, Occurrences>,
    /// Per position of F, the append the entry belongs to (same id and player).
    pub f_origin: Vec<Option<usize>>,
}

impl<'h> Index<'h> {
    /// Indexes the history. Reports request ids used by more than one append
    /// op: the checker cannot tell which op an event belongs to, so that is a
    /// harness error, counted under [`Property::NoDuplicates`].
    pub fn build(history: &'h History, tally: &mut Tally, stats: &mut Stats) -> Self {
        let mut appends = Vec::new();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for op in &history.ops {
            let OpKind::Append { request_id, player_id, log_index, .. } = &op.kind else { continue };
            if let Some(&earlier) = by_id.get(request_id.as_str()) {
                let earlier: &Append = &appends[earlier];
                tally.add(Property::NoDuplicates, || {
                    format!("harness error: request id {request_id:?} is used by op {} and op {}", earlier.op.id, op.id)
                });
                continue;
            }
            by_id.insert(request_id, appends.len());
            appends.push(Append { op, request_id, player_id: *player_id, log_index: *log_index });
        }
        stats.acknowledged_events = appends.iter().filter(|a| a.op.outcome == Outcome::Ok).count() as u64;

        // The first of the longest logs: the first node's log when all agree.
        let f_log =
            history.final_logs.iter().reduce(|best, l| if l.entries.len() > best.entries.len() { l } else { best });
        let f: &[Entry] = f_log.map_or(&[], |l| &l.entries);
        stats.final_log_len = f.len() as u64;

        let mut index = Index {
            appends,
            by_id,
            f,
            f_node: f_log.map(|l| l.node),
            in_f: HashMap::with_capacity(f.len()),
            f_origin: Vec::with_capacity(f.len()),
        };
        for (pos, entry) in f.iter().enumerate() {
            let origin = match index.origin(entry) {
                Origin::Append(i) => Some(i),
                _ => None,
            };
            index.f_origin.push(origin);
            let Some(id) = entry.request_id.as_deref() else { continue };
            index
                .in_f
                .entry(id)
                .and_modify(|occ| {
                    occ.count += 1;
                    occ.second.get_or_insert(pos);
                })
                .or_insert(Occurrences { first: pos, second: None, count: 1 });
        }
        index
    }

    pub fn origin(&self, entry: &Entry) -> Origin {
        let Some(id) = entry.request_id.as_deref() else { return Origin::NoRequestId };
        match self.by_id.get(id) {
            None => Origin::NotInvoked,
            Some(&i) if self.appends[i].player_id == entry.player_id => Origin::Append(i),
            Some(&i) => Origin::WrongPlayer(i),
        }
    }

    /// The position of an id in F (its first, if it is there twice).
    pub fn pos(&self, request_id: &str) -> Option<usize> {
        self.in_f.get(request_id).map(|occ| occ.first)
    }

    /// Checks that `entry` belongs to an invoked append that did not fail,
    /// counting a [`Property::NoPhantoms`] violation otherwise. `place` says
    /// where the entry was seen. Returns the append it belongs to, even a
    /// failed one.
    pub fn vet(&self, entry: &Entry, tally: &mut Tally, place: impl FnOnce() -> String) -> Option<&Append<'h>> {
        match self.origin(entry) {
            Origin::Append(i) => {
                let append = &self.appends[i];
                if append.op.outcome == Outcome::Fail {
                    tally.add(Property::NoPhantoms, || {
                        format!(
                            "{} at {}: the append failed ({})",
                            describe_entry(entry),
                            place(),
                            describe_op(append.op)
                        )
                    });
                }
                Some(append)
            }
            Origin::NoRequestId => {
                tally.add(Property::NoPhantoms, || format!("{} at {}: no request id", describe_entry(entry), place()));
                None
            }
            Origin::NotInvoked => {
                tally.add(Property::NoPhantoms, || {
                    format!("{} at {}: no append with this request id was invoked", describe_entry(entry), place())
                });
                None
            }
            Origin::WrongPlayer(i) => {
                let append = &self.appends[i];
                tally.add(Property::NoPhantoms, || {
                    format!(
                        "{} at {}: the append was for player {} ({})",
                        describe_entry(entry),
                        place(),
                        append.player_id,
                        describe_op(append.op)
                    )
                });
                None
            }
        }
    }

    /// "F (node 3)", for examples.
    pub fn f_name(&self) -> String {
        match self.f_node {
            Some(node) => format!("F (node {node})"),
            None => "F (no final logs)".to_string(),
        }
    }
}

/// `index 12 "c1-3" player 7`.
pub(super) fn describe_entry(entry: &Entry) -> String {
    match &entry.request_id {
        Some(id) => format!("index {} {id:?} player {}", entry.log_index, entry.player_id),
        None => format!("index {} <no request id> player {}", entry.log_index, entry.player_id),
    }
}

/// `op 5 (client 2, append "c2-5", ok, 1.000000100s..1.000200000s)`.
pub(super) fn describe_op(op: &Op) -> String {
    let what = match &op.kind {
        OpKind::Append { request_id, .. } => format!("append {request_id:?}"),
        OpKind::Read { node, incarnation, from, entries, .. } => {
            let len = op.read_len().unwrap_or(0);
            match from {
                0 => format!("read of node {node} incarnation {incarnation}, {len} entries"),
                _ => format!(
                    "read of node {node} incarnation {incarnation}, {} of {len} entries from {from}",
                    entries.len()
                ),
            }
        }
    };
    let outcome = match op.outcome {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Unknown => "unknown",
    };
    format!("op {} (client {}, {what}, {outcome}, {}..{})", op.id, op.client, secs(op.invoke_ns), secs(op.complete_ns))
}

/// Nanoseconds as exact seconds: `1.000200000s`.
pub(super) fn secs(ns: u64) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}
