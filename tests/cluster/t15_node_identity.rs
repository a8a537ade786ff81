//! A node is its data directory: a node that lost it and comes back under
//! its old id must not vote or lead as the member it was, and a node with
//! no state never starts a cluster unless told to.

use std::time::Duration;

use tokio::time::Instant;

use crate::harness::{event, tag_of, wait_for, TestCluster};

/// Short timers, so that the windows below span many election timeouts.
const FAST_TIMERS: &[&str] =
    &["--heartbeat-ms", "100", "--election-timeout-min-ms", "500", "--election-timeout-max-ms", "1000"];

/// An address nobody listens on: a join sent there never reaches the cluster.
const NOWHERE: &str = "http://127.0.0.1:9";

/// Three voters with the fast timers, holding events 0..5 written through
/// node `via`.
async fn three_nodes_holding_five_events(test: &str, via: u64) -> TestCluster {
    let cluster = TestCluster::start_with(test, 3, FAST_TIMERS).await;
    for tag in 0..5 {
        let resp = cluster.client(via).post_event(&event(tag)).await.expect("POST /events");
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    cluster.converged_events(5).await;
    cluster
}

/// Voters {L, A, B}; event e is committed on L and B while A is paused; B
/// loses its disk and restarts with the same id (its join does not reach
/// the cluster); L dies. A lacks e: if B's new, empty incarnation granted
/// it a vote, A would lead and e would be gone. A must not lead; once L is
/// back, e is on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_voter_with_its_old_id_cannot_help_elect_a_leader_that_lacks_committed_events() {
    let mut cluster = three_nodes_holding_five_events("identity-wiped-voter", 1).await;
    let leader = cluster.leader().await;
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let (lagging, wiped) = (others[0], others[1]);

    cluster.pause(lagging);
    let resp = cluster.client(leader).post_event(&event(100)).await.unwrap();
    assert_eq!(resp.status, 200, "e is committed by the leader and {wiped}: {}", resp.body);

    let old = cluster.kill(wiped).await;
    cluster.wipe_data(wiped);
    cluster.spawn(wiped, Some(NOWHERE.to_string()), &old.http_addr, &old.raft_addr).await;
    let dead_leader = cluster.kill(leader).await;
    cluster.resume(lagging);

    // Many election timeouts (0.5-1 s each) for the lagging node to try.
    let window = Instant::now() + Duration::from_secs(8);
    while Instant::now() < window {
        if let Ok(status) = cluster.client(lagging).status().await {
            assert!(
                !status.is_leader,
                "node {lagging}, which lacks a committed event, became leader in term {} \
                 with the vote of wiped node {wiped}",
                status.current_term
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.spawn(leader, None, &dead_leader.http_addr, &dead_leader.raft_addr).await;
    let join = format!("http://{}", cluster.node(leader).http_addr);
    cluster.kill(wiped).await;
    cluster.spawn(wiped, Some(join), &old.http_addr, &old.raft_addr).await;
    cluster.wait_for_voters(3).await;
    let events = cluster.converged_events(6).await;
    assert_eq!(events.iter().map(tag_of).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 100]);
}

/// The seed node loses its disk and is started again without `--join`:
/// it must refuse to start rather than found a second cluster under its old
/// id. Started with `--join`, it replaces its old self and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_seed_without_join_refuses_to_start_and_rejoins_with_join() {
    let mut cluster = three_nodes_holding_five_events("identity-wiped-seed", 2).await;
    let old = cluster.kill(1).await;
    cluster.wipe_data(1);

    let refused = cluster.serve_until_exit(1, &old.http_addr, &old.raft_addr, Duration::from_secs(20)).await;
    assert!(!refused.status.success(), "a wiped seed with neither --bootstrap nor --join must not run");
    assert!(
        refused.stderr.contains("--bootstrap") && refused.stderr.contains("--join"),
        "the refusal says what to do: {}",
        refused.stderr
    );
    assert!(!cluster.data_dir_of(1).join("raft-log").exists(), "the refused start left Raft state behind");

    let join = format!("http://{}", cluster.node(2).http_addr);
    cluster.spawn(1, Some(join), &old.http_addr, &old.raft_addr).await;
    cluster.wait_for_voters(3).await;
    let resp = cluster.client(1).post_event(&event(5)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let events = cluster.converged_events(6).await;
    assert_eq!(events.iter().map(tag_of).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
}

/// A wiped node restarted with `--bootstrap` founds a new cluster at the
/// old member's address. The two clusters refuse each other's RPCs: the
/// old members do not overwrite the new cluster's acknowledged event, and
/// the new one never receives the old cluster's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_refuse_each_others_peers() {
    let mut cluster = three_nodes_holding_five_events("identity-two-clusters", 1).await;
    let old = cluster.kill(3).await;
    cluster.wipe_data(3);
    let log_offset = cluster.log_len(3);
    cluster.spawn(3, None, &old.http_addr, &old.raft_addr).await;
    wait_for("node 3 to lead its own new cluster", Duration::from_secs(20), || async {
        let status = cluster.client(3).status().await.ok()?;
        status.is_leader.then_some(())
    })
    .await;
    let resp = cluster.client(3).post_event(&event(300)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);

    // The old cluster goes on with two of its three voters.
    let old_leader = wait_for("a leader among nodes 1 and 2", Duration::from_secs(20), || async {
        let status = cluster.client(1).status().await.ok()?;
        status.current_leader.filter(|id| *id != 3)
    })
    .await;
    let resp = cluster.client(old_leader).post_event(&event(5)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);

    // Several heartbeats of the old leader reach node 3's address.
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        let events = cluster.client(3).events().await.unwrap().events;
        assert_eq!(
            events.iter().map(tag_of).collect::<Vec<_>>(),
            vec![300],
            "node 3's new cluster took the old cluster's entries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cluster.log_since(3, log_offset);
    assert!(log.contains("another cluster"), "node 3 says why it refuses the old members:\n{log}");
}
