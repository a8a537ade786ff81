//! A follower that crashes in the middle of installing a snapshot starts
//! again and catches up.
//!
//! OpenRaft 0.9.25 asks the log store to purge up to a received snapshot as
//! soon as it queues the install; had the purge gone through, a crash before
//! the install finished would leave the log purged past the state machine,
//! and the node could never start again. The crash comes from the hidden
//! fault point `--fault-crash-in-install-file`: while the file exists, an
//! install aborts the process after the snapshot is written and validated,
//! before it is published.

use std::path::PathBuf;
use std::time::Duration;

use rand::seq::SliceRandom;

use crate::harness::{event, tag_of, TestCluster};

async fn write_tags(cluster: &TestCluster, node: u64, tags: std::ops::Range<u64>) -> u64 {
    let mut last_index = 0;
    for tag in tags {
        let resp = cluster.client(node).post_event(&event(tag)).await.expect("write");
        assert_eq!(resp.status, 200, "no fault injected on the writers, yet event {tag} failed: {}", resp.body);
        last_index = resp.body["log_index"].as_u64().expect("log_index");
    }
    last_index
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_killed_in_the_middle_of_a_snapshot_install_restarts_and_catches_up() {
    const TEST: &str = "snapshot-install-crash";
    let fault_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("snapshot-install-crash-fault");
    let _ = std::fs::remove_dir_all(&fault_dir);
    std::fs::create_dir_all(&fault_dir).expect("create the fault directory");
    let crash_file = fault_dir.join("crash-in-install");
    let crash_arg = crash_file.to_str().expect("a UTF-8 path");
    let mut cluster = TestCluster::start_with(
        TEST,
        3,
        &[
            "--snapshot-after-logs",
            "200",
            "--logs-kept-after-snapshot",
            "20",
            "--fault-crash-in-install-file",
            crash_arg,
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let victim_last_index = write_tags(&cluster, leader, 0..20).await;
    cluster.converged_events(20).await;

    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let victim = *followers.choose(&mut rand::thread_rng()).expect("a follower");
    eprintln!("--- follower {victim} stops; the others write on until their logs no longer hold what it lacks");
    let down = cluster.kill(victim).await;
    let mut next_tag = 20;
    while cluster.ids().iter().any(|&id| cluster.purged_index(id) <= victim_last_index) {
        write_tags(&cluster, leader, next_tag..next_tag + 100).await;
        next_tag += 100;
        assert!(next_tag < 5_000, "the survivors never purged their logs past what node {victim} holds");
    }
    let barrier = next_tag - 1;
    let before = cluster.converged_events_through(barrier, Duration::from_secs(30)).await;

    eprintln!("--- node {victim} restarts with the fault armed: it receives a snapshot and dies installing it");
    std::fs::write(&crash_file, b"").expect("arm the fault");
    let offset = cluster.log_len(victim);
    cluster.restart(&down).await;
    let (crashed, exit) = cluster.wait_exit(victim, Duration::from_secs(60)).await;
    assert!(!exit.success(), "node {victim} should have aborted, got {exit:?}");
    let log = cluster.log_since(victim, offset);
    assert!(
        log.contains("fault injected: crashing in the middle of a snapshot install"),
        "node {victim} exited, but not at the fault point:\n{log}"
    );

    eprintln!("--- the fault is disarmed: node {victim} must start again and catch up by snapshot");
    std::fs::remove_file(&crash_file).expect("disarm the fault");
    let offset = cluster.log_len(victim);
    cluster.restart(&crashed).await;
    let events = cluster.converged_events_through(barrier, Duration::from_secs(60)).await;
    assert_eq!(events, before, "node {victim} holds other events than its peers");
    let log = cluster.log_since(victim, offset);
    assert!(log.contains("installed snapshot"), "node {victim} caught up without installing a snapshot:\n{log}");

    // The node takes part again: a write through it reaches every node.
    let resp = cluster.client(victim).post_event(&event(next_tag)).await.expect("write through the restarted node");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let events = cluster.converged_events_through(next_tag, Duration::from_secs(30)).await;
    let tags: Vec<u64> = events.iter().map(tag_of).collect();
    assert_eq!(tags, (0..=next_tag).collect::<Vec<_>>(), "every event once, in order, on every node");
    for id in cluster.ids() {
        let log = cluster.log_since(id, 0);
        assert!(!log.contains("panicked"), "node {id} panicked; see {}", cluster.log_path(id).display());
    }
}
