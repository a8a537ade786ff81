//! The deployment files, proven without a container engine. The Dockerfile's
//! image settings, `docker-compose.yml` and `deploy/ecs/task-definition.json`
//! are read, and `gameraft` nodes are started exactly as they say, each in its
//! own network namespace on a bridge, as separate containers or tasks are:
//!
//! - **program and arguments:** the container's entrypoint and command, else
//!   the image's (`ENTRYPOINT ["gameraft", "serve"]`); `gameraft` is the
//!   binary under test;
//! - **environment:** the image's `ENV` lines, then the container's own
//!   (compose `environment`; ECS `environment`, then `secrets`, whose values
//!   the test makes up), and nothing else: the launcher clears the rest;
//! - **volumes:** each container path (`/data`, ...) is a directory of the
//!   test's own per node; a variable naming a path under it names that
//!   directory instead;
//! - **network:** the compose service names, or the ECS discovery name, resolve
//!   in every namespace to the nodes' addresses ([`Hosts::name`]); each node
//!   must listen on the container ports the files declare;
//! - **health check:** the image's (compose) or the task definition's (ECS) is
//!   run in each namespace and must pass once the cluster has formed.
//!
//! Not reproduced: the host side of compose's `ports`, the image's user (the
//! tests run as root), ECS's ulimits and task metadata. Needs root and
//! iproute2; without them a test says why and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gameraft::client::Client;
use gameraft::launcher::{ServeChild, ServeCommand};
use gameraft_chaos::hosts::Hosts;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

use crate::harness::{event, wait_for};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The program the files name: the binary on the image's PATH.
const PROGRAM: &str = "gameraft";
/// How long formation, the health checks and replication each may take.
const LIMIT: Duration = Duration::from_secs(60);

/// Where a test's node logs are kept (they outlive the test, to read after
/// a failure).
fn log_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-files").join(test)
}

/// What the image gives every container: its runtime stage's settings.
#[derive(Debug, Default)]
struct Image {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    volumes: Vec<String>,
    exposed: BTreeSet<u16>,
}

/// One container (a compose service, an ECS task) as the files describe it.
#[derive(Debug)]
struct Container {
    name: String,
    argv: Vec<String>,
    /// In order of precedence: a later value of a variable wins.
    env: Vec<(String, String)>,
    ports: BTreeSet<u16>,
    volumes: Vec<String>,
    healthcheck: Vec<String>,
}

impl Container {
    fn var(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The port of listen address `key` (`HTTP_ADDR`, `RAFT_ADDR`), or the
    /// flag's default if the files leave it unset.
    fn listen_port(&self, key: &str, default: u16) -> u16 {
        self.var(key).map_or(default, |addr| addr.parse::<SocketAddr>().expect("a listen address").port())
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// An exec-form instruction argument: a JSON array of strings.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?} is not an exec-form JSON array: {e}"))
}

/// The settings of the Dockerfile's last stage (the runtime image).
fn dockerfile_image(text: &str) -> Image {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => instructions.push(std::mem::take(&mut current) + line),
        }
    }
    let mut image = Image::default();
    for instruction in instructions {
        let (keyword, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            // A new stage starts from its base: only the last one is the image.
            "FROM" => image = Image::default(),
            "ENV" => image.env.extend(env_instruction(rest)),
            "ENTRYPOINT" => image.entrypoint = exec_form(rest),
            "CMD" => image.cmd = exec_form(rest),
            "VOLUME" => image.volumes = exec_form(rest),
            "EXPOSE" => image.exposed.extend(rest.split_whitespace().map(port)),
            "HEALTHCHECK" => {
                let (_, command) = rest.split_once("CMD").expect("HEALTHCHECK [options] CMD [...]");
                image.healthcheck = exec_form(command);
            }
            _ => {}
        }
    }
    image
}

/// `ENV KEY=VALUE ...`, or the old `ENV KEY VALUE`. Values are unquoted
/// words: a quoted value would need the Dockerfile's quoting rules.
fn env_instruction(rest: &str) -> Vec<(String, String)> {
    assert!(!rest.contains(['"', '\'']), "ENV {rest}: quoted values are not read by this test");
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).expect("ENV KEY VALUE");
        return vec![(key.to_string(), value.trim().to_string())];
    }
    rest.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("ENV KEY=VALUE");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// `8080`, `8080/tcp`, or the container side of a compose mapping
/// (`8081:8080`, `127.0.0.1:8081:8080/tcp`).
fn port(text: &str) -> u16 {
    let container = text.rsplit(':').next().unwrap_or(text);
    let number = container.split('/').next().unwrap_or(container);
    number.parse().unwrap_or_else(|e| panic!("port {text:?}: {e}"))
}

/// A compose scalar as the environment sees it.
fn yaml_scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        // `KEY:` with no value takes the host's variable: none here.
        Yaml::Null => None,
        other => panic!("environment value {other:?} is not a scalar"),
    }
}

/// A compose command or entrypoint: a list, or a string split into words.
fn yaml_words(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => s.split_whitespace().map(String::from).collect(),
        Yaml::Sequence(items) => items.iter().map(|v| yaml_scalar(v).expect("a word")).collect(),
        other => panic!("{other:?} is neither a string nor a list"),
    }
}

/// A health check's `["CMD", program, args...]` as the program and args.
fn exec_check(test: Vec<String>) -> Vec<String> {
    match test.split_first() {
        Some((kind, command)) if kind == "CMD" => command.to_vec(),
        _ => panic!("health check {test:?}: only the exec form [\"CMD\", ...] is run by this test"),
    }
}

fn compose_containers(text: &str, image: &Image) -> Vec<Container> {
    let doc: Yaml = serde_norway::from_str(text).expect("docker-compose.yml is YAML");
    let services = doc.get("services").and_then(Yaml::as_mapping).expect("docker-compose.yml has services");
    let mut containers = Vec::new();
    for (name, service) in services {
        let name = name.as_str().expect("a service name").to_string();
        // As docker does: an entrypoint of the service's own drops the image's CMD.
        let (entrypoint, cmd) = match service.get("entrypoint") {
            Some(entrypoint) => (yaml_words(entrypoint), Vec::new()),
            None => (image.entrypoint.clone(), image.cmd.clone()),
        };
        let cmd = service.get("command").map_or(cmd, yaml_words);
        let mut env = image.env.clone();
        match service.get("environment") {
            None => {}
            Some(Yaml::Mapping(vars)) => env.extend(vars.iter().filter_map(|(key, value)| {
                Some((key.as_str().expect("a variable name").to_string(), yaml_scalar(value)?))
            })),
            Some(Yaml::Sequence(vars)) => env.extend(vars.iter().map(|pair| {
                let pair = pair.as_str().expect("KEY=VALUE");
                let (key, value) = pair.split_once('=').expect("KEY=VALUE");
                (key.to_string(), value.to_string())
            })),
            Some(other) => panic!("service {name}: environment {other:?}"),
        }
        let entries = |key: &str| service.get(key).and_then(Yaml::as_sequence).cloned().unwrap_or_default();
        let ports = entries("ports")
            .iter()
            .map(|p| match p {
                Yaml::Mapping(_) => p.get("target").and_then(Yaml::as_u64).expect("ports: target") as u16,
                other => port(&yaml_scalar(other).expect("a port")),
            })
            .collect();
        let volumes = entries("volumes")
            .iter()
            .map(|v| match v {
                Yaml::Mapping(_) => v.get("target").and_then(Yaml::as_str).expect("volumes: target").to_string(),
                other => {
                    let spec = other.as_str().expect("SOURCE:TARGET").to_string();
                    spec.split(':').nth(1).unwrap_or(&spec).to_string()
                }
            })
            .collect();
        let healthcheck = match service.get("healthcheck").and_then(|h| h.get("test")) {
            Some(test) => exec_check(yaml_words(test)),
            None => image.healthcheck.clone(),
        };
        containers.push(Container { name, argv: [entrypoint, cmd].concat(), env, ports, volumes, healthcheck });
    }
    containers
}

/// The task definition's one container, with `secrets` (by variable name)
/// standing for what ECS would fetch from Secrets Manager or SSM.
fn ecs_container(text: &str, image: &Image, secrets: &BTreeMap<&str, String>) -> Container {
    let task: Json = serde_json::from_str(text).expect("task-definition.json is JSON");
    let definitions = task["containerDefinitions"].as_array().expect("containerDefinitions");
    assert_eq!(definitions.len(), 1, "one container per task");
    let def = &definitions[0];
    let strings = |value: &Json| -> Vec<String> {
        value
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().expect("a string").to_string()).collect())
            .unwrap_or_default()
    };
    let (entrypoint, cmd) = match def.get("entryPoint") {
        Some(entrypoint) => (strings(entrypoint), Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = def.get("command").map_or(cmd, strings);
    let mut env = image.env.clone();
    let named = |key: &str| def[key].as_array().cloned().unwrap_or_default();
    for var in named("environment") {
        env.push((var["name"].as_str().expect("name").into(), var["value"].as_str().expect("value").into()));
    }
    for secret in named("secrets") {
        let name = secret["name"].as_str().expect("name");
        let value = secrets.get(name).unwrap_or_else(|| panic!("the test has no value for secret {name}"));
        env.push((name.to_string(), value.clone()));
    }
    let ports =
        named("portMappings").iter().map(|p| p["containerPort"].as_u64().expect("containerPort") as u16).collect();
    let volumes =
        named("mountPoints").iter().map(|m| m["containerPath"].as_str().expect("containerPath").to_string()).collect();
    assert_eq!(task["networkMode"], "awsvpc", "each task has its own address");
    Container {
        name: def["name"].as_str().expect("name").to_string(),
        argv: [entrypoint, cmd].concat(),
        env,
        ports,
        volumes,
        healthcheck: exec_check(strings(&def["healthCheck"]["command"])),
    }
}

/// A node started from a [`Container`] on one of the [`Hosts`].
struct Started {
    name: String,
    host_id: u64,
    client: Client,
    _child: ServeChild,
}

/// Containers as processes on namespaces; the processes are killed when it
/// drops.
struct Deployment {
    hosts: Arc<Hosts>,
    nodes: Vec<Started>,
    /// The nodes' volumes.
    _volumes: tempfile::TempDir,
}

/// Namespaces for `count` containers, or why there can be none.
async fn namespaces(count: usize) -> Result<Arc<Hosts>, String> {
    let hosts = Hosts::create(count, false).await;
    match hosts.loopback_reason.clone() {
        None => Ok(Arc::new(hosts)),
        Some(reason) => Err(reason),
    }
}

/// Runs `checks` and then removes the namespaces, whether it passed or not.
async fn on_namespaces<F>(hosts: Arc<Hosts>, checks: F)
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

impl Deployment {
    /// Starts `containers[i]` on host `i + 1`, logs in `log_dir`. `files`
    /// are put in the volumes before the start, by their path in the
    /// container; the nodes' clients present `token`.
    async fn start(
        hosts: Arc<Hosts>,
        containers: &[Container],
        files: &[(String, String)],
        token: Option<&str>,
        log_dir: &Path,
    ) -> Self {
        let volumes_dir = tempfile::tempdir().expect("a temporary directory");
        let _ = std::fs::remove_dir_all(log_dir);
        std::fs::create_dir_all(log_dir).expect("the log directory");
        let mut spawned = Vec::new();
        for (container, host) in containers.iter().zip(&hosts.hosts) {
            let (program, args) = container.argv.split_first().expect("a command");
            let subcommand = args.first().map(String::as_str);
            assert_eq!((program.as_str(), subcommand), (PROGRAM, Some("serve")), "{}", container.name);
            let volumes: Vec<(String, PathBuf)> = container
                .volumes
                .iter()
                .map(|target| {
                    let name = target.trim_start_matches('/').replace('/', "_");
                    let source = volumes_dir.path().join(&container.name).join(name);
                    std::fs::create_dir_all(&source).expect("a volume directory");
                    (target.clone(), source)
                })
                .collect();
            let on_volume = |path: &str| {
                volumes.iter().find_map(|(target, source)| {
                    let rest = path.strip_prefix(target.as_str())?;
                    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", source.display()))
                })
            };
            for (path, text) in files {
                let host_path =
                    on_volume(path).unwrap_or_else(|| panic!("{path} is on no volume of {}", container.name));
                std::fs::write(host_path, text).expect("a file on a volume");
            }
            let http_port = container.listen_port("HTTP_ADDR", 8080);
            let raft_port = container.listen_port("RAFT_ADDR", 5000);
            assert!(
                container.ports.is_subset(&BTreeSet::from([http_port, raft_port])),
                "{}: declared ports {:?} but listens on {http_port} and {raft_port}",
                container.name,
                container.ports
            );
            let log_path = log_dir.join(format!("{}.log", container.name));
            let log = std::fs::File::create(&log_path).expect("a log file");
            let mut serve = ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
                .via(hosts.runner(host.id))
                .args(&args[1..])
                .stderr(log);
            for (key, value) in &container.env {
                serve = serve.env(key, on_volume(value).unwrap_or_else(|| value.clone()));
            }
            spawned.push((container, host, serve.spawn().expect("the node starts"), (http_port, raft_port), log_path));
        }
        // All started before any is waited for, as a service starts its
        // tasks: a node may wait for its peers before it listens.
        let mut nodes = Vec::new();
        for (container, host, mut child, ports, log_path) in spawned {
            let listening = child
                .listening(LIMIT)
                .await
                .unwrap_or_else(|e| panic!("{} does not listen ({}): {e}", container.name, log_path.display()));
            let listens_on = (listening.http_addr.port(), listening.raft_addr.port());
            assert_eq!(listens_on, ports, "{} listens on the declared ports", container.name);
            let base = format!("http://{}:{}", host.ip, ports.0);
            let client = match token {
                Some(token) => Client::with_token(base, token),
                None => Client::new(base),
            }
            .expect("a client");
            nodes.push(Started { name: container.name.clone(), host_id: host.id, client, _child: child });
        }
        Self { hosts, nodes, _volumes: volumes_dir }
    }

    /// Every node agrees on a leader and on 3 voters; returns their ids.
    async fn wait_for_three_voters(&self) -> Vec<u64> {
        wait_for("one cluster of 3 voters, the same on every node", LIMIT, || async {
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
    async fn wait_for_health_checks(&self, containers: &[Container]) {
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

    /// Writes one event through the last node and waits for every node to
    /// list it.
    async fn write_and_read_everywhere(&self) {
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

/// The health check is one command in the image and the task definition,
/// the task definition's ports and data volume are the image's, and the
/// compose file's volumes and ports are the image's. Needs no root.
#[test]
fn the_files_agree_with_the_image() {
    let image = dockerfile_image(&read("Dockerfile"));
    assert_eq!(image.entrypoint, [PROGRAM, "serve"]);
    assert_eq!(image.exposed, BTreeSet::from([8080, 5000]));
    assert_eq!(image.volumes, ["/data"]);
    assert!(image.env.contains(&("DATA_DIR".into(), "/data".into())), "the data directory is the volume");
    assert_eq!(image.healthcheck, [PROGRAM, "probe", "http://127.0.0.1:8080/ready"]);

    let secrets = BTreeMap::from([("GAMERAFT_JOIN_TOKEN", "t".to_string())]);
    let task = ecs_container(&read("deploy/ecs/task-definition.json"), &image, &secrets);
    assert_eq!(task.healthcheck, image.healthcheck, "ECS runs the image's health check");
    assert_eq!(task.ports, image.exposed);
    assert!(task.volumes.contains(&"/data".to_string()));
    assert!(task.var("WORKER_ID").is_none(), "identical tasks: no per-task id");

    for service in compose_containers(&read("docker-compose.yml"), &image) {
        assert_eq!(service.volumes, ["/data"], "{}", service.name);
        assert!(service.ports.contains(&8080), "{}", service.name);
    }
}

/// The credential commands docs/deploy.md gives for a secure compose
/// cluster make the files it copies.
#[test]
fn the_guides_credential_commands_make_their_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gameraft"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("gameraft runs");
        assert!(output.status.success(), "gameraft {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let token = run(&["token", "new", "--role", "admin", "--name", "compose-join"]);
    assert!(token.lines().nth(1).is_some_and(|line| line.starts_with("admin ")), "{token}");
    run(&["certs", "init", "--dir", "ca"]);
    for n in 1..=3 {
        run(&["certs", "node", "--dir", "ca", "--id", &n.to_string(), "--host", &format!("node{n}")]);
        for file in ["ca.pem".to_string(), format!("node-{n}.pem"), format!("node-{n}-key.pem")] {
            assert!(dir.path().join("ca").join(&file).is_file(), "ca/{file}");
        }
    }
}

/// `gameraft probe` fails on no answer and on a non-2xx answer; passing on
/// `/ready` is shown by the deployment tests.
#[tokio::test(flavor = "multi_thread")]
async fn the_probe_fails_without_a_ready_node() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let closed = listener.local_addr().expect("its address");
    drop(listener);
    let probe = |url: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_gameraft"))
            .args(["probe", &url, "--timeout-ms", "2000"])
            .output()
            .await
            .expect("gameraft probe runs")
    };
    let refused = probe(format!("http://{closed}/ready")).await;
    assert_eq!(refused.status.code(), Some(1), "no answer: {}", String::from_utf8_lossy(&refused.stderr));

    // A node with no state, neither founding nor joining, is not ready:
    // an in-memory node that has joined nothing answers 503.
    let mut node = ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
        .http_addr(([127, 0, 0, 1], 0).into())
        .raft_addr(([127, 0, 0, 1], 0).into())
        .in_memory()
        .join(&format!("http://{closed}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("a node starts");
    let listening = node.listening(LIMIT).await.expect("it listens");
    let not_ready = probe(format!("http://{}/ready", listening.http_addr)).await;
    assert_eq!(not_ready.status.code(), Some(1), "503: {}", String::from_utf8_lossy(&not_ready.stderr));
    assert!(String::from_utf8_lossy(&not_ready.stderr).contains("503"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_file_forms_one_cluster() {
    let image = dockerfile_image(&read("Dockerfile"));
    let services = compose_containers(&read("docker-compose.yml"), &image);
    assert_eq!(services.len(), 3);
    let hosts = match namespaces(services.len()).await {
        Ok(hosts) => hosts,
        Err(reason) => return println!("SKIPPED: the compose file needs network namespaces: {reason}"),
    };
    // Compose's network: each service reachable by its name.
    let names: Vec<(String, Ipv4Addr)> =
        services.iter().zip(&hosts.hosts).map(|(s, h)| (s.name.clone(), h.ip)).collect();
    hosts.name(&names).expect("names in the namespaces");
    let started = Arc::clone(&hosts);
    on_namespaces(hosts, async move {
        let deployment = Deployment::start(started, &services, &[], None, &log_dir("compose")).await;
        let voters = deployment.wait_for_three_voters().await;
        assert_eq!(voters, [1, 2, 3], "the services' WORKER_IDs");
        deployment.wait_for_health_checks(&services).await;
        deployment.write_and_read_everywhere().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_identical_ecs_tasks_form_one_cluster() {
    let image = dockerfile_image(&read("Dockerfile"));
    let text = read("deploy/ecs/task-definition.json");
    // The secret's value, and the tokens file holding its hash on the
    // config volume, as the deployment guide makes them.
    let (join_token, tokens_line) = new_admin_token().await;
    let secrets = BTreeMap::from([("GAMERAFT_JOIN_TOKEN", join_token.clone())]);
    let task = ecs_container(&text, &image, &secrets);
    let tasks: Vec<Container> =
        (1..=3).map(|n| Container { name: format!("task{n}"), ..ecs_container(&text, &image, &secrets) }).collect();
    let hosts = match namespaces(tasks.len()).await {
        Ok(hosts) => hosts,
        Err(reason) => return println!("SKIPPED: the ECS tasks need network namespaces: {reason}"),
    };
    // ECS service discovery: one name, an A record per task.
    let dns = task.var("GAMERAFT_DISCOVERY_DNS").expect("the task names its discovery name").to_string();
    let names: Vec<(String, Ipv4Addr)> = hosts.hosts.iter().map(|h| (dns.clone(), h.ip)).collect();
    hosts.name(&names).expect("names in the namespaces");
    let files: Vec<(String, String)> =
        task.var("GAMERAFT_AUTH_TOKENS_FILE").map(|path| (path.to_string(), tokens_line)).into_iter().collect();
    let started = Arc::clone(&hosts);
    on_namespaces(hosts, async move {
        let deployment = Deployment::start(started, &tasks, &files, Some(&join_token), &log_dir("ecs")).await;
        let voters = deployment.wait_for_three_voters().await;
        assert_eq!(voters.len(), 3);
        deployment.wait_for_health_checks(&tasks).await;
        deployment.write_and_read_everywhere().await;
    })
    .await;
}

/// `gameraft token new --role admin`: the token, and its tokens-file line.
async fn new_admin_token() -> (String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gameraft"))
        .args(["token", "new", "--role", "admin", "--name", "ecs-join"])
        .output()
        .await
        .expect("gameraft token new runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let mut lines = text.lines();
    let (Some(token), Some(line)) = (lines.next(), lines.next()) else { panic!("two lines: {text:?}") };
    (token.to_string(), format!("{line}\n"))
}
