//! Real `gameraft serve` processes on 127.0.0.1, driven through the HTTP API.
//!
//! Nodes are started by `gameraft::launcher`. They bind port 0 and report
//! their addresses in their listening line, so parallel tests never collide
//! on ports. Every wait polls with a deadline; nothing sleeps to synchronize.
//! Children are killed when the cluster is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gameraft::api::{PositionedEvent, PositionedEventsPage};
use gameraft::client::{Client, ClientError, RawResponse};
use gameraft::event::{CriticalEvent, GameEvent};
use gameraft::launcher::{ServeChild, ServeCommand};
use tokio::time::Instant;

/// How a node with no state finds its cluster.
enum Start {
    Bootstrap,
    Join(String),
    /// From the discovery flags in the cluster's extra arguments.
    Discover,
}

/// A base port with it and the next `n - 1` free on 127.0.0.1, for HTTP and
/// for Raft, for nodes whose addresses must be known before they start.
/// Below Linux's ephemeral range (32768 and up), where the other tests'
/// port-0 listeners and outgoing connections take their ports.
/// Tests of this process running at once get disjoint ranges: each call
/// starts past the ranges handed out before.
pub fn free_bases(n: u16) -> (u16, u16) {
    static HANDED_OUT: std::sync::Mutex<u16> = std::sync::Mutex::new(0);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let start = (20_000 + (std::process::id() % 1_000) as u16 * 2 * n).max(*handed_out);
    let free = |base: u16| (base..base + n).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    let mut base = start;
    while !(free(base) && free(base + n)) {
        base += 2 * n;
    }
    *handed_out = base + 2 * n;
    (base, base + n)
}

pub struct TestNode {
    pub id: u64,
    pub http_addr: String,
    pub raft_addr: String,
    pub client: Client,
    child: ServeChild,
}

/// How a node that was expected to stop by itself ended.
pub struct Exited {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

pub struct TestCluster {
    pub nodes: BTreeMap<u64, TestNode>,
    log_dir: PathBuf,
    /// Parent of the nodes' data directories (`node-<id>`); emptied when the
    /// cluster starts so every run begins from nothing.
    data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables every node is started with.
    extra_env: Vec<(String, String)>,
    /// The token the nodes' clients present, for nodes that check tokens.
    client_token: Option<String>,
}

/// Polls `check` until it returns `Some`, or panics naming `what` at `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `addr` as a socket address; the tests name addresses as strings.
pub fn socket_addr(addr: &str) -> SocketAddr {
    addr.parse().unwrap_or_else(|e| panic!("{addr:?} is not an address: {e}"))
}

/// A distinct critical event; `tag` is carried in `player_id`.
pub fn event(tag: u64) -> GameEvent {
    GameEvent::Critical(CriticalEvent::ScoreUpdate { player_id: tag, score: (tag % 1000) as i32, timestamp: tag })
}

pub fn tag_of(event: &GameEvent) -> u64 {
    match event {
        GameEvent::Critical(CriticalEvent::ScoreUpdate { player_id, .. }) => *player_id,
        other => panic!("unexpected event in the log: {other:?}"),
    }
}

/// `POST /events` with `event` under the client request id `id` (in the body).
pub async fn post_with_id(client: &Client, event: &GameEvent, id: &str) -> Result<RawResponse, ClientError> {
    let body = serde_json::json!({ "event": event, "request_id": id });
    client.post_raw("/events", "application/json", body.to_string().into_bytes()).await
}

/// Node `client`'s whole `GET /log`, read page by page.
pub async fn full_log(client: &Client) -> Result<Vec<PositionedEvent>, String> {
    let mut entries = Vec::new();
    loop {
        let path = format!("/log?from={}", entries.len());
        let raw = client.get(&path).await.map_err(|e| e.to_string())?;
        if raw.status != 200 {
            return Err(format!("GET {path}: {} {}", raw.status, raw.body));
        }
        let page: PositionedEventsPage = serde_json::from_value(raw.body).map_err(|e| format!("GET {path}: {e}"))?;
        if page.from != entries.len() as u64 {
            return Err(format!("GET {path}: page starts at {}", page.from));
        }
        let done = page.count == 0 || page.next >= page.total;
        entries.extend(page.entries);
        if done {
            return Ok(entries);
        }
    }
}

impl TestNode {
    /// The node's process id, for signals other than SIGKILL.
    pub fn pid(&self) -> nix::unistd::Pid {
        let pid = self.child.pid().expect("a running node has a pid");
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"))
    }
}

impl TestCluster {
    /// Starts `n` nodes with the design's default timers: node 1 bootstraps,
    /// the others join through node 1; returns once all are voters and agree
    /// on the leader.
    pub async fn start(test: &str, n: u64) -> Self {
        Self::start_with(test, n, &[]).await
    }

    pub async fn start_with(test: &str, n: u64, extra_args: &[&str]) -> Self {
        let mut cluster = Self::empty(test, extra_args);
        cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
        for id in 2..=n {
            let join = format!("http://{}", cluster.nodes[&1].http_addr);
            cluster.spawn(id, Some(join), "127.0.0.1:0", "127.0.0.1:0").await;
        }
        cluster.wait_for_voters(n as usize).await;
        cluster
    }

    /// A cluster with no node running yet: fresh log and data directories.
    pub fn empty(test: &str, extra_args: &[&str]) -> Self {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let log_dir = tmp.join("cluster-logs").join(test);
        let data_dir = tmp.join("cluster-data").join(test);
        let _ = std::fs::remove_dir_all(&log_dir);
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        Self {
            nodes: BTreeMap::new(),
            log_dir,
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: Vec::new(),
            client_token: None,
        }
    }

    /// Every node's client presents `token`.
    pub fn with_client_token(mut self, token: &str) -> Self {
        self.client_token = Some(token.to_string());
        self
    }

    /// Starts every node with `key=value` in its environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_string(), value.to_string()));
        self
    }

    /// The last purged log index in node `id`'s data directory (0 if none).
    pub fn purged_index(&self, id: u64) -> u64 {
        let path = self.data_dir_of(id).join("raft-log").join("purged.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let purged: serde_json::Value = serde_json::from_slice(&bytes).expect("purged.json is JSON");
                purged["index"].as_u64().unwrap_or_else(|| panic!("no index in {purged}"))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => panic!("cannot read {}: {err}", path.display()),
        }
    }

    /// Where node `id` keeps its data (unless the cluster runs `--in-memory`).
    pub fn data_dir_of(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("node-{id}"))
    }

    /// Deletes node `id`'s data directory, as if its disk were replaced.
    pub fn wipe_data(&self, id: u64) {
        std::fs::remove_dir_all(self.data_dir_of(id)).expect("remove data dir");
    }

    /// Starts node `id` again on its old addresses and data directory. It
    /// is given `--join` too, which a node with state must ignore.
    pub async fn restart(&mut self, old: &TestNode) -> &TestNode {
        let join = self.nodes.values().next().map(|n| format!("http://{}", n.http_addr));
        self.spawn(old.id, join, &old.http_addr.clone(), &old.raft_addr.clone()).await
    }

    /// Starts `gameraft serve` and waits for its address line. Without
    /// `join` the node is given `--bootstrap` (which a node with state
    /// ignores).
    pub async fn spawn(&mut self, id: u64, join: Option<String>, http_addr: &str, raft_addr: &str) -> &TestNode {
        self.spawn_opts(id, true, join, http_addr, raft_addr).await
    }

    /// [`TestCluster::spawn`], with `--id` passed only if `pass_id`: without
    /// it the node takes its id from its data directory (checked against
    /// `id` on the address line).
    pub async fn spawn_opts(
        &mut self,
        id: u64,
        pass_id: bool,
        join: Option<String>,
        http_addr: &str,
        raft_addr: &str,
    ) -> &TestNode {
        let start = match join {
            Some(url) => Start::Join(url),
            None => Start::Bootstrap,
        };
        self.launch(id, pass_id, start, http_addr, raft_addr).await
    }

    /// Starts node `id` with neither `--bootstrap` nor `--join`: it forms
    /// its cluster from the flags the cluster was made with (`--peers` or
    /// `--discovery-dns`, and `--bootstrap-expect`).
    pub async fn spawn_forming(&mut self, id: u64, http_addr: &str, raft_addr: &str) -> &TestNode {
        self.launch(id, true, Start::Discover, http_addr, raft_addr).await
    }

    async fn launch(&mut self, id: u64, pass_id: bool, start: Start, http_addr: &str, raft_addr: &str) -> &TestNode {
        let log_path = self.log_dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open node log");
        let mut serve = self.serve(http_addr, raft_addr).stderr(log);
        for (key, value) in &self.extra_env {
            serve = serve.env(key, value);
        }
        if pass_id {
            serve = serve.id(id);
        }
        serve = match start {
            Start::Join(url) => serve.join(&url),
            Start::Bootstrap => serve.bootstrap(),
            Start::Discover => serve,
        };
        if !self.extra_args.iter().any(|arg| arg == "--in-memory") {
            serve = serve.data_dir(self.data_dir_of(id));
        }
        let mut child = serve.spawn().expect("spawn gameraft serve");
        let listening = child
            .listening(Duration::from_secs(20))
            .await
            .unwrap_or_else(|err| panic!("node {id} did not start: {err}; see {}", log_path.display()));
        assert_eq!(listening.node_id, id, "node started with another id: {listening}");
        let (http_addr, raft_addr) = (listening.http_addr.to_string(), listening.raft_addr.to_string());
        let base = format!("http://{http_addr}");
        let client = match &self.client_token {
            Some(token) => Client::with_token(base, token),
            None => Client::new(base),
        }
        .expect("client");
        self.nodes.insert(id, TestNode { id, http_addr, raft_addr, client, child });
        &self.nodes[&id]
    }

    /// `gameraft serve` on the given addresses with the cluster's extra
    /// arguments.
    fn serve(&self, http_addr: &str, raft_addr: &str) -> ServeCommand {
        ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
            .http_addr(socket_addr(http_addr))
            .raft_addr(socket_addr(raft_addr))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
    }

    /// Runs `gameraft serve` for node `id` with neither `--bootstrap` nor
    /// `--join`, expecting it to exit by itself within `limit`.
    pub async fn serve_until_exit(&self, id: u64, http_addr: &str, raft_addr: &str, limit: Duration) -> Exited {
        let child = self
            .serve(http_addr, raft_addr)
            .id(id)
            .data_dir(self.data_dir_of(id))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gameraft serve");
        let output = child
            .wait_output(limit)
            .await
            .unwrap_or_else(|err| panic!("node {id}: {err}: it should have refused to start"));
        Exited { status: output.status, stderr: output.stderr }
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn client(&self, id: u64) -> &Client {
        &self.nodes[&id].client
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// SIGKILLs a node and waits for the process to be gone.
    pub async fn kill(&mut self, id: u64) -> TestNode {
        let mut node = self.nodes.remove(&id).expect("node to kill is running");
        node.child.process.kill().await.expect("SIGKILL");
        node
    }

    /// SIGSTOPs node `id`: it holds its sockets but answers nothing until
    /// [`TestCluster::resume`].
    pub fn pause(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, id: u64, signal: nix::sys::signal::Signal) {
        let pid = self.nodes[&id].child.pid().expect("node is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).expect("signal node");
    }

    /// Waits for node `id` to exit by itself (within `limit`); returns it
    /// and how it exited.
    pub async fn wait_exit(&mut self, id: u64, limit: Duration) -> (TestNode, std::process::ExitStatus) {
        let mut node = self.nodes.remove(&id).expect("node is running");
        let status = tokio::time::timeout(limit, node.child.process.wait())
            .await
            .unwrap_or_else(|_| panic!("node {id} still runs after {limit:?}"))
            .expect("wait for node");
        (node, status)
    }

    /// SIGKILLs every running node: all signals are sent before any exit is
    /// awaited, so no node outlives another by more than a few microseconds.
    pub async fn kill_all(&mut self) -> Vec<TestNode> {
        let mut nodes: Vec<TestNode> = std::mem::take(&mut self.nodes).into_values().collect();
        for node in &mut nodes {
            node.child.process.start_kill().expect("SIGKILL");
        }
        for node in &mut nodes {
            node.child.process.wait().await.expect("wait for killed node");
        }
        nodes
    }

    /// Node `id`'s log file (its stderr, appended across restarts).
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.log_dir.join(format!("node-{id}.log"))
    }

    /// How long node `id`'s log is now: pass it to [`TestCluster::log_since`]
    /// to read only what a later run of the node wrote.
    pub fn log_len(&self, id: u64) -> u64 {
        std::fs::metadata(self.log_path(id)).map(|m| m.len()).unwrap_or(0)
    }

    /// Node `id`'s log from byte `offset` on.
    pub fn log_since(&self, id: u64, offset: u64) -> String {
        let bytes = std::fs::read(self.log_path(id)).expect("read node log");
        String::from_utf8_lossy(&bytes[offset as usize..]).into_owned()
    }

    /// Waits until every running node holds the same events, including the
    /// one tagged `barrier`; returns them. Use it after the last write (the
    /// barrier) was acknowledged, when how many events committed is unknown.
    /// Asserts on every poll that each node's list is a prefix of the longest:
    /// nodes may lag, never disagree.
    pub async fn converged_events_through(&self, barrier: u64, limit: Duration) -> Vec<GameEvent> {
        wait_for(&format!("all nodes to hold the same events, through tag {barrier}"), limit, || async {
            // Cheap first: every node reports the same count.
            let mut counts = Vec::new();
            for node in self.nodes.values() {
                counts.push(node.client.status().await.ok()?.event_count);
            }
            if counts.windows(2).any(|w| w[0] != w[1]) {
                return None;
            }
            let mut lists = Vec::new();
            for node in self.nodes.values() {
                lists.push((node.id, node.client.events().await.ok()?.events));
            }
            agreed_through(&lists, "events", |e| tag_of(e) == barrier)
        })
        .await
    }

    /// Waits until every running node's `GET /log` holds the same entries,
    /// including the one with request id `barrier`; returns them. Asserts on
    /// every poll that each node's log is a prefix of the longest.
    pub async fn converged_log_through(&self, barrier: &str, limit: Duration) -> Vec<PositionedEvent> {
        let what = format!("request {barrier}");
        let logs = self.converged_logs(&what, limit, |e| e.request_id.as_deref() == Some(barrier)).await;
        logs.into_iter().next().map(|(_, log)| log).unwrap_or_default()
    }

    /// Waits until every running node's `GET /log` holds the same entries,
    /// including one that `is_barrier` (`what` names it); returns each
    /// node's log. Asserts on every poll that each node's log is a prefix of
    /// the longest.
    pub async fn converged_logs(
        &self,
        what: &str,
        limit: Duration,
        is_barrier: impl Fn(&PositionedEvent) -> bool,
    ) -> Vec<(u64, Vec<PositionedEvent>)> {
        wait_for(&format!("all nodes to hold the same log, through {what}"), limit, || async {
            // Cheap first: every node reports the same count.
            let mut counts = Vec::new();
            for node in self.nodes.values() {
                counts.push(node.client.status().await.ok()?.event_count);
            }
            if counts.windows(2).any(|w| w[0] != w[1]) {
                return None;
            }
            let mut logs = Vec::new();
            for node in self.nodes.values() {
                logs.push((node.id, full_log(&node.client).await.ok()?));
            }
            agreed_through(&logs, "log", &is_barrier)?;
            Some(logs)
        })
        .await
    }

    /// Every running node's whole `GET /log`, read now.
    pub async fn logs(&self) -> Vec<(u64, Vec<PositionedEvent>)> {
        let mut logs = Vec::new();
        for node in self.nodes.values() {
            let log = full_log(&node.client).await.unwrap_or_else(|e| panic!("node {}'s log: {e}", node.id));
            logs.push((node.id, log));
        }
        logs
    }

    /// Waits until every running node reports `voters` voters and all agree
    /// on one leader (and term); returns the leader.
    pub async fn wait_for_voters(&self, voters: usize) -> u64 {
        wait_for(&format!("{voters} voters agreeing on a leader"), Duration::from_secs(30), || async {
            let mut agreed = None;
            for node in self.nodes.values() {
                let nodes = node.client.nodes().await.ok()?;
                let count = nodes.nodes.iter().filter(|n| n.role == "voter").count();
                if count != voters || nodes.leader.is_none() {
                    return None;
                }
                if agreed.is_some() && agreed != Some((nodes.leader, nodes.term)) {
                    return None;
                }
                agreed = Some((nodes.leader, nodes.term));
            }
            agreed.and_then(|(leader, _)| leader)
        })
        .await
    }

    /// The leader all running nodes agree on.
    pub async fn leader(&self) -> u64 {
        wait_for("all nodes to agree on a leader", Duration::from_secs(30), || async {
            let mut agreed = None;
            for node in self.nodes.values() {
                let status = node.client.status().await.ok()?;
                if status.current_leader.is_none() || (agreed.is_some() && agreed != status.current_leader) {
                    return None;
                }
                agreed = status.current_leader;
            }
            agreed
        })
        .await
    }

    /// Waits until every running node holds `count` events and all hold the
    /// same list; returns it.
    pub async fn converged_events(&self, count: usize) -> Vec<GameEvent> {
        wait_for(&format!("all nodes to hold the same {count} events"), Duration::from_secs(30), || async {
            let mut agreed: Option<Vec<GameEvent>> = None;
            for node in self.nodes.values() {
                let events = node.client.events().await.ok()?;
                if events.events.len() != count || events.count as usize != count {
                    return None;
                }
                match &agreed {
                    Some(first) => assert_eq!(first, &events.events, "node {} holds a different log", node.id),
                    None => agreed = Some(events.events),
                }
            }
            agreed
        })
        .await
    }
}

/// The list every node holds, once all are equal and it contains an item
/// that `is_barrier`; `None` while some node lags. Asserts that each node's
/// list is a prefix of the longest: nodes may lag, never disagree.
fn agreed_through<T: PartialEq + Clone>(
    lists: &[(u64, Vec<T>)],
    what: &str,
    is_barrier: impl Fn(&T) -> bool,
) -> Option<Vec<T>> {
    let (longest_id, longest) = lists.iter().max_by_key(|(_, list)| list.len())?;
    for (id, list) in lists {
        assert!(
            longest.starts_with(list),
            "node {id}'s {what} is not a prefix of node {longest_id}'s: the nodes disagree"
        );
    }
    let complete = lists.iter().all(|(_, list)| list.len() == longest.len()) && longest.iter().any(is_barrier);
    complete.then(|| longest.clone())
}
