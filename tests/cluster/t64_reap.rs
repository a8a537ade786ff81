//! Identical nodes formed with `--reap-after-ms`: a node that dies with its
//! disk is replaced by a fresh node with the same formation flags, which
//! joins, and the leader removes the dead member, so the cluster is back at
//! 3 voters. With `--reap-min-voters 3`, a 3-voter cluster never removes a
//! dead voter by itself.

use std::time::{Duration, Instant};

use gameraft::api::PositionedEvent;

use crate::harness::{event, free_bases, post_with_id, tag_of, wait_for, TestCluster};

const REAP_AFTER: Duration = Duration::from_secs(2);

/// A 3-voter cluster formed by identical nodes with `--peers`,
/// `--bootstrap-expect 3`, `--reap-after-ms` and `extra`; returns it and the
/// ports of a fourth node (not in the peer list, as a replacement task's
/// new address is not).
async fn formed(test: &str, extra: &[&str]) -> (TestCluster, String, String) {
    let (http, raft) = free_bases(4);
    let peers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", http + i)).collect();
    let peers_arg = format!("--peers={}", peers.join(","));
    let reap_arg = format!("--reap-after-ms={}", REAP_AFTER.as_millis());
    let args = [&[peers_arg.as_str(), "--bootstrap-expect=3", reap_arg.as_str()][..], extra].concat();
    let mut cluster = TestCluster::empty(test, &args);
    for id in 1..=3u16 {
        let (http_addr, raft_addr) = (format!("127.0.0.1:{}", http + id - 1), format!("127.0.0.1:{}", raft + id - 1));
        cluster.spawn_forming(u64::from(id), &http_addr, &raft_addr).await;
    }
    cluster.wait_for_voters(3).await;
    (cluster, format!("127.0.0.1:{}", http + 3), format!("127.0.0.1:{}", raft + 3))
}

/// Writes `tag` under request id `req-<tag>` through any running node until
/// one answers 200: a retry with the same id is never appended twice.
async fn write(cluster: &TestCluster, tag: u64) {
    write_via(cluster, &cluster.ids(), tag).await;
}

/// [`write`] through the nodes `via` only (not a paused one, whose answer
/// would never come).
async fn write_via(cluster: &TestCluster, via: &[u64], tag: u64) {
    let id = format!("req-{tag}");
    wait_for(&format!("write {id} to commit"), Duration::from_secs(30), || async {
        for node in via {
            if let Ok(resp) = post_with_id(cluster.client(*node), &event(tag), &id).await {
                if resp.status == 200 {
                    return Some(());
                }
            }
        }
        None
    })
    .await;
}

/// Waits until every live node's `GET /nodes` lists exactly the voters
/// `expected` and no other member; returns how long that took.
async fn wait_for_members(cluster: &TestCluster, expected: &[u64], limit: Duration) -> Duration {
    let started = Instant::now();
    wait_for(&format!("every node's membership to be the voters {expected:?}"), limit, || async {
        for node in cluster.nodes.values() {
            let nodes = node.client.nodes().await.ok()?;
            let voters: Vec<u64> = nodes.nodes.iter().filter(|n| n.role == "voter").map(|n| n.id).collect();
            if voters != expected || nodes.nodes.len() != expected.len() || nodes.leader.is_none() {
                return None;
            }
        }
        Some(())
    })
    .await;
    started.elapsed()
}

/// Every node's log is the same, through request `barrier`, and holds each
/// tag in `tags` exactly once, under its request id.
async fn assert_same_log_with(cluster: &TestCluster, tags: std::ops::Range<u64>, barrier: u64) {
    let log = cluster.converged_log_through(&format!("req-{barrier}"), Duration::from_secs(30)).await;
    for tag in tags {
        let copies: Vec<&PositionedEvent> = log.iter().filter(|e| tag_of(&e.event) == tag).collect();
        assert_eq!(copies.len(), 1, "tag {tag} is in the log {} times", copies.len());
        assert_eq!(copies[0].request_id.as_deref(), Some(format!("req-{tag}").as_str()));
    }
}

/// How many times the nodes' logs say a member was reaped.
fn reaps_logged(cluster: &TestCluster, ids: &[u64]) -> usize {
    ids.iter()
        .map(|id| std::fs::read_to_string(cluster.log_path(*id)).unwrap_or_default())
        .map(|log| log.matches("reaped an unreachable member").count())
        .sum()
}

/// Kills `victim` with its disk, writes meanwhile, starts a fresh node 4
/// with the same formation flags, and checks the cluster ends as 3 voters
/// without `victim`, every write on every node once, and writable.
async fn replace(mut cluster: TestCluster, victim: u64, new_http: &str, new_raft: &str) {
    for tag in 0..5 {
        write(&cluster, tag).await;
    }
    cluster.kill(victim).await;
    cluster.wipe_data(victim);
    let killed = Instant::now();
    for tag in 5..10 {
        write(&cluster, tag).await;
    }
    cluster.spawn_forming(4, new_http, new_raft).await;
    for tag in 10..15 {
        write(&cluster, tag).await;
    }
    let mut expected: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != victim).collect();
    expected.sort();
    wait_for_members(&cluster, &expected, Duration::from_secs(60)).await;
    eprintln!("node {victim} killed; 3 voters with node 4 and without it after {:?}", killed.elapsed());
    assert_same_log_with(&cluster, 0..15, 14).await;
    write(&cluster, 15).await;
    assert_same_log_with(&cluster, 0..16, 15).await;
    assert_eq!(reaps_logged(&cluster, &[1, 2, 3, 4]), 1, "one reap, logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_lost_with_its_disk_is_replaced_by_a_fresh_node_and_reaped() {
    // Room for the replacement beside the dead voter: 4 members, briefly.
    let (cluster, new_http, new_raft) = formed("reap_follower", &["--max-members=4"]).await;
    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    replace(cluster, victim, &new_http, &new_raft).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_lost_with_its_disk_is_reaped_by_the_next_leader() {
    let (cluster, new_http, new_raft) = formed("reap_leader", &[]).await;
    let leader = cluster.leader().await;
    replace(cluster, leader, &new_http, &new_raft).await;
}

/// With a minimum of 2 voters the dead one goes first (3 -> 2 voters), and
/// the replacement then joins (-> 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_minimum_of_2_the_dead_voter_is_reaped_before_the_replacement_joins() {
    let (mut cluster, new_http, new_raft) = formed("reap_first", &["--reap-min-voters=2"]).await;
    write(&cluster, 0).await;
    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.kill(victim).await;
    cluster.wipe_data(victim);
    let remaining: Vec<u64> = cluster.ids();
    let took = wait_for_members(&cluster, &remaining, Duration::from_secs(30)).await;
    // The leader's last contact may precede the kill by up to one probe
    // interval (a second).
    let earliest = REAP_AFTER - Duration::from_secs(1);
    assert!(took >= earliest, "node {victim} was removed {took:?} after its death, before --reap-after-ms");
    write(&cluster, 1).await;
    cluster.spawn_forming(4, &new_http, &new_raft).await;
    let mut expected = remaining.clone();
    expected.push(4);
    wait_for_members(&cluster, &expected, Duration::from_secs(60)).await;
    write(&cluster, 2).await;
    assert_same_log_with(&cluster, 0..3, 2).await;
}

/// With `--reap-min-voters 3`, a 3-voter cluster keeps a dead voter: it
/// would leave 2. Watched for three times `--reap-after-ms` (the one place
/// where a bounded wait is the assertion), and the leader says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_voter_cluster_with_a_minimum_of_3_never_reaps_a_dead_voter() {
    let (mut cluster, _, _) = formed("reap_never", &["--reap-min-voters=3"]).await;
    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.kill(victim).await;
    let watched = Instant::now();
    while watched.elapsed() < REAP_AFTER * 3 + Duration::from_secs(1) {
        for node in cluster.nodes.values() {
            let nodes = node.client.nodes().await.expect("GET /nodes");
            let voters: Vec<u64> = nodes.nodes.iter().filter(|n| n.role == "voter").map(|n| n.id).collect();
            assert_eq!(voters, [1, 2, 3], "node {}'s membership, {:?} after the kill", node.id, watched.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader_log = std::fs::read_to_string(cluster.log_path(leader)).expect("leader's log");
    assert!(leader_log.contains("unreachable member kept"), "the leader says why it keeps node {victim}");
    assert_eq!(reaps_logged(&cluster, &[1, 2, 3]), 0);
    write(&cluster, 0).await;
}

/// The risk of reaping: a live node cut off for longer than
/// `--reap-after-ms` (here paused with SIGSTOP: its kernel still accepts
/// connections, its process answers nothing) is removed like a dead one.
/// Resumed, it is outside the cluster and not ready. It comes back with an empty data directory, joining
/// anew with the same formation flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_reaped_and_comes_back_with_an_empty_data_directory() {
    let (mut cluster, _, _) = formed("reap_paused", &["--reap-min-voters=2"]).await;
    write(&cluster, 0).await;
    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.pause(victim);
    let members: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != victim).collect();
    wait_for(&format!("node {victim} to be reaped while paused"), Duration::from_secs(30), || async {
        for id in &members {
            let nodes = cluster.client(*id).nodes().await.ok()?;
            if nodes.nodes.iter().any(|n| n.id == victim) {
                return None;
            }
        }
        Some(())
    })
    .await;
    write_via(&cluster, &members, 1).await;
    let term = cluster.client(leader).status().await.expect("GET /status").current_term;

    // The cut lasts a while longer (a fault schedule, not a wait for
    // anything): the leader's replication to it has ended by then.
    tokio::time::sleep(REAP_AFTER).await;
    cluster.resume(victim);
    wait_for(
        &format!("node {victim}, resumed outside the cluster, not to be ready"),
        Duration::from_secs(30),
        || async {
            let ready = cluster.client(victim).get("/ready").await.ok()?;
            (ready.status == 503).then_some(())
        },
    )
    .await;
    write(&cluster, 2).await;
    // It stays out, and the members keep their leader and term: its
    // campaigns, with a shorter log, are refused.
    for id in &members {
        let status = cluster.client(*id).status().await.expect("GET /status");
        let seen = (status.current_leader, status.current_term);
        assert_eq!(seen, (Some(leader), term), "node {id}: the reaped node disturbed the members");
    }
    for id in &members {
        let nodes = cluster.client(*id).nodes().await.expect("GET /nodes");
        let ids: Vec<u64> = nodes.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, members, "node {id}'s membership after node {victim} resumed");
        assert!(nodes.leader.is_some_and(|l| members.contains(&l)), "node {id} follows {:?}", nodes.leader);
    }

    // Back with an empty data directory: it joins as a new member.
    let old = cluster.kill(victim).await;
    cluster.wipe_data(victim);
    cluster.spawn_forming(victim, &old.http_addr, &old.raft_addr).await;
    wait_for_members(&cluster, &[1, 2, 3], Duration::from_secs(60)).await;
    write(&cluster, 3).await;
    assert_same_log_with(&cluster, 0..4, 3).await;
}
