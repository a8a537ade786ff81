//! Cluster formation, membership and status agreement.

use std::time::Duration;

use crate::harness::{wait_for, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_form_a_cluster_through_join() {
    let cluster = TestCluster::start("formation", 3).await;
    let leader = cluster.leader().await;

    tracing_step("--- every node lists all three as voters with their addresses");
    for id in cluster.ids() {
        let nodes = cluster.client(id).nodes().await.unwrap();
        let listed: Vec<(u64, String, String, String, bool)> = nodes
            .nodes
            .iter()
            .map(|n| (n.id, n.http_addr.clone(), n.raft_addr.clone(), n.role.clone(), n.is_leader))
            .collect();
        let expected: Vec<(u64, String, String, String, bool)> = cluster
            .ids()
            .into_iter()
            .map(|i| {
                let node = cluster.node(i);
                (i, node.http_addr.clone(), node.raft_addr.clone(), "voter".to_string(), i == leader)
            })
            .collect();
        assert_eq!(listed, expected, "node {id}'s view of the membership");
    }

    tracing_step("--- /status agrees on term and leader; exactly one node says it leads");
    let statuses = wait_for("statuses to agree", Duration::from_secs(10), || async {
        let mut statuses = Vec::new();
        for id in cluster.ids() {
            statuses.push(cluster.client(id).status().await.ok()?);
        }
        let same = statuses
            .windows(2)
            .all(|w| (w[0].current_term, w[0].current_leader) == (w[1].current_term, w[1].current_leader));
        same.then_some(statuses)
    })
    .await;
    assert_eq!(statuses.iter().filter(|s| s.is_leader).count(), 1);
    for status in &statuses {
        assert_eq!(status.current_leader, Some(leader));
        assert_eq!(status.is_leader, status.node_id == leader);
        assert_eq!(status.event_count, 0);
    }

    tracing_step("--- /status has exactly the design's fields");
    let raw = cluster.client(2).get("/status").await.unwrap();
    let mut keys: Vec<&str> = raw.body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["current_leader", "current_term", "event_count", "is_leader", "node_id"]);

    tracing_step("--- /health and /ready answer 200 on every node");
    for id in cluster.ids() {
        assert_eq!(cluster.client(id).get("/health").await.unwrap().status, 200);
        let ready = cluster.client(id).get("/ready").await.unwrap();
        assert_eq!((ready.status, ready.body["leader"].as_u64()), (200, Some(leader)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_again_is_harmless_and_nodes_can_be_removed() {
    let cluster = TestCluster::start("rejoin-remove", 3).await;
    let follower = cluster.ids().into_iter().find(|id| *id != 1).unwrap();
    let node3 = cluster.node(3);

    tracing_step("--- the same join again, through a follower, changes nothing");
    let body = serde_json::json!({ "id": 3, "raft_addr": node3.raft_addr, "http_addr": node3.http_addr });
    let again = cluster
        .client(follower)
        .post_raw("/nodes", "application/json", serde_json::to_vec(&body).unwrap())
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["outcome"], "already_member");
    cluster.wait_for_voters(3).await;

    tracing_step("--- the same id with other addresses is refused");
    let body = serde_json::json!({ "id": 3, "raft_addr": "127.0.0.1:1", "http_addr": node3.http_addr });
    let conflict =
        cluster.client(1).post_raw("/nodes", "application/json", serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!((conflict.status, conflict.body["error"].as_str()), (409, Some("address_conflict")));

    tracing_step("--- DELETE /nodes/3 through node 2 removes it from every remaining node's membership");
    let removed = cluster.client(2).delete("/nodes/3").await.unwrap();
    assert_eq!(removed.status, 200, "{}", removed.body);
    for id in [1, 2] {
        wait_for("node 3 to leave the membership", Duration::from_secs(10), || async {
            let nodes = cluster.client(id).nodes().await.ok()?;
            (nodes.nodes.iter().map(|n| n.id).collect::<Vec<_>>() == [1, 2]).then_some(())
        })
        .await;
    }
    let unknown = cluster.client(1).delete("/nodes/3").await.unwrap();
    assert_eq!((unknown.status, unknown.body["error"].as_str()), (404, Some("unknown_node")));
}

fn tracing_step(step: &str) {
    eprintln!("{step}");
}
