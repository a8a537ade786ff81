//! Containers started as processes, each in its own network namespace, in
//! a random order with random delays, their names resolving from the moment
//! each starts (as compose's network and ECS service discovery register a
//! container or task when it starts), and the checks made on the result.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gameraft::client::Client;
use gameraft::launcher::{ServeChild, ServeCommand};
use gameraft_chaos::hosts::Hosts;
use rand::Rng;

use super::files::Container;
use crate::harness::{event, wait_for};

/// The program the files name: the binary on the image's PATH.
pub(super) const PROGRAM: &str = "gameraft";
/// How long formation, the health checks and replication each may take.
const LIMIT: Duration = Duration::from_secs(60);

/// How the containers find each other by name.
#[derive(Debug, Clone)]
pub(super) enum Naming {
    /// Compose's network: each service's name resolves to its container.
    ServiceNames,
    /// ECS service discovery: one name, an A record per running task.
    DiscoveryName(String),
    /// Machines that know each other by address only.
    Addresses,
}

/// When each container starts, after the deployment begins: a start
/// schedule, not a wait for anything.
#[derive(Debug, Clone)]
pub(super) struct Schedule(Vec<(usize, Duration)>);

impl Schedule {
    /// `count` containers, each started at a random delay of up to
    /// `max_delay` (so in a random order), earliest first.
    pub(super) fn random(count: usize, max_delay: Duration) -> Self {
        let mut rng = rand::thread_rng();
        let mut starts: Vec<(usize, Duration)> =
            (0..count).map(|i| (i, rng.gen_range(Duration::ZERO..=max_delay))).collect();
        starts.sort_by_key(|&(_, at)| at);
        Self(starts)
    }
}

/// A node started from a [`Container`] on one of the [`Hosts`].
struct Started {
    name: String,
    host_id: u64,
    base: String,
    client: Client,
    _child: ServeChild,
}

/// Containers as processes on namespaces; the processes are killed when it
/// drops.
pub(super) struct Deployment {
    hosts: Arc<Hosts>,
    /// In the containers' order, not the start order.
    nodes: Vec<Started>,
    /// What the failure messages say: the start order and delays.
    schedule: Schedule,
    /// The nodes' volumes.
    _volumes: tempfile::TempDir,
}

/// Namespaces for `count` containers, or why there can be none.
pub(super) async fn namespaces(count: usize) -> Result<Arc<Hosts>, String> {
    let hosts = Hosts::create(count, false).await;
    match hosts.loopback_reason.clone() {
        None => Ok(Arc::new(hosts)),
        Some(reason) => Err(reason),
    }
}

/// Runs `checks` and then removes the namespaces, whether it passed or not.
pub(super) async fn on_namespaces<F>(hosts: Arc<Hosts>, checks: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // In a task of its own, so that a failed check still reaches the
    // clean-up below (its nodes are killed as the task unwinds).
    let outcome = tokio::spawn(checks).await;
    hosts.destroy().await;
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
}

/// The files a container's volumes hold before it starts: (path in the
/// container, contents).
pub(super) type VolumeFiles = dyn Fn(&Container) -> Vec<(String, Vec<u8>)> + Sync;

/// What a deployment is started with besides its containers.
pub(super) struct Setup<'a> {
    pub naming: Naming,
    pub files: &'a VolumeFiles,
    /// What the nodes' clients present.
    pub token: Option<&'a str>,
    pub log_dir: PathBuf,
    pub schedule: Schedule,
    /// Where bind mounts' relative sources are (the compose file's
    /// directory); `None` if there are none.
    pub project_dir: Option<PathBuf>,
}

/// A container's process, spawned, not yet listening.
struct Spawned<'a> {
    container: &'a Container,
    host_id: u64,
    ip: Ipv4Addr,
    child: ServeChild,
    ports: (u16, u16),
    log_path: PathBuf,
}

impl Deployment {
    /// Starts `containers[i]` on host `i + 1` as `setup.schedule` says.
    pub(super) async fn start(hosts: Arc<Hosts>, containers: &[Container], setup: Setup<'_>) -> Self {
        let volumes_dir = tempfile::tempdir().expect("a temporary directory");
        let _ = std::fs::remove_dir_all(&setup.log_dir);
        std::fs::create_dir_all(&setup.log_dir).expect("the log directory");
        let mut spawned: Vec<Spawned> = Vec::new();
        let began = tokio::time::Instant::now();
        for &(index, at) in &setup.schedule.0 {
            tokio::time::sleep_until(began + at).await;
            let container = &containers[index];
            let host = &hosts.hosts[index];
            let mut named: Vec<(&Container, Ipv4Addr)> = spawned.iter().map(|s| (s.container, s.ip)).collect();
            named.push((container, host.ip));
            hosts.name(&names(&setup.naming, &named)).expect("names in the namespaces");
            spawned.push(spawn(&hosts, host.id, host.ip, container, volumes_dir.path(), &setup));
        }
        // A node may wait for its peers before it listens: only now is each
        // waited for.
        spawned.sort_by_key(|s| s.host_id);
        let mut nodes = Vec::new();
        for Spawned { container, host_id, ip, mut child, ports, log_path } in spawned {
            let listening = child
                .listening(LIMIT)
                .await
                .unwrap_or_else(|e| panic!("{} does not listen ({}): {e}", container.name, log_path.display()));
            let listens_on = (listening.http_addr.port(), listening.raft_addr.port());
            assert_eq!(listens_on, ports, "{} listens on the declared ports", container.name);
            let base = format!("http://{ip}:{}", ports.0);
            let client = match setup.token {
                Some(token) => Client::with_token(base.clone(), token),
                None => Client::new(base.clone()),
            }
            .expect("a client");
            nodes.push(Started { name: container.name.clone(), host_id, base, client, _child: child });
        }
        Self { hosts, nodes, schedule: setup.schedule, _volumes: volumes_dir }
    }

    /// Every node agrees on a leader and on 3 voters; returns their ids.
    pub(super) async fn wait_for_three_voters(&self) -> Vec<u64> {
        let what = format!("one cluster of 3 voters, the same on every node (started {:?})", self.schedule);
        wait_for(&what, LIMIT, || async {
            let mut views = BTreeSet::new();
            for node in &self.nodes {
                let nodes = node.client.nodes().await.ok()?;
                let voters: Vec<u64> = nodes.nodes.iter().filter(|n| n.role == "voter").map(|n| n.id).collect();
                views.insert((nodes.leader?, voters));
            }
            let (_, voters) = views.pop_first().filter(|(_, voters)| voters.len() == 3 && views.is_empty())?;
            Some(voters)
        })
        .await
    }

    /// Runs each container's health check in its namespace until it passes.
    pub(super) async fn wait_for_health_checks(&self, containers: &[Container]) {
        for (node, container) in self.nodes.iter().zip(containers) {
            let (program, args) = container.healthcheck.split_first().expect("a health check");
            assert_eq!(program, PROGRAM, "{}: the health check runs gameraft", node.name);
            let what = format!("{}'s health check {:?}", node.name, container.healthcheck);
            wait_for(&what, LIMIT, || async {
                let runner = self.hosts.runner(node.host_id);
                let (wrapper, wrapper_args) = runner.split_first()?;
                let status = tokio::process::Command::new(wrapper)
                    .args(wrapper_args)
                    .arg(env!("CARGO_BIN_EXE_gameraft"))
                    .args(args)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await
                    .ok()?;
                status.success().then_some(())
            })
            .await;
        }
    }

    /// Every node answers 401 to a client without a token.
    pub(super) async fn refuse_a_client_without_a_token(&self) {
        for node in &self.nodes {
            let anonymous = Client::new(node.base.clone()).expect("a client");
            let answer = anonymous.get("/events").await.expect("GET /events answers");
            assert_eq!(answer.status, 401, "{} without a token: {}", node.name, answer.body);
        }
    }

    /// Writes one event through the last node and waits for every node to
    /// list it.
    pub(super) async fn write_and_read_everywhere(&self) {
        let tag = 14_000_001;
        let writer = self.nodes.last().expect("nodes");
        let answer = writer.client.post_event(&event(tag)).await.expect("POST /events answers");
        assert_eq!(answer.status, 200, "the write through {}: {}", writer.name, answer.body);
        for node in &self.nodes {
            wait_for(&format!("{} to list the event", node.name), LIMIT, || async {
                let events = node.client.events().await.ok()?;
                events.events.contains(&event(tag)).then_some(())
            })
            .await;
        }
    }
}

/// What resolves, once `started` have started.
fn names(naming: &Naming, started: &[(&Container, Ipv4Addr)]) -> Vec<(String, Ipv4Addr)> {
    match naming {
        Naming::ServiceNames => started.iter().map(|(c, ip)| (c.name.clone(), *ip)).collect(),
        Naming::DiscoveryName(name) => started.iter().map(|(_, ip)| (name.clone(), *ip)).collect(),
        Naming::Addresses => Vec::new(),
    }
}

/// Spawns `container` on host `host_id`: its program and arguments, its
/// environment and nothing else, its volumes as directories under
/// `volumes_dir`, its log in the setup's log directory.
fn spawn<'a>(
    hosts: &Hosts,
    host_id: u64,
    ip: Ipv4Addr,
    container: &'a Container,
    volumes_dir: &Path,
    setup: &Setup<'_>,
) -> Spawned<'a> {
    let (program, args) = container.argv.split_first().expect("a command");
    let subcommand = args.first().map(String::as_str);
    assert_eq!((program.as_str(), subcommand), (PROGRAM, Some("serve")), "{}", container.name);
    let volumes: Vec<(String, PathBuf)> = container
        .volumes
        .iter()
        .map(|mount| match &mount.bind {
            Some(bind) => {
                let project = setup.project_dir.as_ref().expect("bind mounts need the project directory");
                let source = project.join(bind);
                assert!(source.exists(), "{}: bind mount source {} is missing", container.name, source.display());
                (mount.target.clone(), source)
            }
            None => {
                let name = mount.target.trim_start_matches('/').replace('/', "_");
                let source = volumes_dir.join(&container.name).join(name);
                std::fs::create_dir_all(&source).expect("a volume directory");
                (mount.target.clone(), source)
            }
        })
        .collect();
    let on_volume = |path: &str| {
        volumes.iter().find_map(|(target, source)| {
            let rest = path.strip_prefix(target.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", source.display()))
        })
    };
    for (path, contents) in (setup.files)(container) {
        let host_path = on_volume(&path).unwrap_or_else(|| panic!("{path} is on no volume of {}", container.name));
        if let Some(dir) = Path::new(&host_path).parent() {
            std::fs::create_dir_all(dir).expect("a directory on a volume");
        }
        std::fs::write(host_path, contents).expect("a file on a volume");
    }
    let http_port = container.listen_port("HTTP_ADDR", 8080);
    let raft_port = container.listen_port("RAFT_ADDR", 5000);
    assert!(
        container.ports.is_subset(&BTreeSet::from([http_port, raft_port])),
        "{}: declared ports {:?} but listens on {http_port} and {raft_port}",
        container.name,
        container.ports
    );
    let log_path = setup.log_dir.join(format!("{}.log", container.name));
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut serve =
        ServeCommand::new(env!("CARGO_BIN_EXE_gameraft")).via(hosts.runner(host_id)).args(&args[1..]).stderr(log);
    for (key, value) in &container.env {
        serve = serve.env(key, on_volume(value).unwrap_or_else(|| value.clone()));
    }
    let child = serve.spawn().expect("the node starts");
    Spawned { container, host_id, ip, child, ports: (http_port, raft_port), log_path }
}
