//! A deposed leader's pending writes are answered, even when a snapshot
//! replaces the entries that carried them.
//!
//! A leader cut off from the others keeps accepting writes: it appends them
//! and waits for a quorum that never comes. The others elect a new leader,
//! write on, and compact their logs past everything the old leader holds,
//! so when it is back they send it a snapshot. OpenRaft 0.9.25 answers a
//! pending write when its entry is applied or truncated, but entries that a
//! snapshot replaces are purged instead, and their writers were never
//! answered: each held a slot of the node's write batcher for good (the
//! HTTP request itself is answered: the API notices the lost leadership and
//! retries elsewhere), and once both slots were held the node could not
//! write at all when it led again. Patched (upstream #1762): a purge answers them `ForwardToLeader`,
//! and the API retries the write on the new leader with its request id.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::harness::{event, tag_of, wait_for, TestCluster};
use crate::recorder::{Naming, Recorder};

#[tokio::test(flavor = "multi_thread")]
async fn writes_pending_on_a_leader_whose_entries_a_snapshot_replaced_are_answered() {
    const TEST: &str = "stranded-writes";
    let fault_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stranded-writes-fault");
    let _ = std::fs::remove_dir_all(&fault_dir);
    std::fs::create_dir_all(&fault_dir).expect("create the fault directory");
    let delay_file = |id: u64| fault_dir.join(format!("peer-delay-{id}"));
    // A long write timeout (and a window that covers its retries), so that
    // an unanswered write is still pending when the test looks.
    let mut cluster = TestCluster::empty(
        TEST,
        &[
            "--snapshot-after-logs",
            "20",
            "--logs-kept-after-snapshot",
            "0",
            "--write-timeout-ms",
            "25000",
            "--request-id-window-secs",
            "600",
        ],
    );
    // Each node its own peer-delay file: the last value of a variable wins.
    for id in 1..=3 {
        cluster = cluster.with_env("GAMERAFT_FAULT_PEER_DELAY_FILE", delay_file(id).to_str().expect("UTF-8"));
        let join = (id > 1).then(|| format!("http://{}", cluster.node(1).http_addr));
        cluster.spawn(id, join, "127.0.0.1:0", "127.0.0.1:0").await;
    }
    cluster.wait_for_voters(3).await;
    assert_eq!(cluster.leader().await, 1, "the bootstrap node leads");
    let history = Recorder::new(Naming::Tag);
    for tag in 0..5 {
        assert_eq!(history.post_tagged(1, cluster.client(1), tag).await.expect("write").status, 200);
    }

    eprintln!("--- node 1 is cut off both ways; writes to it are appended there and wait");
    std::fs::write(delay_file(1), "60000").expect("write the delay file");
    for id in [2, 3] {
        std::fs::write(delay_file(id), "60000 0 1").expect("write the delay file");
    }
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    let mut stuck_since = None;
    let mut tag = 100;
    // Writes the cut catches wait; earlier ones commit at once.
    while stuck_since.is_none_or(|since: Instant| since.elapsed() < Duration::from_millis(1000)) {
        assert!(started.elapsed() < Duration::from_secs(20), "no write to node 1 ever waited");
        let (client, history) = (cluster.client(1).clone(), history.clone());
        pending.spawn(async move { (tag, history.post_tagged(1, &client, tag).await.map(|resp| resp.status)) });
        tag += 1;
        tokio::select! {
            Some(done) = pending.join_next() => {
                let (tag, status) = done.expect("writer task");
                assert_eq!(status.ok(), Some(200), "write {tag} before the cut took effect");
            }
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                stuck_since.get_or_insert_with(Instant::now);
            }
        }
    }

    eprintln!("--- the others elect a leader and compact past node 1's log");
    let new_leader = wait_for("a new leader among nodes 2 and 3", Duration::from_secs(30), || async {
        let status = cluster.client(2).status().await.ok()?;
        status.current_leader.filter(|leader| *leader != 1)
    })
    .await;
    for tag in 1000..1060 {
        assert_eq!(history.post_tagged(new_leader, cluster.client(new_leader), tag).await.expect("write").status, 200);
    }

    eprintln!("--- the cut heals: node 1 is sent a snapshot, and its pending writes are answered");
    for id in 1..=3 {
        std::fs::remove_file(delay_file(id)).expect("remove the delay file");
    }
    let healed = Instant::now();
    let mut stranded = Vec::new();
    while !pending.is_empty() {
        match tokio::time::timeout(Duration::from_secs(15), pending.join_next()).await {
            Ok(Some(done)) => {
                let (tag, status) = done.expect("writer task");
                assert_eq!(status.ok(), Some(200), "pending write {tag} was not retried on the new leader");
                stranded.push(tag);
            }
            Ok(None) => break,
            Err(_) => panic!("{} writes to node 1 still unanswered 15 s after the cut healed", pending.len()),
        }
    }
    eprintln!("{} pending writes answered {:?} after the cut healed", stranded.len(), healed.elapsed());

    eprintln!("--- each answered write is in the log once, where it was told, on every node");
    let barrier = 2000;
    assert_eq!(history.post_tagged(1, cluster.client(1), barrier).await.expect("write").status, 200);
    let logs = cluster.converged_logs("the barrier", Duration::from_secs(30), |e| tag_of(&e.event) == barrier).await;
    history.check(&logs);

    let survivor = if new_leader == 2 { 3 } else { 2 };
    eprintln!(
        "--- node 1 leads again (node {new_leader} killed, node {survivor}'s messages stalled): its writes go through"
    );
    std::fs::write(delay_file(survivor), "60000").expect("write the delay file");
    drop(cluster.kill(new_leader).await);
    wait_for("node 1 to lead again", Duration::from_secs(30), || async {
        cluster.client(1).status().await.ok()?.is_leader.then_some(())
    })
    .await;
    let write = tokio::time::timeout(Duration::from_secs(10), cluster.client(1).post_event(&event(3000))).await;
    let status = write.map(|resp| resp.expect("write").status);
    assert_eq!(
        status.ok(),
        Some(200),
        "node 1 leads but cannot write: its write batcher is still waiting on stranded entries"
    );
}
