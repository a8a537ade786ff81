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
