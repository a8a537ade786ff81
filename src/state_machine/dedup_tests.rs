//! Exactly-once appends: the state machine's duplicate decisions, checked
//! against the rule itself (an id among the last `W` events, `W` the
//! entry's window) across window changes, restarts and snapshot installs.

use std::collections::BTreeSet;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;

use super::GameStateMachine;
use crate::event::CriticalEvent;
use crate::types::{Command, Entry, EventOutcome, LogId, Membership, ProposedEvent};

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn event(tag: u64) -> CriticalEvent {
    CriticalEvent::ScoreUpdate { player_id: tag, score: 0, timestamp: tag }
}

/// A `Command` entry at `index` with one event per id (`None`: no id),
/// carrying `window`.
fn command(index: u64, window: u64, ids: &[Option<&str>]) -> Entry {
    let events = ids
        .iter()
        .enumerate()
        .map(|(n, id)| ProposedEvent { request_id: id.map(str::to_string), event: event(index * 100 + n as u64) })
        .collect();
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(Command { events, request_id_window: window }) }
}

fn one(index: u64, window: u64, id: &str) -> Entry {
    command(index, window, &[Some(id)])
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

/// (position, log_index, request id) of every stored event.
fn stored(sm: &GameStateMachine) -> Vec<(u64, u64, Option<String>)> {
    let events = sm.event_log().range(0, u64::MAX).expect("read events");
    events.into_iter().map(|e| (e.position, e.log_index, e.request_id)).collect()
}

/// Entries 1..=5 carry ids "e0".."e4" at positions 0..4, with `window`.
async fn five_events(sm: &mut GameStateMachine, window: u64) {
    apply(sm, membership(0)).await;
    for n in 0..5 {
        assert_eq!(apply(sm, one(n + 1, window, &format!("e{n}"))).await, vec![appended(n, n + 1)]);
    }
}

#[tokio::test]
async fn an_id_repeated_within_the_window_is_not_appended_and_just_outside_it_is() {
    let mut sm = GameStateMachine::in_memory();
    five_events(&mut sm, 3).await;
    // 5 events, window 3: positions 2, 3 and 4 are in it.
    assert_eq!(apply(&mut sm, one(6, 3, "e2")).await, vec![duplicate(2, 3)], "oldest event in the window");
    assert_eq!(apply(&mut sm, one(7, 3, "e1")).await, vec![appended(5, 7)], "newest event outside it");
    assert_eq!(sm.event_log().len(), 6);
    // The second "e1" is now the one in the window.
    assert_eq!(apply(&mut sm, one(8, 3, "e1")).await, vec![duplicate(5, 7)]);
    assert_eq!(stored(&sm).iter().filter(|(_, _, id)| id.as_deref() == Some("e1")).count(), 2);
}

#[tokio::test]
async fn an_id_twice_in_one_batch_is_appended_once() {
    let mut sm = GameStateMachine::in_memory();
    apply(&mut sm, membership(0)).await;
    let outcomes = apply(&mut sm, command(1, 10, &[Some("x"), Some("y"), Some("x"), None, None])).await;
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
    five_events(&mut sm, 10).await;
    assert_eq!(apply(&mut sm, one(6, 0, "e4")).await, vec![appended(5, 6)]);
    // ...and leaves the window as it was: the next entry still sees e0.
    assert_eq!(apply(&mut sm, one(7, 10, "e0")).await, vec![duplicate(0, 1)]);
}

#[tokio::test]
async fn a_larger_window_reads_older_ids_from_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = GameStateMachine::open(dir.path()).expect("open");
    five_events(&mut sm, 1).await;
    assert_eq!(sm.request_ids.len(), 1, "window 1 holds one id");
    assert_eq!(apply(&mut sm, one(6, 1, "e0")).await, vec![appended(5, 6)], "e0 is outside window 1");
    // A leader with a larger window: e1 (position 1) is within the last 5.
    assert_eq!(apply(&mut sm, one(7, 5, "e1")).await, vec![duplicate(1, 2)]);
    assert_eq!(sm.request_ids.len(), 5);
    // And back to a small one: memory follows.
    assert_eq!(apply(&mut sm, one(8, 2, "e3")).await, vec![appended(6, 8)]);
    assert_eq!(sm.request_ids.len(), 2);
}

#[tokio::test]
async fn a_window_that_grows_mid_batch_sees_the_batch_events_not_yet_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = GameStateMachine::open(dir.path()).expect("open");
    let entries =
        vec![membership(0), command(1, 1, &[Some("p"), Some("q"), Some("r")]), one(2, 50, "p"), one(3, 50, "q")];
    let results = sm.apply(entries).await.expect("apply");
    let outcomes: Vec<Vec<EventOutcome>> = results.into_iter().map(|r| r.events).collect();
    assert_eq!(
        outcomes,
        vec![
            vec![],
            vec![appended(0, 1), appended(1, 1), appended(2, 1)],
            vec![duplicate(0, 1)],
            vec![duplicate(1, 1)]
        ]
    );
    drop(sm);
    let reopened = GameStateMachine::open(dir.path()).expect("reopen");
    assert_eq!(reopened.event_log().len(), 3, "the store holds each event once, whole");
}

#[tokio::test]
async fn a_reopened_store_rebuilds_the_ids_of_its_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut sm = GameStateMachine::open(dir.path()).expect("open");
        five_events(&mut sm, 3).await;
        // A snapshot in the middle: recovery starts from it and replays the rest.
        sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        assert_eq!(apply(&mut sm, one(6, 3, "e5")).await, vec![appended(5, 6)]);
    }
    let mut sm = GameStateMachine::open(dir.path()).expect("reopen");
    assert_eq!(sm.applied().request_id_window, 3);
    assert_eq!(sm.request_ids.len(), 3, "the window's ids, loaded from the file");
    assert_eq!(apply(&mut sm, one(7, 3, "e3")).await, vec![duplicate(3, 4)]);
    assert_eq!(apply(&mut sm, one(8, 3, "e2")).await, vec![appended(6, 8)]);
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
        five_events(&mut sender, 4).await;
        let mut built = sender.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
        let mut bytes = Vec::new();
        built.snapshot.read_to_end(&mut bytes).await.expect("read snapshot");

        // The receiver has its own, other ids: they must not survive.
        let mut receiver = open(&dirs.1);
        apply(&mut receiver, membership(0)).await;
        apply(&mut receiver, one(1, 4, "stale")).await;
        let mut incoming = receiver.begin_receiving_snapshot().await.expect("begin");
        incoming.write_all(&bytes).await.expect("write snapshot");
        incoming.shutdown().await.expect("close snapshot");
        receiver.install_snapshot(&built.meta, incoming).await.expect("install");

        assert_eq!(apply(&mut receiver, one(6, 4, "e1")).await, vec![duplicate(1, 2)], "durable: {durable}");
        assert_eq!(apply(&mut receiver, one(7, 4, "stale")).await, vec![appended(5, 7)], "durable: {durable}");
        assert_eq!(apply(&mut receiver, one(8, 4, "e0")).await, vec![appended(6, 8)], "e0 is outside the window");
    }
}

/// What the rule says for `entries` ((window, ids of its events) per
/// entry, applied in order), computed from the whole event list: per event,
/// (is a duplicate, position of the event it is or repeats).
fn model(entries: &[(u64, Vec<Option<u8>>)]) -> Vec<(bool, u64)> {
    let mut list: Vec<Option<u8>> = Vec::new();
    let mut out = Vec::new();
    for (window, ids) in entries {
        for id in ids {
            let count = list.len() as u64;
            let oldest = count.saturating_sub(*window) as usize;
            let original =
                id.filter(|_| *window > 0).and_then(|id| (oldest..list.len()).rev().find(|p| list[*p] == Some(id)));
            match original {
                Some(position) => out.push((true, position as u64)),
                None => {
                    out.push((false, count));
                    list.push(*id);
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random ids from a small alphabet in batches of 1-3 events, windows
    /// changing from entry to entry (0 included), entries applied one or
    /// several per call, and the durable store reopened at random points:
    /// every decision is the rule's.
    #[test]
    fn decisions_equal_the_rule_across_window_changes_batches_and_restarts(
        entries in proptest::collection::vec(
            (0u64..6, proptest::collection::vec(proptest::option::weighted(0.9, 0u8..5), 1..4), 0u8..4),
            1..40,
        )
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut sm = GameStateMachine::open(dir.path()).expect("open");
            let mut got = Vec::new();
            let mut pending = Vec::new();
            for (n, (window, ids, step)) in entries.iter().enumerate() {
                let names: Vec<Option<String>> = ids.iter().map(|id| id.map(|id| format!("id{id}"))).collect();
                let names: Vec<Option<&str>> = names.iter().map(Option::as_deref).collect();
                pending.push(command(n as u64 + 1, *window, &names));
                // 0: keep batching entries into one apply call; 1: reopen first.
                if *step == 0 && n + 1 < entries.len() {
                    continue;
                }
                let results = sm.apply(std::mem::take(&mut pending)).await.expect("apply");
                got.extend(results.into_iter().flat_map(|r| r.events).map(|o| match o {
                    EventOutcome::Appended { position, .. } => (false, position),
                    EventOutcome::Duplicate { position, .. } => (true, position),
                }));
                if *step == 1 {
                    drop(sm);
                    sm = GameStateMachine::open(dir.path()).expect("reopen");
                }
            }
            let rule: Vec<(u64, Vec<Option<u8>>)> = entries.iter().map(|(w, ids, _)| (*w, ids.clone())).collect();
            assert_eq!(got, model(&rule));
        });
    }
}
