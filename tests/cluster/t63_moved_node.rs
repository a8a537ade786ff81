//! A node restarted on its data directory at new addresses (a task moved to
//! another IP, new ports) puts its new addresses in the membership through
//! the leader, and is a full member again: reachable, caught up, writable,
//! without an election.

use std::time::Duration;

use crate::harness::{event, wait_for, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_at_new_addresses_updates_the_membership_and_serves_again() {
    let mut cluster = TestCluster::start("moved-follower", 3).await;
    let leader = cluster.leader().await;
    for tag in 0..3 {
        let resp = cluster.client(leader).post_event(&event(tag)).await.expect("POST /events");
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    cluster.converged_events(3).await;
    let term = cluster.client(leader).status().await.expect("GET /status").current_term;

    // A follower dies; the two others go on committing without it.
    let moved = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let old = cluster.kill(moved).await;
    for tag in 3..6 {
        let resp = cluster.client(leader).post_event(&event(tag)).await.expect("POST /events");
        assert_eq!(resp.status, 200, "{}", resp.body);
    }

    // It comes back on its data directory at new ports, with no --join: the
    // members it knows are in its own stored membership.
    let node = cluster.spawn(moved, None, "127.0.0.1:0", "127.0.0.1:0").await;
    let (http_addr, raft_addr) = (node.http_addr.clone(), node.raft_addr.clone());
    assert_ne!(http_addr, old.http_addr, "the restarted node got its old HTTP port again");
    assert_ne!(raft_addr, old.raft_addr, "the restarted node got its old Raft port again");

    wait_for("every node's membership to name the new addresses", Duration::from_secs(30), || async {
        for node in cluster.nodes.values() {
            let nodes = node.client.nodes().await.ok()?;
            let member = nodes.nodes.iter().find(|n| n.id == moved)?;
            if member.http_addr != http_addr || member.raft_addr != raft_addr || member.role != "voter" {
                return None;
            }
        }
        Some(())
    })
    .await;

    // It catches up with what was written while it was down, and a write
    // through it commits.
    cluster.converged_events(6).await;
    let resp = cluster.client(moved).post_event(&event(6)).await.expect("POST /events through the moved node");
    assert_eq!(resp.status, 200, "{}", resp.body);
    cluster.converged_events(7).await;

    // No election: the leader and its term are the ones from before.
    assert_eq!(cluster.leader().await, leader, "leadership changed");
    for id in cluster.ids() {
        let status = cluster.client(id).status().await.expect("GET /status");
        assert_eq!(status.current_term, term, "node {id} is in another term: elections happened");
    }
}

/// Moves the cluster must refuse: onto another member's address (Raft would
/// send one member's traffic to the other), or without the member's
/// incarnation (anyone could redirect a member). Neither changes the
/// membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_onto_another_members_address_or_without_the_incarnation_is_refused() {
    let cluster = TestCluster::start("moved-refused", 3).await;
    let node_json = cluster.data_dir_of(3).join("node.json");
    let node_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&node_json).expect("read node.json")).expect("node.json is JSON");
    let incarnation = node_json["incarnation"].as_str().expect("node.json names the incarnation").to_string();
    let (node2, node3) = (cluster.node(2), cluster.node(3));
    let leader = cluster.client(1).clone();
    let post = |body: serde_json::Value| {
        let leader = leader.clone();
        async move {
            let body = serde_json::to_vec(&body).expect("a JSON body");
            leader.post_raw("/nodes", "application/json", body).await.expect("POST /nodes")
        }
    };

    let onto_node2 = serde_json::json!({
        "id": 3, "raft_addr": node2.raft_addr, "http_addr": "127.0.0.1:1", "incarnation": incarnation,
    });
    let resp = post(onto_node2).await;
    assert_eq!((resp.status, resp.body["error"].as_str()), (409, Some("address_conflict")), "{}", resp.body);

    let without_incarnation = serde_json::json!({ "id": 3, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2" });
    let resp = post(without_incarnation).await;
    assert_eq!((resp.status, resp.body["error"].as_str()), (409, Some("address_conflict")), "{}", resp.body);

    let nodes = cluster.client(1).nodes().await.expect("GET /nodes");
    let member = nodes.nodes.iter().find(|n| n.id == 3).expect("node 3 is a member");
    assert_eq!((&member.raft_addr, &member.http_addr), (&node3.raft_addr, &node3.http_addr));
}

/// A one-node cluster moved: the node is its own leader, so it updates its
/// addresses itself, without waiting on anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_restarted_at_new_addresses_updates_its_own_membership() {
    let mut cluster = TestCluster::start("moved-alone", 1).await;
    let resp = cluster.client(1).post_event(&event(0)).await.expect("POST /events");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let old = cluster.kill(1).await;

    let node = cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    let (http_addr, raft_addr) = (node.http_addr.clone(), node.raft_addr.clone());
    assert_ne!(http_addr, old.http_addr, "the restarted node got its old HTTP port again");
    wait_for("the node's membership to name its new addresses", Duration::from_secs(30), || async {
        let nodes = cluster.client(1).nodes().await.ok()?;
        let member = nodes.nodes.iter().find(|n| n.id == 1)?;
        (member.http_addr == http_addr && member.raft_addr == raft_addr && nodes.leader == Some(1)).then_some(())
    })
    .await;
    let resp = cluster.client(1).post_event(&event(1)).await.expect("POST /events");
    assert_eq!(resp.status, 200, "{}", resp.body);
    cluster.converged_events(2).await;
}
