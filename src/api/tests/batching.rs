//! The leader's write batcher (`proposer/batcher.rs`): concurrent writes share
//! entries, each event still gets its own position and answer.

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{call, join_event, post_json, single_node, with_id};
use crate::event::CriticalEvent;
use crate::proposer::RequestId;
use crate::types::{EventOutcome, ProposedEvent};

fn critical(player_id: u64) -> CriticalEvent {
    match serde_json::from_value(join_event(player_id)["event"]["Critical"].clone()) {
        Ok(event) => event,
        Err(err) => panic!("join_event is a critical event: {err}"),
    }
}

fn proposed(id: &str, player_id: u64) -> ProposedEvent {
    ProposedEvent { request_id: Some(id.to_string()), event: critical(player_id) }
}

#[tokio::test]
async fn concurrent_writers_get_distinct_dense_positions_and_their_entrys_log_index() {
    let (node, app, _data) = single_node().await;
    const WRITERS: u64 = 64;
    let answers = futures::future::join_all(
        (0..WRITERS).map(|i| post_json(&app, "/events", with_id(join_event(i), &format!("w-{i}")))),
    )
    .await;
    let mut told: HashMap<String, (u64, u64)> = HashMap::new();
    for (i, (status, body)) in answers.into_iter().enumerate() {
        assert_eq!(status, StatusCode::OK, "{body}");
        let index = body["log_index"].as_u64().expect("a log index");
        let position = body["position"].as_u64().expect("a position");
        assert_eq!(
            body,
            json!({ "success": true, "message": format!("Event committed at log index {index}"), "log_index": index, "duplicate": false, "position": position })
        );
        told.insert(format!("w-{i}"), (index, position));
    }
    let positions: BTreeSet<u64> = told.values().map(|&(_, position)| position).collect();
    assert_eq!(positions, (0..WRITERS).collect(), "each writer its own position, densely");
    let distinct: BTreeSet<u64> = told.values().map(|&(index, _)| index).collect();
    assert!(
        distinct.len() < WRITERS as usize,
        "{WRITERS} concurrent writes took {} entries: no batch formed",
        distinct.len()
    );

    let (_, page) = call(&app, "GET", "/log", None, b"").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len() as u64, WRITERS);
    let mut last_index = 0;
    for (pos, entry) in entries.iter().enumerate() {
        assert_eq!(entry["position"].as_u64(), Some(pos as u64), "positions are dense: {entry}");
        let id = entry["request_id"].as_str().expect("request id");
        let index = entry["log_index"].as_u64().expect("log index");
        assert_eq!(
            told.remove(id),
            Some((index, pos as u64)),
            "{id} was told its entry's log index and its position, once"
        );
        assert!(index >= last_index, "log indexes never decrease along the log");
        last_index = index;
    }
    assert!(told.is_empty(), "missing from the log: {told:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn one_batch_gives_each_event_its_own_position_and_answers_copies_as_duplicates_and_reuses_as_such() {
    let (node, _app, _data) = single_node().await;
    let before = node.state.events.len();
    let proposer = &node.state.proposer;
    let client = |id: &str| RequestId::Client(id.to_string());
    let (a, b, c) = (client("a"), client("b"), client("c"));
    // Polled together on this (single-threaded) runtime, all five are
    // queued before the batching task runs: they leave as one entry.
    let outcomes = futures::future::join_all([
        proposer.propose(&a, critical(1)),
        proposer.propose(&b, critical(2)),
        proposer.propose(&a, critical(1)),
        proposer.propose(&c, critical(4)),
        proposer.propose(&b, critical(5)),
    ])
    .await;
    let outcomes: Vec<EventOutcome> = outcomes.into_iter().map(|o| o.expect("committed")).collect();
    let index = outcomes[0].log_index();
    assert_eq!(
        outcomes,
        vec![
            EventOutcome::Appended { position: before, log_index: index },
            EventOutcome::Appended { position: before + 1, log_index: index },
            EventOutcome::Duplicate { position: before, log_index: index },
            EventOutcome::Appended { position: before + 2, log_index: index },
            EventOutcome::Reused { position: before + 1, log_index: index },
        ]
    );
    assert_eq!(node.state.events.len(), before + 3);
    let stored: Vec<(Option<String>, u64)> =
        node.state.events.range(before, 10).expect("read").into_iter().map(|e| (e.request_id, e.log_index)).collect();
    assert_eq!(stored, vec![(Some("a".into()), index), (Some("b".into()), index), (Some("c".into()), index)]);

    // A later copy, alone in its batch, names the original too.
    assert!(
        matches!(
            proposer.propose(&c, critical(4)).await,
            Ok(EventOutcome::Duplicate { position, log_index }) if position == before + 2 && log_index == index
        ),
        "a copy names the original"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn copies_of_a_client_id_in_one_burst_are_answered_once_as_new_and_the_rest_as_duplicates() {
    let (node, app, _data) = single_node().await;
    let mut bodies: Vec<Value> = (0..8).map(|_| with_id(join_event(0), "same")).collect();
    bodies.extend((0..8).map(|i| with_id(join_event(100 + i), &format!("other-{i}"))));
    let answers = futures::future::join_all(bodies.into_iter().map(|body| post_json(&app, "/events", body))).await;
    let same: Vec<&Value> = answers
        .iter()
        .take(8)
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body
        })
        .collect();
    let fresh: Vec<&&Value> = same.iter().filter(|b| b["duplicate"] == json!(false)).collect();
    assert_eq!(fresh.len(), 1, "exactly one copy appended: {same:?}");
    let index = fresh[0]["log_index"].as_u64().expect("index");
    let position = fresh[0]["position"].as_u64().expect("position");
    for body in same.iter().filter(|b| b["duplicate"] == json!(true)) {
        assert_eq!(
            **body,
            json!({
                "success": true,
                "message": format!("Duplicate of request same: event committed at log index {index}"),
                "log_index": index,
                "duplicate": true,
                "position": position,
            })
        );
    }
    assert_eq!(node.state.events.len(), 9, "one copy of \"same\" and eight others");
    node.shutdown().await;
}

#[tokio::test]
async fn batches_are_cut_at_the_event_and_byte_bounds() {
    use crate::proposer::{BatchLimits, Batcher};
    let (node, _app, _data) = single_node().await;
    let limits = BatchLimits {
        max_events: 2,
        max_bytes: 1 << 20,
        entry_limit: 4 << 20,
        in_flight: 1,
        request_id_window_ms: 100_000,
    };
    let by_count = Batcher::spawn(node.state.raft.clone(), limits);
    let outcomes = futures::future::join_all((0..5).map(|i| by_count.write(proposed(&format!("n-{i}"), i)))).await;
    let indexes: Vec<u64> = outcomes.into_iter().map(|o| o.expect("committed").log_index()).collect();
    assert_eq!((indexes[0], indexes[2], indexes[4]), (indexes[1], indexes[3], indexes[4]), "{indexes:?}");
    assert!(indexes[0] < indexes[2] && indexes[2] < indexes[4], "two events per entry: {indexes:?}");

    // One byte: every event is over the bound, so each goes alone.
    let by_bytes = Batcher::spawn(node.state.raft.clone(), BatchLimits { max_bytes: 1, ..limits });
    let outcomes = futures::future::join_all((0..3).map(|i| by_bytes.write(proposed(&format!("b-{i}"), i)))).await;
    let indexes: BTreeSet<u64> = outcomes.into_iter().map(|o| o.expect("committed").log_index()).collect();
    assert_eq!(indexes.len(), 3, "one entry per event: {indexes:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn no_entry_exceeds_the_entry_limit_and_an_event_too_large_alone_is_refused() {
    use prost::Message;

    use crate::proposer::{BatchLimits, Batcher, ProposeError};
    use crate::proto::pb;
    use crate::types::{Entry, EventBatch, ENTRY_OVERHEAD_BYTES};

    let (node, _app, _data) = single_node().await;
    // The byte bound is generous; the entry limit (what a peer accepts) is
    // what must cut these batches.
    const LIMIT: usize = 2048;
    let limits = BatchLimits {
        max_events: 256,
        max_bytes: 1 << 20,
        entry_limit: LIMIT,
        in_flight: 1,
        request_id_window_ms: 100_000,
    };
    let writes = Batcher::spawn(node.state.raft.clone(), limits);
    let sent: Vec<ProposedEvent> = (0..40).map(|i| proposed(&format!("limit-{i}"), i)).collect();
    let outcomes = futures::future::join_all(sent.iter().map(|event| writes.write(event.clone()))).await;
    let mut entries: std::collections::BTreeMap<u64, Vec<ProposedEvent>> = Default::default();
    for (event, outcome) in sent.iter().zip(outcomes) {
        entries.entry(outcome.expect("committed").log_index()).or_default().push(event.clone());
    }
    assert!(entries.len() > 1, "40 events of about 150 bytes do not fit 2 KiB: {:?}", entries.keys());
    for (index, events) in entries {
        let counted: usize = events.iter().map(crate::proposer::event_bytes).sum::<usize>() + ENTRY_OVERHEAD_BYTES;
        assert!(counted <= LIMIT, "entry {index} counts {counted} bytes");
        let command = EventBatch { events, proposed_at_ms: u64::MAX, request_id_window_ms: u64::MAX };
        let entry = Entry {
            log_id: crate::types::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(command),
        };
        let size = pb::Entry::from(entry).encoded_len();
        assert!(size <= LIMIT, "entry {index} encodes to {size} bytes");
    }

    let huge = ProposedEvent {
        request_id: Some("huge".into()),
        event: CriticalEvent::GameStateChange { state: "x".repeat(LIMIT), timestamp: 1 },
    };
    let refused = writes.write(huge).await;
    assert!(
        matches!(refused, Err(ProposeError::TooLarge { limit, .. }) if limit == LIMIT - ENTRY_OVERHEAD_BYTES),
        "{refused:?}"
    );
    node.shutdown().await;
}
