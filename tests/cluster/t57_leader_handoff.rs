//! A leader stopped with SIGTERM hands its leadership to a caught-up
//! follower before it exits (`src/handoff.rs`), so a rolling restart costs
//! no election timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gameraft::proto::pb;
use gameraft::proto::pb::raft_service_client::RaftServiceClient;
use nix::sys::signal::{kill, Signal};
use tokio::time::Instant;

use crate::harness::{event, wait_for, TestCluster};
use crate::recorder::{Naming, Recorder};
use crate::t80_exactly_once::{live_clients, write_until_acked, Acked};

/// Writes one event at a time through node `via` for at least `load`: the
/// leader has then led for longer than its lease (OpenRaft's voters refuse
/// a candidate while their leader's lease runs; see `src/handoff.rs`).
async fn write_for(cluster: &TestCluster, via: u64, load: Duration) -> u64 {
    let start = Instant::now();
    let mut tag = 0;
    while start.elapsed() < load {
        let resp = cluster.client(via).post_event(&event(tag)).await.expect("post");
        assert_eq!(resp.status, 200, "{}", resp.body);
        tag += 1;
    }
    tag
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_the_leader_hands_leadership_over_within_half_a_second_and_exits_0() {
    let mut cluster = TestCluster::start("leader-handoff", 3).await;
    let written = write_for(&cluster, 1, Duration::from_secs(2)).await;
    let leader = cluster.leader().await;
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();

    eprintln!("--- SIGTERM leader {leader}: another node leads within 500 ms, and the old leader exits 0");
    kill(cluster.node(leader).pid(), Signal::SIGTERM).expect("SIGTERM the leader");
    let signalled = Instant::now();
    let new_leader = wait_for("another node to lead", Duration::from_secs(10), || async {
        for id in &others {
            let status = cluster.client(*id).status().await.ok()?;
            if let Some(new) = status.current_leader.filter(|new| *new != leader) {
                if status.node_id == new {
                    return Some(new);
                }
            }
        }
        None
    })
    .await;
    let handoff = signalled.elapsed();
    eprintln!("node {new_leader} leads {handoff:?} after the SIGTERM");
    assert!(handoff < Duration::from_millis(500), "the handoff took {handoff:?}");
    let (stopped, status) = cluster.wait_exit(leader, Duration::from_secs(15)).await;
    assert!(status.success(), "the old leader exited with {status}");
    let log = cluster.log_since(leader, 0);
    assert!(log.contains("handed leadership"), "the old leader's log does not say it handed over:\n{log}");

    eprintln!("--- writes go on; the old leader comes back on its data and holds every event");
    let resp = cluster.client(others[0]).post_event(&event(written)).await.expect("post");
    assert_eq!(resp.status, 200, "{}", resp.body);
    cluster.restart(&stopped).await;
    drop(stopped);
    cluster.wait_for_voters(3).await;
    cluster.converged_events(written as usize + 1).await;
}

/// TimeoutNow makes a follower campaign only when it comes from the leader
/// it follows, in the current term, and its log reaches the leader's last
/// index. (Without peer TLS any caller with the cluster's metadata can name
/// itself the leader, as for every peer RPC; with it, the certificate must
/// name the leader: `t18_peer_tls`.)
#[tokio::test(flavor = "multi_thread")]
async fn timeout_now_is_honoured_only_from_the_current_leader_in_its_term() {
    let cluster = TestCluster::start("timeout-now-refusals", 3).await;
    let leader = cluster.leader().await;
    let mut others = cluster.ids().into_iter().filter(|id| *id != leader);
    let (target, other) = (others.next().expect("a follower"), others.next().expect("another follower"));
    let before = cluster.client(target).status().await.expect("status");
    let node_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cluster.data_dir_of(target).join("node.json")).expect("the target's node.json"),
    )
    .expect("node.json");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.node(target).raft_addr))
        .expect("endpoint")
        .connect_lazy();
    let mut client = RaftServiceClient::new(channel);
    let term = before.current_term;
    let cases = [
        ("another follower", other, term, 0),
        ("the leader, in an older term", leader, term.saturating_sub(1), 0),
        ("the leader, in a later term", leader, term + 1, 0),
        ("the leader, with a longer log", leader, term, 1_000_000),
    ];
    for (sender, node_id, term, last_log_index) in cases {
        let mut request =
            tonic::Request::new(pb::TimeoutNowRequest { leader: Some(pb::LeaderId { term, node_id }), last_log_index });
        let field = |name: &str| node_json[name].as_str().expect(name).parse().expect("metadata value");
        request.metadata_mut().insert("gameraft-cluster-id", field("cluster_id"));
        request.metadata_mut().insert("gameraft-to-node", target.to_string().parse().expect("metadata value"));
        request.metadata_mut().insert("gameraft-to-incarnation", field("incarnation"));
        let status = client.timeout_now(request).await.expect_err(&format!("TimeoutNow from {sender} was honoured"));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{sender}: {status}");
    }
    let after = cluster.client(target).status().await.expect("status");
    assert_eq!((after.current_term, after.current_leader), (term, Some(leader)), "the follower campaigned");
}

/// On demand: a rolling restart (SIGTERM, wait for the exit, restart on the
/// same data directory and addresses, wait until it is a voter and caught
/// up) of each of 3 nodes under a steady load of writes with request ids,
/// retried on failure. Checks that no acknowledged write is lost or doubled
/// and prints the worst gap between acknowledged writes during each restart.
///
/// `cargo test --release --test cluster rolling_restart -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run on demand"]
async fn rolling_restart_under_load_measures_the_worst_write_gap() {
    const WRITERS: u32 = 4;
    let mut cluster = TestCluster::start("rolling-restart", 3).await;
    let history = Recorder::new(Naming::RequestId);
    let live = live_clients(&cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (live, stop, acks, history) = (live.clone(), stop.clone(), acks.clone(), history.clone());
            tokio::spawn(async move {
                let mut written: Vec<Acked> = Vec::new();
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("w{writer}-{n}");
                    let acked =
                        write_until_acked(&history, writer, &live, &id, u64::from(writer) * 1_000_000 + n).await;
                    acks.lock().expect("acks lock").push(Instant::now());
                    acked.record(&history);
                    written.push(acked);
                }
                written
            })
        })
        .collect();
    // The load runs a moment before the first restart.
    wait_for("writes before the first restart", Duration::from_secs(30), || async {
        (acks.lock().expect("acks lock").len() >= 100).then_some(())
    })
    .await;

    let mut gaps = Vec::new();
    for id in cluster.ids() {
        let leader = cluster.leader().await;
        let role = if id == leader { "leader" } else { "follower" };
        eprintln!("--- restart node {id} ({role})");
        let begin = Instant::now();
        live.write().expect("live nodes lock").remove(&id);
        kill(cluster.node(id).pid(), Signal::SIGTERM).expect("SIGTERM");
        let (stopped, status) = cluster.wait_exit(id, Duration::from_secs(15)).await;
        assert!(status.success(), "node {id} exited with {status}");
        let exited = begin.elapsed();
        cluster.restart(&stopped).await;
        drop(stopped);
        live.write().expect("live nodes lock").insert(id, cluster.client(id).clone());
        cluster.wait_for_voters(3).await;
        let target = cluster.client(cluster.leader().await).status().await.expect("status").event_count;
        let client = cluster.client(id).clone();
        wait_for("the restarted node to catch up", Duration::from_secs(30), || async {
            (client.status().await.ok()?.event_count >= target).then_some(())
        })
        .await;
        let end = Instant::now();
        let gap = worst_gap(&acks.lock().expect("acks lock"), begin, end);
        eprintln!(
            "node {id} ({role}): exited after {exited:?}, back and caught up after {:?}; worst gap {gap:?}",
            end - begin
        );
        gaps.push((id, role, gap));
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }

    let barrier = write_until_acked(&history, WRITERS, &live, "barrier", 9_000_000).await;
    barrier.record(&history);
    let logs = cluster
        .converged_logs("barrier", Duration::from_secs(30), |e| e.request_id.as_deref() == Some("barrier"))
        .await;
    history.check(&logs);
    let retried = written.iter().filter(|a| !a.failures.is_empty()).count();
    eprintln!("{} writes acknowledged, {retried} after a failed try", written.len());
    for (id, role, gap) in &gaps {
        eprintln!("rolling restart: node {id} ({role}): worst gap between acknowledged writes {gap:?}");
    }
    for (id, role, gap) in &gaps {
        assert!(*gap < Duration::from_secs(1), "restarting node {id} ({role}) stopped writes for {gap:?}");
    }
}

/// The longest time without an acknowledged write between `begin` and
/// `end`, counting from the last acknowledgement before `begin`.
fn worst_gap(acks: &[Instant], begin: Instant, end: Instant) -> Duration {
    let mut times: Vec<Instant> = acks.iter().copied().filter(|t| *t <= end).collect();
    times.sort();
    let first = times.iter().rposition(|t| *t <= begin).unwrap_or(0);
    let mut worst = Duration::ZERO;
    let mut previous = times.get(first).copied().unwrap_or(begin);
    for t in times.iter().skip(first + 1).copied().chain(std::iter::once(end)) {
        worst = worst.max(t - previous);
        previous = t;
    }
    worst
}
