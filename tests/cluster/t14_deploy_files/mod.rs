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
//!   test's own per node, or a bind mount's source; a variable naming a path
//!   under it names that directory instead. Overlays (`-f a -f b`) merge as
//!   compose merges them, after compose's `${VAR}` interpolation;
//! - **network:** the compose service names, or the ECS discovery name, resolve
//!   in every namespace to the addresses of the nodes started so far (as
//!   compose's network and Cloud Map register a container when it starts);
//!   each node must listen on the container ports the files declare;
//! - **start:** each at a random delay (up to 5 s in the 20-round proofs
//!   that `.ci/run` runs as root), so in a random order;
//! - **health check:** the image's (compose) or the task definition's (ECS) is
//!   run in each namespace and must pass once the cluster has formed.
//!
//! Not reproduced: the host side of compose's `ports`, read-only mounts, the
//! image's user (the tests run as root), ECS's ulimits and task metadata. Needs root and
//! iproute2; without them a test says why and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gameraft::launcher::ServeCommand;

mod deployment;
mod files;
mod plain_machines;

use deployment::{namespaces, on_namespaces, Deployment, Naming, Schedule, Setup, PROGRAM};
use files::{compose_containers, dockerfile_image, ecs_container, guide_blocks, read, Container};

/// How long the probe test waits for a node to listen.
const LIMIT: Duration = Duration::from_secs(60);
/// The longest delay of a node's start in a formation round: 5 s in the
/// 20-round proofs, shorter in the suite's single round.
const PROOF_MAX_DELAY: Duration = Duration::from_secs(5);
const SUITE_MAX_DELAY: Duration = Duration::from_millis(1500);

/// Where a test's node logs are kept (they outlive the test, to read after
/// a failure).
fn log_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-files").join(test)
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
    assert!(task.volume_targets().contains(&"/data"));
    assert!(task.var("WORKER_ID").is_none(), "identical tasks: no per-task id");
    assert!(task.var("GAMERAFT_INSECURE").is_none(), "the tasks run with client tokens and peer TLS");

    for service in compose_containers(&[&read("docker-compose.yml")], &image, &BTreeMap::new()) {
        assert_eq!(service.volume_targets(), ["/data"], "{}", service.name);
        assert!(service.ports.contains(&8080), "{}", service.name);
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

/// The compose files a test lays over each other (`docker compose -f ...`),
/// with the shell's variables and the directory they are in.
struct Compose {
    files: Vec<String>,
    vars: BTreeMap<&'static str, String>,
    /// Where its bind mounts' sources are; `None` if it has none.
    project_dir: Option<PathBuf>,
    /// What clients present, if the nodes want tokens.
    token: Option<String>,
}

impl Compose {
    /// `docker-compose.yml` as it is.
    fn plain() -> Self {
        Self { files: vec![read("docker-compose.yml")], vars: BTreeMap::new(), project_dir: None, token: None }
    }
}

/// The compose file's services, started in a random order with random
/// delays of up to `max_delay`, form one cluster of their 3 `WORKER_ID`s.
/// False if there are no namespaces (it says why).
async fn compose_forms_one_cluster(compose: Compose, label: &str, round: usize, max_delay: Duration) -> bool {
    let image = dockerfile_image(&read("Dockerfile"));
    let files: Vec<&str> = compose.files.iter().map(String::as_str).collect();
    let services = compose_containers(&files, &image, &compose.vars);
    assert_eq!(services.len(), 3);
    let hosts = match namespaces(services.len()).await {
        Ok(hosts) => hosts,
        Err(reason) => {
            println!("SKIPPED: the compose file needs network namespaces: {reason}");
            return false;
        }
    };
    let log_dir = log_dir(&format!("{label}/{round}"));
    let started = Arc::clone(&hosts);
    on_namespaces(hosts, async move {
        let setup = Setup {
            naming: Naming::ServiceNames,
            files: &|_| Vec::new(),
            token: compose.token.as_deref(),
            log_dir,
            schedule: Schedule::random(services.len(), max_delay),
            project_dir: compose.project_dir.clone(),
        };
        let deployment = Deployment::start(started, &services, setup).await;
        let voters = deployment.wait_for_three_voters().await;
        assert_eq!(voters, [1, 2, 3], "round {round}: the services' WORKER_IDs");
        deployment.wait_for_health_checks(&services).await;
        deployment.write_and_read_everywhere().await;
        if compose.token.is_some() {
            deployment.refuse_a_client_without_a_token().await;
        }
    })
    .await;
    true
}

/// Three tasks of the ECS task definition, identical but for their address,
/// started in a random order with random delays of up to `max_delay`, each
/// registered under the discovery name as it starts, form one cluster of 3
/// voters. False if there are no namespaces (it says why).
async fn ecs_tasks_form_one_cluster(round: usize, max_delay: Duration) -> bool {
    let image = dockerfile_image(&read("Dockerfile"));
    let text = read("deploy/ecs/task-definition.json");
    // The secret's value, and the tokens file holding its hash on the
    // config volume, as the deployment guide makes them.
    let (join_token, tokens_line) = new_admin_token("ecs-join").await;
    let secrets = BTreeMap::from([("GAMERAFT_JOIN_TOKEN", join_token.clone())]);
    let task = ecs_container(&text, &image, &secrets);
    let tasks: Vec<Container> =
        (1..=3).map(|n| Container { name: format!("task{n}"), ..ecs_container(&text, &image, &secrets) }).collect();
    let hosts = match namespaces(tasks.len()).await {
        Ok(hosts) => hosts,
        Err(reason) => {
            println!("SKIPPED: the ECS tasks need network namespaces: {reason}");
            return false;
        }
    };
    let dns = task.var("GAMERAFT_DISCOVERY_DNS").expect("the task names its discovery name").to_string();
    let mut files: Vec<(String, Vec<u8>)> =
        task.var("GAMERAFT_AUTH_TOKENS_FILE").map(|path| (path.to_string(), tokens_line.into())).into_iter().collect();
    // The cluster CA and its key, which each task issues its own
    // certificate with, as the deployment guide makes them.
    if let Some(tls_dir) = task.var("GAMERAFT_PEER_TLS_DIR") {
        let ca = tempfile::tempdir().expect("a temporary directory");
        gameraft(ca.path(), &["certs", "init", "--dir", "."]).await;
        for file in ["ca.pem", "ca-key.pem"] {
            let contents = std::fs::read(ca.path().join(file)).expect("a CA file");
            files.push((format!("{tls_dir}/{file}"), contents));
        }
    }
    let started = Arc::clone(&hosts);
    on_namespaces(hosts, async move {
        let files = move |_: &Container| files.clone();
        let setup = Setup {
            naming: Naming::DiscoveryName(dns),
            files: &files,
            token: Some(&join_token),
            log_dir: log_dir(&format!("ecs/{round}")),
            schedule: Schedule::random(tasks.len(), max_delay),
            project_dir: None,
        };
        let deployment = Deployment::start(started, &tasks, setup).await;
        let voters = deployment.wait_for_three_voters().await;
        assert_eq!(voters.len(), 3, "round {round}");
        deployment.wait_for_health_checks(&tasks).await;
        deployment.write_and_read_everywhere().await;
    })
    .await;
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_file_forms_one_cluster() {
    compose_forms_one_cluster(Compose::plain(), "compose", 0, SUITE_MAX_DELAY).await;
}

/// docs/deploy.md's "Securing the compose cluster": its commands, run as
/// they are, make the files `docker-compose.secure.yml` mounts; laid over
/// `docker-compose.yml`, the services form one cluster with client tokens
/// and peer TLS on, and answer only a client with the token.
#[tokio::test(flavor = "multi_thread")]
async fn the_secured_compose_file_forms_one_cluster_of_token_and_tls_nodes() {
    let project = tempfile::tempdir().expect("a temporary directory");
    let blocks = guide_blocks("### Securing the compose cluster");
    let (_, commands) = blocks.first().expect("the guide's commands");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gameraft")).parent().expect("the binary's directory");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let ran = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", commands])
        .current_dir(project.path())
        .env("PATH", path)
        .output()
        .expect("bash runs");
    assert!(ran.status.success(), "the guide's commands: {}", String::from_utf8_lossy(&ran.stderr));
    let token_file = std::fs::read_to_string(project.path().join("compose-join.token")).expect("the token");
    let token = token_file.lines().next().expect("line 1: the token").to_string();

    let compose = Compose {
        files: vec![read("docker-compose.yml"), read("docker-compose.secure.yml")],
        vars: BTreeMap::from([("GAMERAFT_JOIN_TOKEN", token.clone())]),
        project_dir: Some(project.path().to_path_buf()),
        token: Some(token),
    };
    let image = dockerfile_image(&read("Dockerfile"));
    let files: Vec<&str> = compose.files.iter().map(String::as_str).collect();
    for service in compose_containers(&files, &image, &compose.vars) {
        assert_eq!(service.var("GAMERAFT_INSECURE"), Some("false"), "{}", service.name);
        assert_eq!(service.var("GAMERAFT_PEER_TLS_DIR"), Some("/etc/gameraft/tls"), "{}", service.name);
        for bind in service.volumes.iter().filter_map(|mount| mount.bind.as_deref()) {
            assert!(project.path().join(bind).exists(), "{}: the guide's commands made no {bind}", service.name);
        }
    }
    compose_forms_one_cluster(compose, "compose-secure", 0, SUITE_MAX_DELAY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_identical_ecs_tasks_form_one_cluster() {
    ecs_tasks_form_one_cluster(0, SUITE_MAX_DELAY).await;
}

/// The formation rule's proof from the compose file: 20 rounds in a row,
/// start delays up to 5 s.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "on demand and in .ci/run as root: about 3 minutes"]
async fn the_compose_file_forms_one_cluster_20_times_in_a_row() {
    for round in 1..=20 {
        if !compose_forms_one_cluster(Compose::plain(), "compose", round, PROOF_MAX_DELAY).await {
            return;
        }
    }
}

/// The formation rule's proof from the ECS task definition: 20 rounds in a
/// row, start delays up to 5 s.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "on demand and in .ci/run as root: about 3 minutes"]
async fn three_identical_ecs_tasks_form_one_cluster_20_times_in_a_row() {
    for round in 1..=20 {
        if !ecs_tasks_form_one_cluster(round, PROOF_MAX_DELAY).await {
            return;
        }
    }
}

/// Runs the `gameraft` command with `args` in `dir`, as the guide's
/// commands are run; its standard output. It must succeed.
async fn gameraft(dir: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gameraft"))
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("gameraft runs");
    assert!(output.status.success(), "gameraft {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `gameraft token new --role admin --name NAME`: the token, and its
/// tokens-file line.
async fn new_admin_token(name: &str) -> (String, String) {
    let text = gameraft(Path::new("."), &["token", "new", "--role", "admin", "--name", name]).await;
    let mut lines = text.lines();
    let (Some(token), Some(line)) = (lines.next(), lines.next()) else { panic!("two lines: {text:?}") };
    (token.to_string(), format!("{line}\n"))
}
