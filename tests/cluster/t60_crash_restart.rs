//! Durability: nodes killed with SIGKILL (one follower, the leader, or all
//! three at once) come back from their data directories with every
//! acknowledged event, once, in the cluster's one order; a node down while
//! its peers purge their logs catches up by snapshot; and a restarted node
//! resumes whatever its flags say.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gameraft::api::PositionedEvent;
use gameraft::client::Client;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::harness::{event, tag_of, TestCluster};
use crate::recorder::{Naming, Recorder};

const ROUNDS: u64 = 5;
/// Concurrent client tasks of the crash tests' load.
const WRITERS: u64 = 4;
/// Tags of one round: writers take `round * ROUND_TAGS + writer * WRITER_TAGS + n`,
/// barriers `round * ROUND_TAGS + BARRIER_TAGS + n`.
const ROUND_TAGS: u64 = 100_000_000;
const WRITER_TAGS: u64 = 1_000_000;
const BARRIER_TAGS: u64 = 90_000_000;

/// A write that got no 200: it may have committed (at most once) or not.
#[derive(Debug)]
struct Unacked {
    tag: u64,
    node: u64,
    error: String,
    took: Duration,
}

#[derive(Debug, Default)]
struct Written {
    /// How many writes were answered 200.
    acked: u64,
    unacked: Vec<Unacked>,
    /// The longest an acknowledged write took.
    slowest_ack: Duration,
}

/// Client tasks posting distinct tagged events, each through a node picked
/// at random among the live ones, until stopped; every write goes into the
/// history. A write is never retried: a tag present twice would be the
/// cluster's doing.
struct Load {
    live: Arc<RwLock<BTreeMap<u64, Client>>>,
    stop: Arc<AtomicBool>,
    acked: watch::Receiver<u64>,
    writers: Vec<JoinHandle<Written>>,
}

impl Load {
    fn start(cluster: &TestCluster, history: &Recorder, writers: u64, first_tag: u64) -> Self {
        let live: BTreeMap<u64, Client> = cluster.nodes.iter().map(|(id, node)| (*id, node.client.clone())).collect();
        let live = Arc::new(RwLock::new(live));
        let stop = Arc::new(AtomicBool::new(false));
        let (acked_tx, acked) = watch::channel(0u64);
        let acked_tx = Arc::new(acked_tx);
        let writers = (0..writers)
            .map(|writer| {
                let (live, stop, acked_tx, history) = (live.clone(), stop.clone(), acked_tx.clone(), history.clone());
                tokio::spawn(async move {
                    let mut written = Written::default();
                    let mut tag = first_tag + writer * WRITER_TAGS;
                    while !stop.load(Ordering::Relaxed) {
                        let target = {
                            let live = live.read().expect("live nodes lock");
                            let ids: Vec<u64> = live.keys().copied().collect();
                            ids.choose(&mut rand::thread_rng()).map(|id| (*id, live[id].clone()))
                        };
                        let Some((node, client)) = target else {
                            // Every node is down: wait for one to be back.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        tag += 1;
                        let sent = Instant::now();
                        let outcome = history.post_tagged(node, &client, tag).await;
                        let took = sent.elapsed();
                        match outcome {
                            Ok(resp) if resp.status == 200 => {
                                written.acked += 1;
                                written.slowest_ack = written.slowest_ack.max(took);
                                acked_tx.send_modify(|n| *n += 1);
                            }
                            other => {
                                written.unacked.push(Unacked { tag, node, error: format!("{other:?}"), took });
                                // Back off: the node may be dead or leaderless.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    written
                })
            })
            .collect();
        Self { live, stop, acked, writers }
    }

    fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Waits until `count` writes of this load were acknowledged.
    async fn wait_acked(&mut self, count: u64, what: &str) {
        let limit = Duration::from_secs(30);
        tokio::time::timeout(limit, self.acked.wait_for(|acked| *acked >= count))
            .await
            .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {count} acknowledged writes ({what})"))
            .expect("writers alive");
    }

    /// Stops sending to node `id` (before it is killed).
    fn remove(&self, id: u64) {
        self.live.write().expect("live nodes lock").remove(&id);
    }

    fn add(&self, id: u64, client: Client) {
        self.live.write().expect("live nodes lock").insert(id, client);
    }

    async fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Written::default();
        for writer in self.writers {
            let written = writer.await.expect("writer task");
            all.acked += written.acked;
            all.unacked.extend(written.unacked);
            all.slowest_ack = all.slowest_ack.max(written.slowest_ack);
        }
        all
    }
}

/// Writes one event through the leader until one is acknowledged; returns
/// its tag. Every event of the cluster that was committed before it is
/// before it in the log, so once all nodes hold it they hold those too.
async fn write_barrier(cluster: &TestCluster, history: &Recorder, first_tag: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    for tag in first_tag.. {
        let leader = cluster.leader().await;
        match history.post_tagged(leader, cluster.client(leader), tag).await {
            Ok(resp) if resp.status == 200 => return tag,
            other => {
                assert!(Instant::now() < deadline, "no barrier write acknowledged in 30 s; last: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    unreachable!()
}

/// Every node's log once all hold the event tagged `barrier`, checked with
/// the history: nothing acknowledged is missing, nothing is there twice or
/// was never written, acknowledged events are in real-time and log-index
/// order, and every log read before (`incarnations` says which process of
/// each node this is) is still the start of it. The logs are then recorded
/// as reads, for the next check.
async fn check_logs_through(
    cluster: &TestCluster,
    history: &Recorder,
    incarnations: &HashMap<u64, u32>,
    barrier: u64,
    limit: Duration,
) -> Vec<PositionedEvent> {
    let read_from = history.now_ns();
    let logs = cluster.converged_logs(&format!("tag {barrier}"), limit, |e| tag_of(&e.event) == barrier).await;
    for (id, log) in &logs {
        history.read(*id, incarnations.get(id).copied().unwrap_or(0), read_from, log);
    }
    history.check(&logs);
    logs.into_iter().next().map(|(_, log)| log).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victims {
    AFollower,
    TheLeader,
    AllThree,
}

/// `ROUNDS` rounds on one 3-node cluster: start a load, SIGKILL the victims
/// after a random number of acknowledged writes, (for one victim) let the
/// survivors acknowledge more, restart the victims on their data
/// directories, let the load run on, stop it, and check every node.
async fn crash_and_restart_under_load(test: &str, victims: Victims) {
    let mut cluster = TestCluster::start(test, 3).await;
    let history = Recorder::new(Naming::Tag);
    let mut incarnations: HashMap<u64, u32> = HashMap::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let (kill_after, while_down, after_restart) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(1..=200), rng.gen_range(20..=150), rng.gen_range(20..=150))
        };
        let mut load = Load::start(&cluster, &history, WRITERS, round * ROUND_TAGS);
        load.wait_acked(kill_after, "before the kill").await;

        let leader = match victims {
            Victims::AllThree => None,
            _ => Some(cluster.leader().await),
        };
        let doomed: Vec<u64> = match victims {
            Victims::AFollower => {
                let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| Some(*id) != leader).collect();
                vec![*followers.choose(&mut rand::thread_rng()).expect("two followers")]
            }
            Victims::TheLeader => vec![leader.expect("a leader")],
            Victims::AllThree => cluster.ids(),
        };
        for id in &doomed {
            load.remove(*id);
        }
        let killed = match victims {
            Victims::AllThree => cluster.kill_all().await,
            _ => vec![cluster.kill(doomed[0]).await],
        };
        let acked_at_kill = load.acked();
        let killed_at = Instant::now();
        if victims != Victims::AllThree {
            // The two survivors are a majority: writes go on.
            load.wait_acked(acked_at_kill + while_down, "with a node down").await;
        }
        let acked_while_down = load.acked() - acked_at_kill;
        let down_time = killed_at.elapsed();

        let mut log_offsets = Vec::new();
        for node in &killed {
            log_offsets.push((node.id, cluster.log_len(node.id)));
            cluster.restart(node).await;
            *incarnations.entry(node.id).or_default() += 1;
            load.add(node.id, cluster.client(node.id).clone());
        }
        let restarted_at = Instant::now();
        load.wait_acked(load.acked() + after_restart, "after the restart").await;
        let restart_time = restarted_at.elapsed();
        let stopping_at = Instant::now();
        let written = load.stop().await;
        let stop_time = stopping_at.elapsed();

        let barrier = write_barrier(&cluster, &history, round * ROUND_TAGS + BARRIER_TAGS).await;
        let log = check_logs_through(&cluster, &history, &incarnations, barrier, Duration::from_secs(30)).await;
        let check_time = stopping_at.elapsed() - stop_time;
        let this_round: HashSet<u64> = written.unacked.iter().map(|u| u.tag).collect();
        let unacked_committed = log.iter().filter(|e| this_round.contains(&tag_of(&e.event))).count();

        for (id, offset) in log_offsets {
            let log = cluster.log_since(id, offset);
            assert!(
                log.contains("resuming with existing raft state"),
                "node {id} did not resume from its data:\n{log}"
            );
            assert!(!log.contains("panicked"), "node {id} panicked after its restart:\n{log}");
        }
        if victims == Victims::AFollower {
            // Only writes sent to the dying follower may fail: the leader
            // and the other follower never stopped.
            let elsewhere: Vec<&Unacked> = written.unacked.iter().filter(|u| u.node != doomed[0]).collect();
            assert!(
                elsewhere.is_empty(),
                "writes through live nodes failed while follower {} was down: {elsewhere:?}",
                doomed[0]
            );
        }
        eprintln!(
            "{test} round {round}: killed {doomed:?} (leader {leader:?}) after {kill_after} acks; \
             {acked_while_down} acked while down; {} acked, {} unacknowledged of which {unacked_committed} committed; \
             {} events on every node; {:.1?} (down {down_time:.1?}, after restart {restart_time:.1?}, \
             stopping load {stop_time:.1?}, barrier and convergence {check_time:.1?}; slowest ack {:.1?})",
            written.acked,
            written.unacked.len(),
            log.len(),
            started.elapsed(),
            written.slowest_ack,
        );
        for unacked in &written.unacked {
            eprintln!(
                "  unacknowledged: tag {} via node {} after {:.1?}: {:.200}",
                unacked.tag, unacked.node, unacked.took, unacked.error
            );
        }
    }
    assert_no_panics(&cluster);
}

fn assert_no_panics(cluster: &TestCluster) {
    for id in cluster.ids() {
        let log = cluster.log_since(id, 0);
        assert!(!log.contains("panicked"), "node {id} panicked; see {}", cluster.log_path(id).display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn follower_sigkilled_mid_load_restarts_and_catches_up_5_times() {
    crash_and_restart_under_load("durable-follower-kill", Victims::AFollower).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_sigkilled_mid_load_restarts_and_catches_up_5_times() {
    crash_and_restart_under_load("durable-leader-kill", Victims::TheLeader).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_three_sigkilled_at_once_mid_load_lose_no_acknowledged_event_5_times() {
    crash_and_restart_under_load("durable-all-kill", Victims::AllThree).await;
}

/// Posts `count` events tagged `first_tag..`, from `writers` concurrent
/// tasks each picking a random node of `clients` per write; every write
/// must be acknowledged, and goes into the history. Returns (tag, log_index)
/// of each.
async fn write_all(
    history: &Recorder,
    clients: Vec<(u64, Client)>,
    first_tag: u64,
    count: u64,
    writers: u64,
) -> Vec<(u64, u64)> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (clients, next, history) = (clients.clone(), next.clone(), history.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return acked;
                    }
                    let tag = first_tag + n;
                    let (node, client) = clients.choose(&mut rand::thread_rng()).expect("a node to write to");
                    let resp = history.post_tagged(*node, client, tag).await.expect("write");
                    assert_eq!(resp.status, 200, "no fault injected, yet event {tag} failed: {}", resp.body);
                    acked.push((tag, resp.body["log_index"].as_u64().expect("log_index")));
                }
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("writer task"));
    }
    acked
}

/// One run takes about 30 s on 2 cores (debug build), so the suite runs it
/// once; `snapshot_catch_up_5_times` repeats it.
#[tokio::test(flavor = "multi_thread")]
async fn node_down_during_20000_writes_catches_up_by_snapshot() {
    snapshot_catch_up("durable-snapshot-catch-up").await;
}

/// Run with `cargo nextest run --test cluster --run-ignored only snapshot_catch_up_5_times`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "about 3 minutes: the suite runs one repetition"]
async fn snapshot_catch_up_5_times() {
    for run in 0..5 {
        snapshot_catch_up(&format!("durable-snapshot-catch-up-{run}")).await;
    }
}

/// A 3-node cluster that snapshots every 500 entries and keeps 100: after a
/// random number of writes a follower is SIGKILLed, 20,000 more are written,
/// and the follower, restarted on its data directory, must catch up by
/// installing a snapshot.
async fn snapshot_catch_up(test: &str) {
    const WRITES: u64 = 20_000;
    const WRITERS: u64 = 32;
    let started = Instant::now();
    let mut cluster =
        TestCluster::start_with(test, 3, &["--snapshot-after-logs", "500", "--logs-kept-after-snapshot", "100"]).await;
    let before: u64 = rand::thread_rng().gen_range(1..=600);
    let history = Recorder::new(Naming::Tag);
    let clients = |cluster: &TestCluster| -> Vec<(u64, Client)> {
        cluster.ids().into_iter().map(|id| (id, cluster.client(id).clone())).collect()
    };
    let early = write_all(&history, clients(&cluster), 0, before, 8).await;
    let victim_last_index = early.iter().map(|(_, index)| *index).max().expect("early writes");
    cluster.converged_events(before as usize).await;

    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let victim = *followers.choose(&mut rand::thread_rng()).expect("a follower");
    let down = cluster.kill(victim).await;
    let write_started = Instant::now();
    let bulk = write_all(&history, clients(&cluster), 1_000_000, WRITES, WRITERS).await;
    let write_time = write_started.elapsed();
    let last_tag = bulk.iter().max_by_key(|(_, index)| *index).expect("bulk writes").0;

    // The survivors no longer hold the log entries the victim is missing:
    // only a snapshot can bring it up to date.
    for id in cluster.ids() {
        let purged = cluster.purged_index(id);
        assert!(
            purged > victim_last_index,
            "node {id} purged its log only up to {purged}; the victim's log ends at {victim_last_index}"
        );
    }

    let offset = cluster.log_len(victim);
    let restarted_at = Instant::now();
    cluster.restart(&down).await;
    let incarnations = HashMap::from([(victim, 1)]);
    let events = check_logs_through(&cluster, &history, &incarnations, last_tag, Duration::from_secs(60)).await;
    let catch_up = restarted_at.elapsed();
    assert_eq!(events.len() as u64, before + WRITES);
    let log = cluster.log_since(victim, offset);
    assert!(log.contains("resuming with existing raft state"), "node {victim} did not resume from its data:\n{log}");
    assert!(log.contains("installed snapshot"), "node {victim} caught up without installing a snapshot:\n{log}");
    let leader_log = cluster.log_since(leader, 0);
    assert!(leader_log.contains("built snapshot"), "leader {leader} never built a snapshot");

    // The caught-up node takes writes and stays in step.
    let resp =
        history.post_tagged(victim, cluster.client(victim), 9_999_999).await.expect("write through the caught-up node");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let events = check_logs_through(&cluster, &history, &incarnations, 9_999_999, Duration::from_secs(30)).await;
    assert_eq!(events.len() as u64, before + WRITES + 1);
    assert_no_panics(&cluster);
    eprintln!(
        "{test}: {before} writes, then {WRITES} by {WRITERS} clients in {write_time:.1?} with node {victim} down; it caught up \
         {catch_up:.1?} after restart; whole test {:.1?}",
        started.elapsed()
    );
}

/// (id, raft_addr, http_addr, role) of every member, as node `id` sees them.
async fn membership(cluster: &TestCluster, id: u64) -> Vec<(u64, String, String, String)> {
    let nodes = cluster.client(id).nodes().await.expect("GET /nodes");
    let mut members: Vec<_> = nodes.nodes.into_iter().map(|n| (n.id, n.raft_addr, n.http_addr, n.role)).collect();
    members.sort();
    members
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_nodes_resume_with_id_events_and_membership_whatever_their_join_flag() {
    let mut cluster = TestCluster::start("durable-resume", 3).await;
    for tag in 0..30u64 {
        let resp = cluster.client(tag % 3 + 1).post_event(&event(tag)).await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    let events_before = cluster.converged_events(30).await;
    let members_before = membership(&cluster, 1).await;
    assert_eq!(members_before.len(), 3);

    let offsets: Vec<u64> = (1..=3).map(|id| cluster.log_len(id)).collect();
    let killed = cluster.kill_all().await;
    let addrs: HashMap<u64, (String, String)> =
        killed.iter().map(|n| (n.id, (n.http_addr.clone(), n.raft_addr.clone()))).collect();
    // Node 1 bootstrapped the cluster: again with no --join it would
    // bootstrap again if it had forgotten. Node 2 gets a --join to node 1,
    // node 3 one to an address nobody listens on: a node that tried to join
    // would hang there. None gets --id: each must read it from its data.
    let joins = [(1, None), (2, Some(format!("http://{}", addrs[&1].0))), (3, Some("http://127.0.0.1:9".to_string()))];
    for (id, join) in joins {
        let (http, raft) = &addrs[&id];
        cluster.spawn_opts(id, false, join, http, raft).await;
    }
    cluster.wait_for_voters(3).await;
    for id in 1..=3u64 {
        let status = cluster.client(id).status().await.unwrap();
        assert_eq!(status.node_id, id);
        assert_eq!(membership(&cluster, id).await, members_before, "node {id}'s membership changed");
    }
    assert_eq!(cluster.converged_events(30).await, events_before);

    for tag in 30..40u64 {
        let resp = cluster.client(tag % 3 + 1).post_event(&event(tag)).await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    let events = cluster.converged_events(40).await;
    assert_eq!(events.iter().map(tag_of).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    for id in 1..=3u64 {
        let log = cluster.log_since(id, offsets[id as usize - 1]);
        assert!(log.contains("resuming with existing raft state"), "node {id} did not resume:\n{log}");
        for phrase in ["bootstrapping", "join", "fresh store"] {
            assert!(!log.contains(phrase), "node {id} logged {phrase:?} after its restart:\n{log}");
        }
    }
    assert_eq!(membership(&cluster, 2).await, members_before);
}
