//! Exactly-once appends: the state machine's duplicate decisions, checked
//! against the rule itself (an id applied within the entry's window of log
//! time; the same event is a duplicate, another is a reused id) across
//! window changes, clocks that go back, restarts and snapshot installs.

use std::collections::BTreeSet;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;

use super::GameStateMachine;
use crate::event::CriticalEvent;
use crate::types::{Entry, EventBatch, EventOutcome, LogId, Membership, ProposedEvent};

/// A window long enough that nothing leaves it in these tests.
const LONG: u64 = 1 << 40;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn event(tag: u64) -> CriticalEvent {
    CriticalEvent::ScoreUpdate { player_id: tag, score: 0, timestamp: tag }
}

/// An `EventBatch` entry at `index`, stamped `at_ms` with `window_ms`, holding
/// one event per (id, event tag).
fn command(index: u64, at_ms: u64, window_ms: u64, events: &[(Option<&str>, u64)]) -> Entry {
    let events = events
        .iter()
        .map(|(id, tag)| ProposedEvent { request_id: id.map(str::to_string), event: event(*tag) })
        .collect();
    let command = EventBatch { events, proposed_at_ms: at_ms, request_id_window_ms: window_ms };
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(command) }
}

/// One event under `id`, its tag derived from the id so that the same id
/// means the same event.
fn one(index: u64, at_ms: u64, window_ms: u64, id: &str) -> Entry {
    command(index, at_ms, window_ms, &[(Some(id), tag_of(id))])
}

fn tag_of(id: &str) -> u64 {
    id.bytes().fold(0, |tag, byte| tag * 131 + u64::from(byte))
}

fn membership(index: u64) -> Entry {
    Entry { log_id: log_id(index), payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], None)) }
}

/// Applies one entry and returns its outcomes.
async fn apply(sm: &mut GameStateMachine, entry: Entry) -> Vec<EventOutcome> {
    let mut results = sm.apply([entry]).await.expect("apply");
    assert_eq!(results.len(), 1);
    results.remove(0).events
}

fn appended(position: u64, log_index: u64) -> EventOutcome {
    EventOutcome::Appended { position, log_index }
}

fn duplicate(position: u64, log_index: u64) -> EventOutcome {
    EventOutcome::Duplicate { position, log_index }
}

fn reused(position: u64, log_index: u64) -> EventOutcome {
    EventOutcome::Reused { position, log_index }
}

/// (position, log_index, request id) of every stored event.
fn stored(sm: &GameStateMachine) -> Vec<(u64, u64, Option<String>)> {
    let events = sm.event_list().range(0, u64::MAX).expect("read events");
    events.into_iter().map(|e| (e.position, e.log_index, e.request_id)).collect()
}

/// Entries 1..=5 carry ids "e0".."e4" at positions 0..4, applied at 1000,
/// 2000, ... 5000 ms, with `window_ms`.
async fn five_events(sm: &mut GameStateMachine, window_ms: u64) {
    apply(sm, membership(0)).await;
    for n in 0..5 {
        let at_ms = (n + 1) * 1000;
        assert_eq!(apply(sm, one(n + 1, at_ms, window_ms, &format!("e{n}"))).await, vec![appended(n, n + 1)]);
    }
}

#[tokio::test]
async fn a_retry_a_moment_later_is_a_duplicate_however_many_events_came_between() {
    let mut sm = GameStateMachine::in_memory();
    apply(&mut sm, membership(0)).await;
    // 1000 events in one second (a count window of 100 would have dropped
    // the first long before), then the first retried within the 10 s window.
    apply(&mut sm, one(1, 1_000, 10_000, "first")).await;
    for n in 0..999u64 {
        let id = format!("w{n}");
        apply(&mut sm, command(n + 2, 1_000 + n, 10_000, &[(Some(&id), n)])).await;
    }
    assert_eq!(apply(&mut sm, one(1001, 2_000, 10_000, "first")).await, vec![duplicate(0, 1)]);
    assert_eq!(apply(&mut sm, one(1002, 11_000, 10_000, "first")).await, vec![duplicate(0, 1)], "10 s later");
    assert_eq!(apply(&mut sm, one(1003, 11_001, 10_000, "first")).await, vec![appended(1000, 1003)], "just after");
}

#[tokio::test]
async fn an_id_repeated_within_the_window_is_not_appended_and_just_outside_it_is() {
    let mut sm = GameStateMachine::in_memory();
    five_events(&mut sm, 3000).await;
    // At 6000 ms, window 3000: events applied at 3000 ms or later are in it.
    assert_eq!(apply(&mut sm, one(6, 6000, 3000, "e2")).await, vec![duplicate(2, 3)], "oldest event in the window");
    assert_eq!(apply(&mut sm, one(7, 6000, 3000, "e1")).await, vec![appended(5, 7)], "newest event outside it");
    assert_eq!(sm.event_list().len(), 6);
    // The second "e1" is now the one in the window.
    assert_eq!(apply(&mut sm, one(8, 6000, 3000, "e1")).await, vec![duplicate(5, 7)]);
    assert_eq!(stored(&sm).iter().filter(|(_, _, id)| id.as_deref() == Some("e1")).count(), 2);
}

#[tokio::test]
async fn an_id_reused_for_another_event_is_refused_not_appended_and_the_original_stays_its_holder() {
    let mut sm = GameStateMachine::in_memory();
    five_events(&mut sm, LONG).await;
    let other = command(6, 6000, LONG, &[(Some("e3"), 77)]);
    assert_eq!(apply(&mut sm, other).await, vec![reused(3, 4)]);
    assert_eq!(apply(&mut sm, one(7, 7000, LONG, "e3")).await, vec![duplicate(3, 4)], "the original still is");
    // In one batch: the second event under "x" differs, the third repeats the first.
    let batch = command(8, 8000, LONG, &[(Some("x"), 1), (Some("x"), 2), (Some("x"), 1)]);
    assert_eq!(apply(&mut sm, batch).await, vec![appended(5, 8), reused(5, 8), duplicate(5, 8)]);
    assert_eq!(sm.event_list().len(), 6, "five events and x, once");
}

#[tokio::test]
async fn an_id_twice_in_one_batch_is_appended_once() {
    let mut sm = GameStateMachine::in_memory();
    apply(&mut sm, membership(0)).await;
    let batch = command(1, 1000, LONG, &[(Some("x"), 1), (Some("y"), 2), (Some("x"), 1), (None, 3), (None, 3)]);
    let outcomes = apply(&mut sm, batch).await;
    assert_eq!(outcomes, vec![appended(0, 1), appended(1, 1), duplicate(0, 1), appended(2, 1), appended(3, 1)]);
    assert_eq!(
        stored(&sm),
        vec![(0, 1, Some("x".into())), (1, 1, Some("y".into())), (2, 1, None), (3, 1, None)],
        "events without ids are never duplicates"
    );
}

#[tokio::test]
async fn an_entry_without_a_window_checks_nothing() {
    let mut sm = GameStateMachine::in_memory();
    five_events(&mut sm, 10_000).await;
    assert_eq!(apply(&mut sm, one(6, 6000, 0, "e4")).await, vec![appended(5, 6)]);
    // ...and leaves the window as it was: the next entry still sees e0.
    assert_eq!(apply(&mut sm, one(7, 7000, 10_000, "e0")).await, vec![duplicate(0, 1)]);
}

#[tokio::test]
async fn log_time_never_goes_back_when_a_leader_s_clock_is_behind() {
    let mut sm = GameStateMachine::in_memory();
    five_events(&mut sm, 2500).await;
    // A new leader whose clock reads 1 s: the log's time stays at 5000 ms,
    // so e1 (2000 ms) stays outside the window and e2 (3000 ms) inside.
    assert_eq!(apply(&mut sm, one(6, 1000, 2500, "e1")).await, vec![appended(5, 6)]);
    assert_eq!(apply(&mut sm, one(7, 1000, 2500, "e2")).await, vec![duplicate(2, 3)]);
    assert_eq!(sm.applied().log_time_ms, 5000);
    // The second e1 was applied at 5000 ms, not at 1000: it lives until 7500.
    assert_eq!(apply(&mut sm, one(8, 7500, 2500, "e1")).await, vec![duplicate(5, 6)]);
    assert_eq!(apply(&mut sm, one(9, 7501, 2500, "e1")).await, vec![appended(6, 9)]);
}

#[tokio::test]
async fn a_longer_window_reads_older_ids_from_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = GameStateMachine::open(dir.path()).expect("open");
    five_events(&mut sm, 500).await;
    assert_eq!(sm.request_ids.len(), 1, "a 500 ms window holds the last id");
    assert_eq!(apply(&mut sm, one(6, 6000, 500, "e0")).await, vec![appended(5, 6)], "e0 is outside it");
    // A leader with a longer window: e1 (2000 ms) is within 5000 ms of 6000.
    assert_eq!(apply(&mut sm, one(7, 6000, 5000, "e1")).await, vec![duplicate(1, 2)]);
    assert_eq!(sm.request_ids.len(), 5, "e1..e4 and the second e0");
    // And back to a short one: memory follows.
    assert_eq!(apply(&mut sm, one(8, 6000, 2500, "e3")).await, vec![duplicate(3, 4)]);
    assert_eq!(sm.request_ids.len(), 3, "e3, e4 and the second e0");
}

#[tokio::test]
async fn a_window_that_grows_mid_batch_sees_the_batch_events_not_yet_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = GameStateMachine::open(dir.path()).expect("open");
    // p, q and r leave the 1 ms window at entry 2; entry 3's longer window
    // needs them back from the store before this apply call has written them.
    let entries = vec![
        membership(0),
        command(1, 1000, 1, &[(Some("p"), 1), (Some("q"), 2), (Some("r"), 3)]),
        command(2, 5000, 1, &[(Some("s"), 4)]),
        command(3, 5000, 50_000, &[(Some("p"), 1)]),
        command(4, 5000, 50_000, &[(Some("q"), 2)]),
    ];
    let results = sm.apply(entries).await.expect("apply");
    let outcomes: Vec<Vec<EventOutcome>> = results.into_iter().map(|r| r.events).collect();
    assert_eq!(
        outcomes,
        vec![
            vec![],
            vec![appended(0, 1), appended(1, 1), appended(2, 1)],
            vec![appended(3, 2)],
            vec![duplicate(0, 1)],
            vec![duplicate(1, 1)]
        ]
    );
    drop(sm);
    let reopened = GameStateMachine::open(dir.path()).expect("reopen");
    assert_eq!(reopened.event_list().len(), 4, "the store holds each event once, whole");
}

#[tokio::test]
async fn a_reopened_store_rebuilds_the_ids_of_its_window_from_their_stamped_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut sm = GameStateMachine::open(dir.path()).expect("open");
        five_events(&mut sm, 3000).await;
        // A snapshot in the middle: recovery starts from it and replays the rest.
        sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        assert_eq!(apply(&mut sm, one(6, 6000, 3000, "e5")).await, vec![appended(5, 6)]);
    }
    let mut sm = GameStateMachine::open(dir.path()).expect("reopen");
    assert_eq!((sm.applied().log_time_ms, sm.applied().request_id_window_ms), (6000, 3000));
    assert_eq!(sm.request_ids.len(), 4, "e2..e5 (3000..6000 ms), loaded from the file");
    // The times come from the file, not from the clock of the reopening:
    // at 6000 ms e2 (3000) is in, e1 (2000) is out.
    assert_eq!(apply(&mut sm, one(7, 6000, 3000, "e2")).await, vec![duplicate(2, 3)]);
    assert_eq!(apply(&mut sm, one(8, 6000, 3000, "e1")).await, vec![appended(6, 8)]);
    let reuse = command(9, 6000, 3000, &[(Some("e3"), 1)]);
    assert_eq!(apply(&mut sm, reuse).await, vec![reused(3, 4)], "fingerprints come from the file too");
    assert_eq!(stored(&sm)[3], (3, 4, Some("e3".into())), "the id is stored with its event");
}

#[tokio::test]
async fn an_installed_snapshot_brings_the_ids_of_its_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    for durable in [true, false] {
        let dirs = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
        let open = |dir: &tempfile::TempDir| match durable {
            true => GameStateMachine::open(dir.path()).expect("open"),
            false => GameStateMachine::in_memory(),
        };
        let mut sender = open(&dirs.0);
        five_events(&mut sender, 4000).await;
        let mut built = sender.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        let mut bytes = Vec::new();
        built.snapshot.read_to_end(&mut bytes).await.expect("read snapshot");

        // The receiver has its own, other ids: they must not survive.
        let mut receiver = open(&dirs.1);
        apply(&mut receiver, membership(0)).await;
        apply(&mut receiver, one(1, 1000, 4000, "stale")).await;
        let mut incoming = receiver.begin_receiving_snapshot().await.expect("begin");
        incoming.write_all(&bytes).await.expect("write snapshot");
        incoming.shutdown().await.expect("close snapshot");
        receiver.install_snapshot(&built.meta, incoming).await.expect("install");

        // At 5000 ms with a 4000 ms window, e0 (1000 ms) is the oldest in it.
        assert_eq!(apply(&mut receiver, one(6, 5000, 4000, "e1")).await, vec![duplicate(1, 2)], "durable: {durable}");
        assert_eq!(apply(&mut receiver, one(7, 5000, 4000, "stale")).await, vec![appended(5, 7)], "{durable}");
        assert_eq!(apply(&mut receiver, one(8, 5001, 4000, "e0")).await, vec![appended(6, 8)], "e0 left the window");
    }
}

/// One entry for [`model`]: stamped time, window, (id, event) of its events.
type ModelEntry = (u64, u64, Vec<(Option<u8>, u8)>);

/// What the rule says for `entries`, applied in order, computed from the
/// whole event list: per event, (outcome kind, position of the event it is
/// or names).
fn model(entries: &[ModelEntry]) -> Vec<(char, u64)> {
    let mut list: Vec<(Option<u8>, u8, u64)> = Vec::new(); // (id, event, log time)
    let mut out = Vec::new();
    let mut now = 0;
    for (at_ms, window, events) in entries {
        now = now.max(*at_ms);
        for (id, tag) in events {
            let oldest = now.saturating_sub(*window);
            let holder = id
                .filter(|_| *window > 0)
                .and_then(|id| (0..list.len()).rev().find(|p| list[*p].0 == Some(id) && list[*p].2 >= oldest));
            match holder {
                Some(position) if list[position].1 == *tag => out.push(('d', position as u64)),
                Some(position) => out.push(('r', position as u64)),
                None => {
                    out.push(('a', list.len() as u64));
                    list.push((*id, *tag, now));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random ids and events from small alphabets in batches of 1-3 events,
    /// stamped times that move forward and (a leader with a slow clock)
    /// back, windows changing from entry to entry (0 included), entries
    /// applied one or several per call, and the durable store reopened at
    /// random points: every decision is the rule's.
    #[test]
    fn decisions_equal_the_rule_across_clocks_window_changes_batches_and_restarts(
        entries in proptest::collection::vec(
            (
                -3i64..6,
                0u64..6,
                proptest::collection::vec((proptest::option::weighted(0.9, 0u8..5), 0u8..2), 1..4),
                0u8..4,
            ),
            1..40,
        )
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut sm = GameStateMachine::open(dir.path()).expect("open");
            let mut got = Vec::new();
            let mut pending = Vec::new();
            let mut clock: i64 = 10;
            let mut rule = Vec::new();
            for (n, (tick, window, events, step)) in entries.iter().enumerate() {
                clock = (clock + tick).max(0);
                let at_ms = clock as u64;
                rule.push((at_ms, *window, events.clone()));
                let names: Vec<(Option<String>, u64)> =
                    events.iter().map(|(id, tag)| (id.map(|id| format!("id{id}")), u64::from(*tag))).collect();
                let names: Vec<(Option<&str>, u64)> = names.iter().map(|(id, tag)| (id.as_deref(), *tag)).collect();
                pending.push(command(n as u64 + 1, at_ms, *window, &names));
                // 0: keep batching entries into one apply call; 1: reopen first.
                if *step == 0 && n + 1 < entries.len() {
                    continue;
                }
                let results = sm.apply(std::mem::take(&mut pending)).await.expect("apply");
                got.extend(results.into_iter().flat_map(|r| r.events).map(|o| match o {
                    EventOutcome::Appended { position, .. } => ('a', position),
                    EventOutcome::Duplicate { position, .. } => ('d', position),
                    EventOutcome::Reused { position, .. } => ('r', position),
                }));
                if *step == 1 {
                    drop(sm);
                    sm = GameStateMachine::open(dir.path()).expect("reopen");
                }
            }
            assert_eq!(got, model(&rule));
        });
    }
}
