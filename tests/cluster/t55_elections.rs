//! Elections converge and are not delayed for nothing: every campaign waits
//! a freshly drawn timeout, and a node that lost a vote against a greater log
//! campaigns at the normal time once it has caught up.
//!
//! Both tests turn the leader probe off (`--leader-probe-ms 0`) so that only
//! Raft's own timers start elections, and watch a node's term: with its peers
//! gone or stopped, a node's term changes only when it campaigns.

use std::time::Duration;

use gameraft::client::Client;
use nix::sys::signal::{kill, Signal};
use tokio::time::Instant;

use crate::harness::{event, wait_for, TestCluster};

/// Polls `client`'s term until it moves past `term`; returns the new term
/// and when it was first seen.
async fn next_term(client: &Client, term: u64, limit: Duration) -> (u64, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) = client.status().await {
            if status.current_term > term {
                return (status.current_term, Instant::now());
            }
        }
        assert!(Instant::now() < deadline, "term did not move past {term} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A lone voter (its two peers killed) campaigns again and again; the waits
/// between its campaigns must vary across the election-timeout range. With
/// one timeout drawn per process they are all the same, and two survivors
/// whose draws collide split every vote.
#[tokio::test(flavor = "multi_thread")]
async fn each_campaign_waits_a_freshly_drawn_timeout() {
    let timers = ["--heartbeat-ms", "50", "--election-timeout-min-ms", "100", "--election-timeout-max-ms", "2000"];
    let mut cluster =
        TestCluster::start_with("elect-resample", 3, &[&timers[..], &["--leader-probe-ms", "0"]].concat()).await;
    assert_eq!(cluster.client(1).post_event(&event(0)).await.unwrap().status, 200);
    let leader = cluster.leader().await;
    let lone = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    for id in cluster.ids().into_iter().filter(|id| *id != lone) {
        cluster.kill(id).await;
    }

    eprintln!("--- node {lone} is alone: record when each of its campaigns starts");
    let client = cluster.client(lone).clone();
    let mut term = client.status().await.expect("status").current_term;
    let mut starts = Vec::new();
    for _ in 0..12 {
        let (next, at) = next_term(&client, term, Duration::from_secs(10)).await;
        assert_eq!(next, term + 1, "a lone node's term moves by its own campaigns only");
        term = next;
        starts.push(at);
    }
    // The first wait includes the lease of the dead leader; the others are a
    // candidate's election timeout alone.
    let waits: Vec<Duration> = starts.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    let spread = *waits.iter().max().expect("waits") - *waits.iter().min().expect("waits");
    eprintln!("waits between campaigns: {waits:?} (spread {spread:?})");
    // A candidate's retry waits OpenRaft's timeout, 51..1000 ms here (see
    // `RaftTimings::to_openraft`). Ten draws fall within 225 ms of each other with
    // probability below 1e-4; one reused draw varies only by scheduling noise.
    assert!(spread > Duration::from_millis(225), "every campaign waited the same timeout: {waits:?}");
}

/// A node that was stopped while the others committed entries campaigns on
/// resuming and is refused by a peer with a greater log; it then follows the
/// new leader and catches up. When that leader dies, its next campaign comes
/// after the lease and one election timeout, not after an extra
/// 2 x election_timeout_max for a log it no longer lacks.
#[tokio::test(flavor = "multi_thread")]
async fn caught_up_node_is_not_delayed_by_a_greater_log_seen_earlier() {
    // OpenRaft gets a 1.1 s lease and 1.0-1.1 s timeouts (a campaign 2.1-2.2 s
    // after the last heartbeat); the old penalty would add 2 x 1.1 s.
    let timers = ["--heartbeat-ms", "200", "--election-timeout-min-ms", "2100", "--election-timeout-max-ms", "2200"];
    let mut cluster =
        TestCluster::start_with("elect-greater-log", 3, &[&timers[..], &["--leader-probe-ms", "0"]].concat()).await;
    assert_eq!(cluster.client(1).post_event(&event(0)).await.unwrap().status, 200);
    let old_leader = cluster.leader().await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old_leader).collect();
    let (behind, ahead) = (followers[0], followers[1]);

    eprintln!("--- stop node {behind}; the others commit entries it lacks for 2.5 s");
    kill(cluster.node(behind).pid(), Signal::SIGSTOP).expect("SIGSTOP");
    let stopped_at = Instant::now();
    let mut tag = 1;
    while stopped_at.elapsed() < Duration::from_millis(2500) {
        assert_eq!(cluster.client(old_leader).post_event(&event(tag)).await.unwrap().status, 200);
        tag += 1;
    }

    eprintln!("--- stop the leader {old_leader}, resume {behind}: it campaigns at once and {ahead} refuses it");
    kill(cluster.node(old_leader).pid(), Signal::SIGSTOP).expect("SIGSTOP");
    kill(cluster.node(behind).pid(), Signal::SIGCONT).expect("SIGCONT");

    eprintln!("--- {ahead} wins; {behind} follows it and holds every entry, including a new one");
    let (behind_client, ahead_client) = (cluster.client(behind).clone(), cluster.client(ahead).clone());
    wait_for(&format!("node {ahead} to lead"), Duration::from_secs(30), || async {
        ahead_client.status().await.ok().filter(|s| s.is_leader).map(|_| ())
    })
    .await;
    assert_eq!(ahead_client.post_event(&event(tag)).await.unwrap().status, 200);
    let events = tag + 1;
    wait_for(&format!("node {behind} to hold all {events} events"), Duration::from_secs(30), || async {
        let status = behind_client.status().await.ok()?;
        (status.current_leader == Some(ahead) && status.event_count == events).then_some(())
    })
    .await;

    eprintln!("--- kill {ahead}: time until {behind} campaigns");
    let term = behind_client.status().await.expect("status").current_term;
    cluster.kill(ahead).await;
    let killed_at = Instant::now();
    let (_, campaigned_at) = next_term(&behind_client, term, Duration::from_secs(15)).await;
    let wait = campaigned_at - killed_at;
    eprintln!("node {behind} campaigned {wait:?} after its leader was killed");
    // lease + timeout is at most 2.2 s (+ one 300 ms tick); the penalty
    // would make it at least 1.1 + 1.0 + 2.2 - 0.2 (heartbeat) = 4.1 s.
    assert!(wait < Duration::from_millis(3200), "campaign delayed by a greater log already caught up: {wait:?}");
}
