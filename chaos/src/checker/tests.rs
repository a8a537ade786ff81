//! One passing history that exercises every rule, and one failing history
//! per anomaly, each asserting exactly which properties fail.

use super::*;
use crate::history::{Entry, NodeLog, Op};

/// Every event in these tests carries a player id derived from its request
/// id, so entries and appends agree unless a test says otherwise.
fn player(request_id: &str) -> u64 {
    request_id.bytes().fold(17, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn entry(log_index: u64, request_id: &str) -> Entry {
    Entry { log_index, request_id: Some(request_id.to_string()), player_id: player(request_id) }
}

fn entries(log: &[(u64, &str)]) -> Vec<Entry> {
    log.iter().map(|&(index, id)| entry(index, id)).collect()
}

/// Builds histories op by op. Op ids are assigned in call order and clients
/// round-robin; times are plain numbers of nanoseconds.
#[derive(Default)]
struct Builder {
    ops: Vec<Op>,
    final_logs: Vec<NodeLog>,
}

impl Builder {
    fn op(&mut self, times: (u64, u64), outcome: Outcome, kind: OpKind) -> &mut Self {
        let id = self.ops.len() as u64;
        self.ops.push(Op { id, client: (id % 4) as u32, invoke_ns: times.0, complete_ns: times.1, outcome, kind });
        self
    }

    fn append(&mut self, id: &str, times: (u64, u64), outcome: Outcome, log_index: Option<u64>) -> &mut Self {
        let kind = OpKind::Append {
            request_id: id.to_string(),
            player_id: player(id),
            log_index,
            duplicate: false,
            attempts: 1,
            nodes: vec![1],
        };
        self.op(times, outcome, kind)
    }

    fn ok(&mut self, id: &str, times: (u64, u64), log_index: u64) -> &mut Self {
        self.append(id, times, Outcome::Ok, Some(log_index))
    }

    fn fail(&mut self, id: &str, times: (u64, u64)) -> &mut Self {
        self.append(id, times, Outcome::Fail, None)
    }

    fn unknown(&mut self, id: &str, times: (u64, u64)) -> &mut Self {
        self.append(id, times, Outcome::Unknown, None)
    }

    /// An ok read of a node's whole log.
    fn read(&mut self, node: u64, incarnation: u32, times: (u64, u64), log: &[(u64, &str)]) -> &mut Self {
        self.page(node, incarnation, times, 0, log.len() as u64, log)
    }

    /// An ok read of `log`, starting at position `from` of a node's log of
    /// `total` events.
    fn page(
        &mut self,
        node: u64,
        inc: u32,
        times: (u64, u64),
        from: u64,
        total: u64,
        log: &[(u64, &str)],
    ) -> &mut Self {
        let kind = OpKind::Read { node, incarnation: inc, from, total, entries: entries(log) };
        self.op(times, Outcome::Ok, kind)
    }

    fn read_failed(&mut self, node: u64, times: (u64, u64), outcome: Outcome) -> &mut Self {
        let kind = OpKind::Read { node, incarnation: 0, from: 0, total: 0, entries: vec![] };
        self.op(times, outcome, kind)
    }

    fn final_log(&mut self, node: u64, log: &[(u64, &str)]) -> &mut Self {
        self.final_log_entries(node, entries(log))
    }

    fn final_log_entries(&mut self, node: u64, entries: Vec<Entry>) -> &mut Self {
        self.final_logs.push(NodeLog { node, entries });
        self
    }

    /// The same final log on nodes 1, 2 and 3.
    fn final_logs(&mut self, log: &[(u64, &str)]) -> &mut Self {
        (1..=3).fold(self, |b, node| b.final_log(node, log))
    }

    fn build(&self) -> History {
        History { ops: self.ops.clone(), final_logs: self.final_logs.clone() }
    }
}

/// Three acknowledged appends, b concurrent with a, c after both; one read.
fn base() -> Builder {
    let mut b = Builder::default();
    b.ok("a", (0, 10), 1).ok("b", (5, 20), 2).ok("c", (25, 40), 3).read(2, 0, (12, 14), &[(1, "a")]);
    b
}

const ABC: &[(u64, &str)] = &[(1, "a"), (2, "b"), (3, "c")];

/// Checks `history` and asserts that exactly `expected` fail.
#[track_caller]
fn assert_fails(history: &History, expected: &[Property]) -> Report {
    let report = check(history);
    assert_eq!(report.failed(), expected, "\n{report}");
    report
}

fn violations(report: &Report, property: Property) -> u64 {
    report.verdict(property).map_or(0, |v| v.violations)
}

fn examples(report: &Report, property: Property) -> String {
    report.verdict(property).map(|v| v.examples.join("\n")).unwrap_or_default()
}

#[test]
fn empty_history_passes() {
    let report = assert_fails(&History::default(), &[]);
    assert!(report.passed());
    assert_eq!(report.stats, Stats::default());
    assert_eq!(report.verdicts.len(), Property::ALL.len());
}

#[test]
fn realistic_history_passes() {
    let mut b = Builder::default();
    // Log index 1 is the leader's blank entry and 6 a second leader's, so
    // indexes are not positions.
    b.ok("a", (0, 10), 2)
        .op(
            (5, 30),
            Outcome::Ok,
            // Timed out on node 1, retried on node 2, which said duplicate.
            OpKind::Append {
                request_id: "b".into(),
                player_id: player("b"),
                log_index: Some(3),
                duplicate: true,
                attempts: 2,
                nodes: vec![1, 2],
            },
        )
        .unknown("u1", (12, 100)) // gave up, but it committed
        .ok("c", (15, 35), 5)
        .fail("f1", (20, 22)) // refused, never applied
        .unknown("u2", (40, 140)) // gave up, never applied
        .ok("d", (50, 60), 7)
        .ok("e", (55, 65), 8)
        .ok("barrier", (150, 160), 9);
    b.read(1, 0, (8, 9), &[(2, "a")]) // shows a before its ack arrived
        .read(2, 0, (31, 33), &[(2, "a"), (3, "b")]) // lagging follower
        .read(2, 0, (32, 50), &[(2, "a")]) // overlaps the longer read: may be shorter
        .read(3, 0, (36, 38), &[(2, "a"), (3, "b"), (4, "u1"), (5, "c")])
        .read(3, 0, (45, 47), &[(2, "a"), (3, "b"), (4, "u1"), (5, "c")])
        .read(3, 1, (70, 72), &[(2, "a"), (3, "b")]) // restarted and behind: a new incarnation
        .read(3, 1, (80, 82), &[(2, "a"), (3, "b"), (4, "u1"), (5, "c"), (7, "d"), (8, "e")])
        .page(1, 0, (66, 69), 3, 6, &[(5, "c"), (7, "d"), (8, "e")]) // a page from position 3
        .page(2, 0, (90, 91), 6, 6, &[]) // nothing new since position 6
        .read_failed(2, (50, 90), Outcome::Unknown)
        .read_failed(1, (51, 52), Outcome::Fail);
    b.final_logs(&[(2, "a"), (3, "b"), (4, "u1"), (5, "c"), (7, "d"), (8, "e"), (9, "barrier")]);

    let report = assert_fails(&b.build(), &[]);
    assert!(report.passed());
    let expected = Stats {
        appends_ok: 6,
        appends_fail: 1,
        appends_unknown: 2,
        reads_ok: 9,
        reads_other: 2,
        acknowledged_events: 6,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        final_log_len: 7,
    };
    assert_eq!(report.stats, expected);
}

#[test]
fn lost_acknowledged_append() {
    let mut b = base();
    b.final_logs(&[(1, "a"), (3, "c")]);
    let report = assert_fails(&b.build(), &[Property::AcknowledgedPresentOnce]);
    assert_eq!(report.stats.lost, 1);
    assert!(examples(&report, Property::AcknowledgedPresentOnce).contains(r#"lost: op 1 (client 1, append "b""#));
}

#[test]
fn duplicated_acknowledged_append() {
    let mut b = base();
    b.final_logs(&[(1, "a"), (2, "b"), (3, "c"), (4, "b")]);
    let report = assert_fails(&b.build(), &[Property::AcknowledgedPresentOnce, Property::NoDuplicates]);
    assert_eq!(report.stats.duplicated, 1);
    assert_eq!(violations(&report, Property::NoDuplicates), 1, "one for F, not one per node");
    assert!(examples(&report, Property::NoDuplicates).contains("at positions 1 and 3"));
}

#[test]
fn duplicated_unknown_append() {
    let mut b = base();
    b.unknown("u", (30, 100)).final_logs(&[(1, "a"), (2, "b"), (3, "c"), (4, "u"), (5, "u")]);
    let report = assert_fails(&b.build(), &[Property::NoDuplicates, Property::UnknownAtMostOnce]);
    assert_eq!(report.stats.duplicated, 1);
}

#[test]
fn duplicate_within_one_read() {
    let mut b = base();
    b.read(1, 0, (41, 42), &[(1, "a"), (1, "a")]).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::NoDuplicates, Property::ReadsArePrefixes]);
    assert_eq!(report.stats.duplicated, 0, "F has no duplicate");
}

#[test]
fn harness_reused_request_id() {
    let mut b = base();
    b.unknown("b", (50, 60)).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::NoDuplicates]);
    assert!(
        examples(&report, Property::NoDuplicates).contains(r#"harness error: request id "b" is used by op 1 and op 4"#)
    );
}

#[test]
fn real_time_reorder() {
    // b was acknowledged at 20, c invoked at 25, yet c comes first.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 1).ok("b", (5, 20), 3).ok("c", (25, 40), 2).final_logs(&[(1, "a"), (2, "c"), (3, "b")]);
    let report = assert_fails(&b.build(), &[Property::RealTimeOrder]);
    assert_eq!(report.stats.reordered, 1);
    assert!(examples(&report, Property::RealTimeOrder).contains("at positions 2 and 1"), "{report}");

    // An unknown append invoked after a, b and c were acknowledged lands
    // before b and c: one reordered event.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 1).ok("b", (5, 20), 3).ok("c", (25, 40), 4).unknown("u", (50, 200));
    b.final_logs(&[(1, "a"), (2, "u"), (3, "b"), (4, "c")]);
    let report = assert_fails(&b.build(), &[Property::RealTimeOrder]);
    assert_eq!(report.stats.reordered, 1);

    // Concurrent appends may land in either order.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 2).ok("b", (5, 20), 1).final_logs(&[(1, "b"), (2, "a")]);
    assert_fails(&b.build(), &[]);
}

#[test]
fn divergent_final_logs() {
    // Same length, different last event (u is an unknown append, so its
    // presence alone is fine).
    let mut b = base();
    b.unknown("u", (30, 100));
    b.final_log(1, ABC).final_log(2, ABC).final_log(3, &[(1, "a"), (2, "b"), (3, "u")]);
    let report = assert_fails(&b.build(), &[Property::LogsAgree]);
    assert_eq!(violations(&report, Property::LogsAgree), 1);
    assert!(examples(&report, Property::LogsAgree)
        .contains(r#"node 3's final log differs from F (node 1): position 2 is index 3 "u""#));

    // A node that never caught up. F is the longest log, so nothing is lost.
    let mut b = base();
    b.final_log(1, &[(1, "a"), (2, "b")]).final_log(2, ABC).final_log(3, ABC);
    let report = assert_fails(&b.build(), &[Property::LogsAgree]);
    assert!(examples(&report, Property::LogsAgree)
        .contains("node 1's final log differs from F (node 2): 2 entries instead of 3"));
    assert_eq!(report.stats.final_log_len, 3);

    // A phantom only on the divergent node counts as a phantom too.
    let mut b = base();
    b.final_log(1, ABC).final_log(2, &[(1, "a"), (2, "b"), (3, "zz")]);
    assert_fails(&b.build(), &[Property::NoPhantoms, Property::LogsAgree]);
}

#[test]
fn stale_read_on_one_incarnation() {
    let mut b = base();
    b.read(2, 0, (41, 43), ABC).read(2, 0, (50, 52), &[(1, "a"), (2, "b")]).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::ReadsMonotonic]);
    assert!(examples(&report, Property::ReadsMonotonic).contains("returned 2 entries but op 4"), "{report}");

    // The same after a restart is allowed.
    let mut b = base();
    b.read(2, 0, (41, 43), ABC).read(2, 1, (50, 52), &[(1, "a"), (2, "b")]).final_logs(ABC);
    assert_fails(&b.build(), &[]);

    // Pages compare the node's log length, not the page's.
    let mut b = base();
    b.page(2, 0, (41, 43), 2, 3, &[(3, "c")]).page(2, 0, (50, 52), 1, 2, &[(2, "b")]).final_logs(ABC);
    assert_fails(&b.build(), &[Property::ReadsMonotonic]);
}

#[test]
fn read_shows_event_later_missing() {
    let mut b = base();
    b.unknown("u", (30, 100)).read(1, 0, (35, 37), &[(1, "a"), (2, "b"), (3, "u")]).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::ReadsArePrefixes]);
    let text = examples(&report, Property::ReadsArePrefixes);
    assert!(text.contains(r#"position 2 is index 3 "u" player"#), "{text}");
    assert!(text.contains(r#""u" is missing from F"#), "{text}");

    // Longer than F.
    let mut b = base();
    b.unknown("u", (30, 100)).read(1, 0, (45, 47), &[(1, "a"), (2, "b"), (3, "c"), (4, "u")]).final_logs(ABC);
    assert_fails(&b.build(), &[Property::ReadsArePrefixes]);

    // A page past F's end, and a node claiming more events than F has.
    let mut b = base();
    b.page(1, 0, (45, 47), 3, 4, &[(4, "u")]).unknown("u", (30, 100)).final_logs(ABC);
    assert_fails(&b.build(), &[Property::ReadsArePrefixes]);
    let mut b = base();
    b.page(1, 0, (45, 47), 4, 4, &[]).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::ReadsArePrefixes]);
    assert!(examples(&report, Property::ReadsArePrefixes).contains("the node had 4 entries but F has 3"));

    // A page in the wrong place.
    let mut b = base();
    b.page(1, 0, (45, 47), 1, 3, &[(3, "c")]).final_logs(ABC);
    assert_fails(&b.build(), &[Property::ReadsArePrefixes]);
}

#[test]
fn phantom_events() {
    let mut b = base();
    b.unknown("u", (30, 100));
    let mut log = entries(ABC);
    log.push(entry(4, "zz")); // never invoked
    log.push(Entry { log_index: 5, request_id: None, player_id: 3 });
    log.push(Entry { log_index: 6, request_id: Some("u".into()), player_id: 999 }); // wrong player
    for node in 1..=3 {
        b.final_log_entries(node, log.clone());
    }
    let report = assert_fails(&b.build(), &[Property::NoPhantoms]);
    assert_eq!(violations(&report, Property::NoPhantoms), 3, "once for F, not once per node");
    let text = examples(&report, Property::NoPhantoms);
    assert!(text.contains("no append with this request id was invoked"), "{text}");
    assert!(text.contains("no request id"), "{text}");
    assert!(text.contains("the append was for player"), "{text}");

    // A phantom only a read saw.
    let mut b = base();
    b.read(1, 0, (41, 42), &[(1, "a"), (2, "zz")]).final_logs(ABC);
    assert_fails(&b.build(), &[Property::NoPhantoms, Property::ReadsArePrefixes]);
}

#[test]
fn failed_append_appears() {
    let mut b = base();
    b.fail("x", (30, 35)).read(2, 0, (50, 51), &[(1, "a"), (2, "b"), (3, "c"), (4, "x")]);
    b.final_logs(&[(1, "a"), (2, "b"), (3, "c"), (4, "x")]);
    let report = assert_fails(&b.build(), &[Property::NoPhantoms]);
    assert_eq!(violations(&report, Property::NoPhantoms), 1, "the read shows F's entry: counted once");
    assert!(examples(&report, Property::NoPhantoms).contains("the append failed"));

    // Seen only by a read.
    let mut b = base();
    b.fail("x", (30, 35)).read(2, 0, (50, 51), &[(1, "a"), (2, "b"), (3, "x")]).final_logs(ABC);
    assert_fails(&b.build(), &[Property::NoPhantoms, Property::ReadsArePrefixes]);
}

#[test]
fn wrong_log_index() {
    // Acknowledged at 7, stored at 2.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 1).ok("b", (5, 20), 7).ok("c", (25, 40), 3).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::IndexMatches]);
    assert!(examples(&report, Property::IndexMatches).contains("acknowledged at log index 7"));

    // Acknowledged without an index.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 1).append("b", (5, 20), Outcome::Ok, None).ok("c", (25, 40), 3).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::IndexMatches]);
    assert!(examples(&report, Property::IndexMatches).contains("without a log index"));

    // Indexes that go backwards along F (a and b were concurrent, so their
    // order is fine; their indexes are not).
    let mut b = Builder::default();
    b.ok("a", (0, 10), 2).ok("b", (5, 20), 1).ok("c", (25, 40), 3).final_logs(&[(2, "a"), (1, "b"), (3, "c")]);
    let report = assert_fails(&b.build(), &[Property::IndexMatches]);
    assert_eq!(violations(&report, Property::IndexMatches), 1);
    assert!(examples(&report, Property::IndexMatches).contains("log index decreases at position 1"), "{report}");
}

#[test]
fn events_of_one_batch_share_their_entrys_log_index() {
    // a and b were concurrent and went out in one Raft entry (index 2).
    let mut b = Builder::default();
    b.ok("a", (0, 10), 2).ok("b", (5, 20), 2).ok("c", (25, 40), 3).final_logs(&[(2, "a"), (2, "b"), (3, "c")]);
    let report = check(&b.build());
    assert!(report.passed(), "{report}");

    // Sharing an index does not excuse being told another one.
    let mut b = Builder::default();
    b.ok("a", (0, 10), 2).ok("b", (5, 20), 3).ok("c", (25, 40), 3).final_logs(&[(2, "a"), (2, "b"), (3, "c")]);
    let report = assert_fails(&b.build(), &[Property::IndexMatches]);
    assert!(examples(&report, Property::IndexMatches).contains("acknowledged at log index 3"), "{report}");
}

#[test]
fn read_from_the_future() {
    // The read completed at 4; b was invoked at 5.
    let mut b = base();
    b.read(1, 0, (2, 4), &[(1, "a"), (2, "b")]).final_logs(ABC);
    let report = assert_fails(&b.build(), &[Property::ReadsNotFromFuture]);
    assert!(examples(&report, Property::ReadsNotFromFuture).contains(r#"shows index 2 "b""#), "{report}");
}

#[test]
fn examples_are_capped_and_display_lists_every_property() {
    let mut b = Builder::default();
    for i in 0..8 {
        b.ok(&format!("lost{i}"), (i, i + 1), i + 1);
    }
    b.final_logs(&[]);
    let report = assert_fails(&b.build(), &[Property::AcknowledgedPresentOnce]);
    let verdict = report.verdict(Property::AcknowledgedPresentOnce).unwrap();
    assert_eq!((verdict.violations, verdict.examples.len()), (8, MAX_EXAMPLES));

    let text = report.to_string();
    assert_eq!(text.lines().filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL ")).count(), Property::ALL.len());
    assert!(text.starts_with("FAIL acknowledged_present_once  (8 violations)\n    lost: op 0 "), "{text}");
    assert!(text.contains("\n    ... and 3 more\nPASS no_phantoms  (0 violations)\n"), "{text}");
    assert!(report.stats.to_string().contains("lost: 8;"));
}

#[test]
fn property_names_are_stable() {
    for property in Property::ALL {
        assert_eq!(serde_json::to_value(property).unwrap(), property.name());
        assert_eq!(property.to_string(), property.name());
    }
    let names: Vec<&str> = Property::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "acknowledged_present_once",
            "no_phantoms",
            "no_duplicates",
            "logs_agree",
            "index_matches",
            "real_time_order",
            "reads_are_prefixes",
            "reads_monotonic",
            "reads_not_from_future",
            "unknown_at_most_once",
        ]
    );
}

/// A long clean run, to keep the checker's cost in view: every read is a
/// full log and there are many of them.
#[test]
fn large_clean_history_passes() {
    const APPENDS: u64 = 20_000;
    let mut b = Builder::default();
    let ids: Vec<String> = (0..APPENDS).map(|i| format!("c{}-{i}", i % 10)).collect();
    for (i, id) in (0..APPENDS).zip(&ids) {
        // Each append overlaps the next, and the log is in invocation order.
        b.ok(id, (i * 10, i * 10 + 15), i + 1);
    }
    let log: Vec<(u64, &str)> = (0..APPENDS).zip(&ids).map(|(i, id)| (i + 1, id.as_str())).collect();
    for r in 0..50u64 {
        let len = (r + 1) * APPENDS / 50;
        // Read after append len-1 completed, before the next was acknowledged.
        let at = (len - 1) * 10 + 15;
        b.read(r % 3 + 1, 0, (at + 1, at + 2), &log[..len as usize]);
    }
    b.final_logs(&log);
    let report = assert_fails(&b.build(), &[]);
    assert_eq!(report.stats.final_log_len, APPENDS);
}
