//! The leader batches concurrent writes into shared Raft entries: writes
//! sent to every node (followers forward theirs to the leader) form batches,
//! each event is still in every node's log exactly once, at the log index
//! its writer was told.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::harness::{event, post_with_id, TestCluster};
use crate::recorder::{Naming, Recorder};

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_through_every_node_share_entries_and_each_event_is_logged_once() {
    const WRITERS: u64 = 48;
    const PER_WRITER: u64 = 20;
    let cluster = TestCluster::start("batching", 3).await;
    let clients: Vec<_> = cluster.ids().into_iter().map(|id| (id, cluster.client(id).clone())).collect();
    let history = Recorder::new(Naming::RequestId);

    eprintln!("--- {WRITERS} writers, {PER_WRITER} writes each, spread over the {} nodes", clients.len());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let ((node, client), history) = (clients[(w as usize) % clients.len()].clone(), history.clone());
        writers.push(tokio::spawn(async move {
            let mut told = Vec::new();
            for n in 0..PER_WRITER {
                let tag = w * 1000 + n;
                let id = format!("b-{tag}");
                let mut write = history.begin(w as u32, id.clone(), tag);
                write.nodes.push(node);
                let resp = post_with_id(&client, &event(tag), &id).await.expect("an answer");
                assert_eq!(resp.status, 200, "{id}: {}", resp.body);
                assert_eq!(resp.body["duplicate"], false, "{id}: {}", resp.body);
                let index = resp.body["log_index"].as_u64().expect("a log index");
                history.acked(write, index, false);
                told.push((id, (index, resp.body["position"].as_u64().expect("a position"))));
            }
            told
        }));
    }
    let mut told: HashMap<String, (u64, u64)> = HashMap::new();
    for writer in writers {
        told.extend(writer.await.expect("writer"));
    }
    let events = (WRITERS * PER_WRITER) as usize;
    assert_eq!(told.len(), events);
    let entries: BTreeSet<u64> = told.values().map(|&(index, _)| index).collect();
    let positions: BTreeSet<u64> = told.values().map(|&(_, position)| position).collect();
    assert_eq!(positions.len(), events, "two writers were told the same position");
    eprintln!("--- {events} events in {} entries", entries.len());
    assert!(entries.len() < events, "no batch formed: {events} events took {} entries", entries.len());

    eprintln!("--- a barrier, then every node's log");
    let (node, client) = &clients[0];
    let mut write = history.begin(WRITERS as u32, "barrier".into(), 9_999_999);
    write.nodes.push(*node);
    let barrier = post_with_id(client, &event(9_999_999), "barrier").await.expect("barrier");
    assert_eq!(barrier.status, 200, "{}", barrier.body);
    history.acked(write, barrier.body["log_index"].as_u64().expect("a log index"), false);
    // Every node holds the same log (each a prefix of the longest, then all
    // equal); each event is in it once, at the log index its writer was told.
    let logs = cluster
        .converged_logs("the barrier", Duration::from_secs(30), |e| e.request_id.as_deref() == Some("barrier"))
        .await;
    history.check(&logs);
    let log = &logs[0].1;
    assert_eq!(log.len(), events + 1);
    for entry in log {
        let id = entry.request_id.as_deref().expect("a request id");
        if id != "barrier" {
            assert_eq!(told[id].1, entry.position, "{id}: at the position its writer was told");
        }
    }
}
