//! Identical nodes, none told to found or to join, forming one cluster from
//! `--peers` and `--bootstrap-expect`, whatever their start order, on
//! loopback. The 20-round proofs, in network namespaces from the deployment
//! files, are in `t14_deploy_files`.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::harness::{event, free_bases, wait_for, TestCluster};

/// Starts 3 nodes in a random order, each after a random delay of up to
/// `max_delay` (a start schedule, not a wait), and checks they form one
/// 3-voter cluster that commits a write on every node.
async fn form_once(round: usize, max_delay: Duration) {
    let (http, raft) = free_bases(3);
    let peers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", http + i)).collect();
    let peers_arg = format!("--peers={}", peers.join(","));
    let mut cluster = TestCluster::empty(&format!("bootstrap_expect_{round}"), &[&peers_arg, "--bootstrap-expect=3"]);
    let mut order = [1u16, 2, 3];
    order.shuffle(&mut rand::thread_rng());
    for id in order {
        let delay = rand::thread_rng().gen_range(Duration::ZERO..=max_delay);
        tokio::time::sleep(delay).await;
        let (http_addr, raft_addr) = (format!("127.0.0.1:{}", http + id - 1), format!("127.0.0.1:{}", raft + id - 1));
        cluster.spawn_forming(u64::from(id), &http_addr, &raft_addr).await;
    }
    let leader = cluster.wait_for_voters(3).await;
    for id in cluster.ids() {
        let nodes = cluster.client(id).nodes().await.expect("nodes");
        let ids: Vec<u64> = nodes.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, [1, 2, 3], "round {round}, order {order:?}: node {id}'s membership");
    }
    let written = cluster.client(leader).post_event(&event(round as u64)).await.expect("answered");
    assert_eq!(written.status, 200, "round {round}: {}", written.body);
    for id in cluster.ids() {
        wait_for(&format!("round {round}: the write on node {id}"), Duration::from_secs(10), || async {
            (cluster.client(id).events().await.ok()?.count == 1).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_nodes_started_in_any_order_form_one_cluster() {
    for round in 0..3 {
        form_once(round, Duration::from_millis(1500)).await;
    }
}

/// A node that finds the cluster already formed joins it instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_node_finds_the_formed_cluster_and_joins_it() {
    let (http, raft) = free_bases(4);
    let peers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", http + i)).collect();
    let peers_arg = format!("--peers={}", peers.join(","));
    let mut cluster = TestCluster::empty("bootstrap_expect_late", &[&peers_arg, "--bootstrap-expect=3"]);
    for id in 1..=3u16 {
        let (http_addr, raft_addr) = (format!("127.0.0.1:{}", http + id - 1), format!("127.0.0.1:{}", raft + id - 1));
        cluster.spawn_forming(u64::from(id), &http_addr, &raft_addr).await;
    }
    cluster.wait_for_voters(3).await;
    // A fourth node, its own address not in the list: it finds members of
    // a formed cluster that it is not a founder of, and joins.
    let (http_addr, raft_addr) = (format!("127.0.0.1:{}", http + 3), format!("127.0.0.1:{}", raft + 3));
    cluster.spawn_forming(4, &http_addr, &raft_addr).await;
    cluster.wait_for_voters(4).await;
}
