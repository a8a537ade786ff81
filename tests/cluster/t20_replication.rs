//! Writes through any node reach every node, once, in one order.

use std::sync::Arc;

use gameraft::event::{EphemeralEvent, GameEvent};
use rand::Rng;

use crate::harness::{event, tag_of, TestCluster};
use crate::recorder::{Naming, Recorder};

#[tokio::test(flavor = "multi_thread")]
async fn events_posted_to_leader_and_follower_appear_identically_everywhere() {
    let cluster = TestCluster::start("replication", 3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    let mut acknowledged = Vec::new();
    for tag in 0..20u64 {
        let target = if tag % 2 == 0 { leader } else { follower };
        let resp = cluster.client(target).post_event(&event(tag)).await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body["success"], true);
        let log_index = resp.body["log_index"].as_u64().expect("log_index");
        assert_eq!(resp.body["message"], format!("Event committed at log index {log_index}"));
        acknowledged.push((log_index, tag));
    }
    assert!(acknowledged.windows(2).all(|w| w[0].0 < w[1].0), "log indexes increase: {acknowledged:?}");

    let events = cluster.converged_events(20).await;
    let tags: Vec<u64> = events.iter().map(tag_of).collect();
    assert_eq!(tags, (0..20).collect::<Vec<_>>(), "every node holds the events in the order they were acknowledged");

    // Paging returns the same sequence in slices.
    let page = cluster.client(follower).events_page(5, 10).await.unwrap();
    assert_eq!((page.from, page.count, page.next, page.total), (5, 10, 15, 20));
    assert_eq!(page.events, events[5..15]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_events_stay_on_the_leader_and_out_of_the_log() {
    let cluster = TestCluster::start("ephemeral", 3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    let moved =
        GameEvent::Ephemeral(EphemeralEvent::PlayerMove { player_id: 9, x: 1.5, y: 2.0, z: -3.0, timestamp: 7 });
    let acted =
        GameEvent::Ephemeral(EphemeralEvent::PlayerAction { player_id: 9, action: "jump".into(), timestamp: 8 });
    for e in [&moved, &acted] {
        let resp = cluster.client(follower).post_event(e).await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body["log_index"], serde_json::Value::Null);
        assert_eq!(resp.body["message"], format!("Ephemeral event accepted by leader {leader}"));
    }
    // A critical write after them: once it is everywhere, the ephemeral
    // events would be too if they had gone through the log.
    assert_eq!(cluster.client(leader).post_event(&event(1)).await.unwrap().status, 200);
    let events = cluster.converged_events(1).await;
    assert_eq!(tag_of(&events[0]), 1);

    for id in cluster.ids() {
        let held = cluster.client(id).get("/ephemeral").await.unwrap();
        assert_eq!(held.status, 200);
        assert_eq!(
            held.body,
            serde_json::json!({
                "positions": [{ "player_id": 9, "x": 1.5, "y": 2.0, "z": -3.0, "timestamp": 7 }],
                "recent_actions": [{ "player_id": 9, "action": "jump", "timestamp": 8 }],
            }),
            "node {id} serves the leader's ephemeral state"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_clients_through_random_nodes_commit_each_event_once_in_one_order() {
    const CLIENTS: u64 = 8;
    const TOTAL: u64 = 1000;
    let cluster = Arc::new(TestCluster::start("concurrent", 3).await);
    let clients: Vec<_> = cluster.ids().into_iter().map(|id| (id, cluster.client(id).clone())).collect();
    let history = Recorder::new(Naming::Tag);

    let mut writers = Vec::new();
    for writer in 0..CLIENTS {
        let (clients, history) = (clients.clone(), history.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = 0;
            let mut failed = Vec::new();
            for n in 0..TOTAL / CLIENTS {
                let tag = writer * 1_000_000 + n;
                let (node, client) = &clients[rand::thread_rng().gen_range(0..clients.len())];
                match history.post_tagged(*node, client, tag).await {
                    Ok(resp) if resp.status == 200 => acked += 1,
                    other => failed.push((tag, format!("{other:?}"))),
                }
            }
            (acked, failed)
        }));
    }
    let mut acked = 0;
    let mut failed = Vec::new();
    for writer in writers {
        let (a, f) = writer.await.unwrap();
        acked += a;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "no fault was injected, yet writes failed: {failed:?}");
    assert_eq!(acked, TOTAL);

    let events = cluster.converged_events(TOTAL as usize).await;
    // Every acknowledged event is present once, where its writer was told,
    // and log order matches log_index order (events of one batch share
    // their entry's index), on every node.
    history.check(&cluster.logs().await);

    // Paging through a follower sees the same sequence.
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let page = cluster.client(2).events_page(from, 300).await.unwrap();
        if page.count == 0 {
            break;
        }
        paged.extend(page.events);
        from = page.next;
    }
    assert_eq!(paged, events);
}
