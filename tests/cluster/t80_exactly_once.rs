//! Exactly-once writes with request ids: a write sent again under the same
//! id, to any node, after any failure, is in the log once, and every answer
//! names the log index it is at; the ids survive restarts and snapshots.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gameraft::api::PositionedEvent;
use gameraft::client::Client;
use gameraft::event::GameEvent;
use rand::seq::SliceRandom;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::harness::{event, post_with_id, TestCluster};
use crate::recorder::{Naming, Recorder, Write};

/// The answer that finally acknowledged a write.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) log_index: u64,
    pub(crate) duplicate: bool,
    /// Answers before it that were failures (timeouts, 503, 504, errors).
    pub(crate) failures: Vec<String>,
    /// The write from its first attempt to this answer, for the history.
    pub(crate) write: Write,
}

impl Acked {
    /// Puts the write into `history`: once per request id, so only the
    /// first write under an id, not a repeat sent later to test it.
    pub(crate) fn record(&self, history: &Recorder) {
        history.acked(self.write.clone(), self.log_index, self.duplicate);
    }
}

/// Posts the event tagged `tag` under `id` to a random node of `live`, and
/// again with the same id to another node after each failure, until a 200
/// (or 60 s). `history` times it, as `client`'s.
pub(crate) async fn write_until_acked(
    history: &Recorder,
    client: u32,
    live: &RwLock<BTreeMap<u64, Client>>,
    id: &str,
    tag: u64,
) -> Acked {
    let deadline = Instant::now() + Duration::from_secs(60);
    let event = &event(tag);
    let mut write = history.begin(client, id.to_string(), tag);
    let mut failures = Vec::new();
    let mut last_node = None;
    loop {
        let (node, client) = {
            let live = live.read().expect("live nodes lock");
            let others: Vec<u64> = live.keys().copied().filter(|id| Some(*id) != last_node).collect();
            let pick = others.choose(&mut rand::thread_rng()).or(last_node.as_ref()).copied().expect("a live node");
            (pick, live.get(&pick).cloned())
        };
        let Some(client) = client else {
            last_node = None;
            continue;
        };
        write.nodes.push(node);
        match post_with_id(&client, event, id).await {
            Ok(resp) if resp.status == 200 => {
                let log_index = resp.body["log_index"].as_u64().expect("a 200 carries its log_index");
                let duplicate = resp.body["duplicate"].as_bool().expect("an answer to a request id says duplicate");
                let expected = match duplicate {
                    true => format!("Duplicate of request {id}: event committed at log index {log_index}"),
                    false => format!("Event committed at log index {log_index}"),
                };
                assert_eq!(resp.body["message"], expected.as_str(), "{id}: {}", resp.body);
                return Acked { log_index, duplicate, failures, write };
            }
            Ok(resp) if [503, 504].contains(&resp.status) => {
                failures.push(format!("node {node}: {} {}", resp.status, resp.body["error"]))
            }
            Ok(resp) => panic!("{id}: node {node} answered {}: {}", resp.status, resp.body),
            Err(err) => failures.push(format!("node {node}: {err}")),
        }
        assert!(Instant::now() < deadline, "{id} not acknowledged in 60 s: {failures:?}");
        last_node = Some(node);
        // Pace the retries while the cluster elects a leader.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn live_clients(cluster: &TestCluster) -> Arc<RwLock<BTreeMap<u64, Client>>> {
    Arc::new(RwLock::new(cluster.nodes.iter().map(|(id, node)| (*id, node.client.clone())).collect()))
}

/// Request id -> the (position, log_index) of each entry carrying it.
fn by_request_id(log: &[PositionedEvent]) -> HashMap<&str, Vec<(u64, u64)>> {
    let mut ids: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for entry in log {
        let id = entry.request_id.as_deref().unwrap_or_else(|| panic!("entry without a request id: {entry:?}"));
        ids.entry(id).or_default().push((entry.position, entry.log_index));
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn one_id_sent_to_a_follower_and_the_leader_is_one_event() {
    let cluster = TestCluster::start("exactly-once-routes", 3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");

    eprintln!("--- the same id and event through a follower, then the leader");
    let first = post_with_id(cluster.client(follower), &event(1), "same-1").await.expect("post");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["duplicate"], false);
    let index = first.body["log_index"].as_u64().expect("log_index");
    let position = first.body["position"].as_u64().expect("position");
    let again = post_with_id(cluster.client(leader), &event(1), "same-1").await.expect("post");
    assert_eq!(
        again.body,
        serde_json::json!({
            "success": true,
            "message": format!("Duplicate of request same-1: event committed at log index {index}"),
            "log_index": index,
            "duplicate": true,
            "position": position,
        })
    );

    eprintln!("--- one write sent to every node at once: one of them appends it");
    let racers: Vec<_> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let client = cluster.client(id).clone();
            tokio::spawn(async move { post_with_id(&client, &event(10), "race-1").await.expect("post") })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        let resp = racer.await.expect("racer");
        assert_eq!(resp.status, 200, "{}", resp.body);
        answers.push((resp.body["log_index"].as_u64().expect("log_index"), resp.body["duplicate"] == true));
    }
    assert_eq!(answers.iter().filter(|(_, duplicate)| !duplicate).count(), 1, "exactly one appended: {answers:?}");
    assert!(answers.windows(2).all(|w| w[0].0 == w[1].0), "every answer names one log index: {answers:?}");

    let barrier = post_with_id(cluster.client(leader), &event(99), "barrier").await.expect("post");
    assert_eq!(barrier.status, 200, "{}", barrier.body);
    let log = cluster.converged_log_through("barrier", Duration::from_secs(30)).await;
    let ids = by_request_id(&log);
    assert_eq!(ids["same-1"], vec![(0, index)], "same-1 is in the log once, where its answers said");
    assert_eq!(ids["race-1"].len(), 1, "race-1 is in the log once: {:?}", ids["race-1"]);
    assert_eq!(ids["race-1"][0].1, answers[0].0);
    assert_eq!(log.len(), 3, "same-1, race-1 and the barrier: {log:?}");
    assert_eq!(log[0].event, event(1), "the first request's event is the one kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_retried_with_their_id_through_a_leader_kill_are_each_in_the_log_once() {
    const WRITERS: u64 = 8;
    const BEFORE_KILL: u64 = 150;
    const AFTER_KILL: u64 = 300;
    let mut cluster = TestCluster::start("exactly-once-leader-kill", 3).await;
    let history = Recorder::new(Naming::RequestId);
    let live = live_clients(&cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let (acked_tx, mut acked) = watch::channel(0u64);
    let acked_tx = Arc::new(acked_tx);

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (live, stop, acked_tx, history) = (live.clone(), stop.clone(), acked_tx.clone(), history.clone());
            tokio::spawn(async move {
                let mut written = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("w{writer}-{n}");
                    let acked = write_until_acked(&history, writer as u32, &live, &id, writer * 1_000_000 + n).await;
                    acked.record(&history);
                    written.push((id, acked));
                    acked_tx.send_modify(|count| *count += 1);
                }
                written
            })
        })
        .collect();

    let limit = Duration::from_secs(60);
    tokio::time::timeout(limit, acked.wait_for(|n| *n >= BEFORE_KILL))
        .await
        .expect("writes acknowledged before the kill")
        .expect("writers alive");
    let leader = cluster.leader().await;
    eprintln!("--- SIGKILL leader {leader} with {WRITERS} writers in flight");
    let killed = cluster.kill(leader).await;
    live.write().expect("live nodes lock").remove(&leader);
    let at_kill = *acked.borrow();
    tokio::time::timeout(limit, acked.wait_for(|n| *n >= at_kill + AFTER_KILL))
        .await
        .expect("writes acknowledged after the kill")
        .expect("writers alive");
    stop.store(true, Ordering::Relaxed);
    let mut written: Vec<(String, Acked)> = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }

    eprintln!("--- a barrier write, then every node's log");
    let barrier = write_until_acked(&history, WRITERS as u32, &live, "barrier-1", 9_000_000).await;
    barrier.record(&history);
    let logs = cluster.converged_logs("barrier-1", Duration::from_secs(30), |e| is_request(e, "barrier-1")).await;
    history.check(&logs);
    let log = logs[0].1.clone();
    assert_eq!(by_request_id(&log)["barrier-1"], vec![(log.len() as u64 - 1, barrier.log_index)]);

    let retried: Vec<&(String, Acked)> = written.iter().filter(|(_, a)| !a.failures.is_empty()).collect();
    let duplicates = written.iter().filter(|(_, a)| a.duplicate).count();
    eprintln!(
        "{} writes, {} retried after a failure, {duplicates} answered as duplicates (their first try had committed)",
        written.len(),
        retried.len()
    );
    for (id, acked) in retried.iter().take(20) {
        eprintln!("  {id}: {:?} then log index {} (duplicate: {})", acked.failures, acked.log_index, acked.duplicate);
    }
    assert!(!retried.is_empty(), "the kill interrupted no write: the test proved nothing");

    eprintln!("--- the killed node comes back on its data and holds the same log");
    cluster.restart(&killed).await;
    live.write().expect("live nodes lock").insert(killed.id, cluster.client(killed.id).clone());
    write_until_acked(&history, WRITERS as u32, &live, "barrier-2", 9_000_001).await.record(&history);
    let logs = cluster.converged_logs("barrier-2", Duration::from_secs(30), |e| is_request(e, "barrier-2")).await;
    history.check(&logs);
    let after = &logs[0].1;
    assert_eq!(after[..log.len()], log[..], "the restarted node's log differs");
    assert_eq!(after.len(), log.len() + 1);
}

fn is_request(entry: &PositionedEvent, id: &str) -> bool {
    entry.request_id.as_deref() == Some(id)
}

/// A snapshot every 100 entries, the default 120 s window: the ids are
/// still known after every node is SIGKILLed and restarted, by a follower
/// that was down while the others purged their logs (it installs a snapshot
/// over its old state), and by a node that joins afterwards. Every node
/// applies every repeat, so a node that missed an id would log the event
/// again and its log would differ from the others'.
#[tokio::test(flavor = "multi_thread")]
async fn ids_survive_a_restart_of_every_node_and_reach_nodes_caught_up_by_snapshot() {
    const WRITES: u64 = 300;
    let mut cluster = TestCluster::start_with(
        "exactly-once-restart-snapshot",
        3,
        &["--snapshot-after-logs", "100", "--logs-kept-after-snapshot", "10"],
    )
    .await;
    let history = Recorder::new(Naming::RequestId);
    let live = live_clients(&cluster);
    let mut told = HashMap::new();
    let mut lagging = None;
    for n in 0..WRITES {
        if n == 50 {
            // A follower down from here misses what the others snapshot and
            // purge: it comes back through a snapshot over its old state.
            let leader = cluster.leader().await;
            let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
            eprintln!("--- SIGKILL follower {follower} after 50 writes; 250 more");
            live.write().expect("live nodes lock").remove(&follower);
            lagging = Some(cluster.kill(follower).await);
        }
        let acked = write_until_acked(&history, 0, &live, &format!("c-{n}"), n).await;
        acked.record(&history);
        assert!(!acked.duplicate, "c-{n} is new");
        told.insert(n, acked.log_index);
    }
    let lagging = lagging.expect("a follower was stopped");

    eprintln!("--- SIGKILL the other two, restart all three on their data");
    let lagging_log_offset = cluster.log_len(lagging.id);
    for node in cluster.kill_all().await.iter().chain([&lagging]) {
        cluster.restart(node).await;
    }
    cluster.wait_for_voters(3).await;
    let live = live_clients(&cluster);
    for n in [299, 250, 100, 0] {
        let again = write_until_acked(&history, 0, &live, &format!("c-{n}"), n).await;
        assert!(again.duplicate && again.log_index == told[&n], "c-{n} after the restart: {again:?}");
    }

    eprintln!("--- a fourth node joins after the others purged their logs: it gets a snapshot");
    let leader = cluster.leader().await;
    let join = format!("http://{}", cluster.node(leader).http_addr);
    cluster.spawn(4, Some(join), "127.0.0.1:0", "127.0.0.1:0").await;
    cluster.wait_for_voters(4).await;
    let mut live4 = BTreeMap::new();
    live4.insert(4, cluster.client(4).clone());
    let via_new_node = RwLock::new(live4);
    for n in [150, 1] {
        let again = write_until_acked(&history, 0, &via_new_node, &format!("c-{n}"), n).await;
        assert!(again.duplicate && again.log_index == told[&n], "c-{n} through the new node: {again:?}");
    }

    write_until_acked(&history, 0, &live_clients(&cluster), "barrier", 9_999).await.record(&history);
    let logs = cluster.converged_logs("barrier", Duration::from_secs(60), |e| is_request(e, "barrier")).await;
    // Each id once where its answer said, in the order they were written
    // (one after another), with nothing else but the barrier, on every node.
    history.check(&logs);
    assert_eq!(logs[0].1.len() as u64, WRITES + 1, "300 ids and the barrier");
    let lagging_log = cluster.log_since(lagging.id, lagging_log_offset);
    assert!(lagging_log.contains("installed snapshot"), "node {} caught up without a snapshot", lagging.id);
    let node4_log = cluster.log_since(4, 0);
    assert!(node4_log.contains("installed snapshot"), "node 4 caught up without a snapshot:\n{node4_log}");
}

/// The window is time, stamped by the leader into the log: an id sent again
/// is a duplicate until the window (20 s, the shortest these timers allow)
/// has passed since its first entry, however many writes come between, and
/// then it is a new write on every node alike, including one restarted on
/// its data in between (it rebuilt its ids, and their times, from its file).
#[tokio::test(flavor = "multi_thread")]
async fn an_id_leaves_the_window_by_stamped_time_alike_on_every_node_and_across_a_restart() {
    const WINDOW: Duration = Duration::from_secs(20);
    let mut cluster = TestCluster::start_with(
        "exactly-once-window-time",
        3,
        &[
            "--request-id-window-secs",
            "20",
            "--leader-wait-ms",
            "500",
            "--write-timeout-ms",
            "1000",
            "--snapshot-after-logs",
            "20",
        ],
    )
    .await;
    // The clock for write_until_acked; "old" is in the log twice here, by
    // design, so this test checks its log itself.
    let history = Recorder::new(Naming::RequestId);
    let live = live_clients(&cluster);
    let sent = Instant::now();
    let first = write_until_acked(&history, 0, &live, "old", 1).await;
    assert!(!first.duplicate);
    for n in 0..50 {
        write_until_acked(&history, 0, &live, &format!("filler-{n}"), 100 + n).await;
    }

    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    eprintln!("--- SIGKILL follower {follower} and restart it on its data");
    let killed = cluster.kill(follower).await;
    cluster.restart(&killed).await;
    cluster.wait_for_voters(3).await;
    let live = live_clients(&cluster);

    eprintln!("--- send \"old\" again every 500 ms until it is a new write");
    let mut repeats = 0;
    let appended_again = loop {
        let again = write_until_acked(&history, 0, &live, "old", 1).await;
        if !again.duplicate {
            break again;
        }
        assert_eq!(again.log_index, first.log_index, "a duplicate names the first entry");
        assert!(sent.elapsed() < WINDOW + Duration::from_secs(30), "\"old\" never left the window");
        repeats += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = sent.elapsed();
    eprintln!("{repeats} duplicates, then a new write after {elapsed:?}");
    assert!(elapsed >= WINDOW, "\"old\" left the window after {elapsed:?}, before {WINDOW:?}");
    assert!(repeats > 0, "no repeat was inside the window: the test proved nothing");

    write_until_acked(&history, 0, &live, "barrier", 9_999).await;
    let log = cluster.converged_log_through("barrier", Duration::from_secs(30)).await;
    let ids = by_request_id(&log);
    assert_eq!(
        ids["old"],
        vec![(0, first.log_index), (51, appended_again.log_index)],
        "\"old\" twice, where its answers said, on every node"
    );
    assert_eq!(log.len(), 53, "old, 50 fillers, old again, the barrier");
}

/// A request id sent again with another event is not a retry: it is
/// refused with 409 `request_id_reused`, through the leader and through a
/// follower, and the second event is in no node's log.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_reused_with_another_event_is_refused_and_never_logged() {
    let cluster = TestCluster::start("exactly-once-reused-id", 3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");

    eprintln!("--- event A under id X, then event B under id X, to the leader and to a follower");
    let first = post_with_id(cluster.client(leader), &event(1), "reused-x").await.expect("post");
    assert_eq!(first.status, 200, "{}", first.body);
    for node in [leader, follower] {
        let reused = post_with_id(cluster.client(node), &event(2), "reused-x").await.expect("post");
        assert_eq!(reused.status, 409, "node {node}: {}", reused.body);
        assert_eq!(reused.body["success"], false, "{}", reused.body);
        assert_eq!(reused.body["error"], "request_id_reused", "{}", reused.body);
        assert_eq!(reused.body["log_index"], serde_json::Value::Null, "{}", reused.body);
        let message = reused.body["message"].as_str().expect("a message");
        assert!(message.contains("reused-x"), "the message names the id: {message}");
    }
    eprintln!("--- the same event under X is still its duplicate");
    let again = post_with_id(cluster.client(follower), &event(1), "reused-x").await.expect("post");
    assert_eq!((again.status, &again.body["duplicate"]), (200, &serde_json::json!(true)), "{}", again.body);

    let barrier = post_with_id(cluster.client(leader), &event(99), "barrier").await.expect("post");
    assert_eq!(barrier.status, 200, "{}", barrier.body);
    let log = cluster.converged_log_through("barrier", Duration::from_secs(30)).await;
    let events: Vec<(&str, GameEvent)> =
        log.iter().map(|e| (e.request_id.as_deref().unwrap_or(""), e.event.clone())).collect();
    assert_eq!(events, vec![("reused-x", event(1)), ("barrier", event(99))], "every node's log");
}
