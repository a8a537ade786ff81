//! docs/deploy.md's plain machines, as the guide writes them: its systemd
//! unit's command and environment file, its credential commands, three
//! machines (network namespaces) at the guide's addresses' places.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::deployment::{namespaces, on_namespaces, Deployment, Naming, Schedule, Setup, PROGRAM};
use super::files::{guide_blocks, Container, Mount};
use super::{gameraft, log_dir, new_admin_token, SUITE_MAX_DELAY};

/// The guide's section.
const SECTION: &str = "## Plain machines (systemd)";
/// The machines' addresses in the guide, in the order of their ids.
const GUIDE_ADDRESSES: [&str; 3] = ["10.0.0.5", "10.0.0.6", "10.0.0.7"];
/// Where the guide keeps a node's files, and its data.
const ETC: &str = "/etc/gameraft";
const DATA: &str = "/var/lib/gameraft";

/// `KEY=VALUE` lines of a systemd unit or environment file, comments out.
fn assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The unit's `ExecStart` is `gameraft serve` and its `EnvironmentFile` the
/// environment block; three machines with that file (their `WORKER_ID` and
/// the addresses made theirs) form one cluster, whatever order they start
/// in, with client tokens and peer TLS on.
#[tokio::test(flavor = "multi_thread")]
async fn the_guides_plain_machines_form_one_secure_cluster() {
    let blocks = guide_blocks(SECTION);
    let unit = blocks.iter().find(|(_, text)| text.contains("[Service]")).expect("the guide's systemd unit");
    let unit: BTreeMap<String, String> = assignments(&unit.1).into_iter().collect();
    let exec: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    assert_eq!(exec.len(), 2, "ExecStart={}", unit["ExecStart"]);
    assert!(exec[0].ends_with(&format!("/{PROGRAM}")) && exec[1] == "serve", "ExecStart={}", unit["ExecStart"]);
    let env_path = &unit["EnvironmentFile"];
    let env_file = blocks
        .iter()
        .find(|(_, text)| text.lines().next() == Some(&format!("# {env_path}")))
        .unwrap_or_else(|| panic!("the guide shows {env_path}"));
    let env = assignments(&env_file.1);
    let credentials = blocks.iter().find(|(_, text)| text.contains("gameraft certs init")).expect("credentials");
    for command in ["gameraft token new --role admin --name join", "gameraft certs init --dir ca"]
        .into_iter()
        .map(String::from)
        .chain([format!("gameraft certs node --dir ca --id 1 --host {}", GUIDE_ADDRESSES[0])])
    {
        assert!(credentials.1.contains(&command), "the guide runs {command}: the test runs it too");
    }

    let hosts = match namespaces(GUIDE_ADDRESSES.len()).await {
        Ok(hosts) => hosts,
        Err(reason) => return println!("SKIPPED: the plain machines need network namespaces: {reason}"),
    };
    let ips: Vec<Ipv4Addr> = hosts.hosts.iter().map(|h| h.ip).collect();
    let machine_ip = |value: &str| {
        GUIDE_ADDRESSES.iter().zip(&ips).fold(value.to_string(), |v, (guide, ip)| v.replace(guide, &ip.to_string()))
    };

    // The guide's credential commands, at the machines' addresses.
    let credentials_dir = tempfile::tempdir().expect("a temporary directory");
    let dir = credentials_dir.path();
    let (token, tokens_line) = new_admin_token("join").await;
    gameraft(dir, &["certs", "init", "--dir", "ca"]).await;
    for (id, ip) in ips.iter().enumerate() {
        gameraft(dir, &["certs", "node", "--dir", "ca", "--id", &(id + 1).to_string(), "--host", &ip.to_string()])
            .await;
    }

    let machines: Vec<Container> = (1..=ips.len())
        .map(|id| {
            let env = env
                .iter()
                .map(|(key, value)| {
                    let value = match key.as_str() {
                        "WORKER_ID" => id.to_string(),
                        "GAMERAFT_JOIN_TOKEN" => token.clone(),
                        _ => machine_ip(value),
                    };
                    (key.clone(), value)
                })
                .collect();
            Container {
                name: format!("machine{id}"),
                argv: vec![PROGRAM.into(), "serve".into()],
                env,
                ports: [8080, 5000].into(),
                volumes: vec![Mount::volume(ETC), Mount::volume(DATA)],
                healthcheck: Vec::new(),
            }
        })
        .collect();
    let tokens_path = env.iter().find(|(k, _)| k == "GAMERAFT_AUTH_TOKENS_FILE").map(|(_, v)| v.clone());
    let tls_dir = env.iter().find(|(k, _)| k == "GAMERAFT_PEER_TLS_DIR").map(|(_, v)| v.clone());
    let (Some(tokens_path), Some(tls_dir)) = (tokens_path, tls_dir) else {
        panic!("the environment file sets a tokens file and a peer TLS directory")
    };
    let ca = dir.join("ca");
    let files = move |machine: &Container| {
        let id = machine.var("WORKER_ID").expect("an id").to_string();
        let mut files = vec![(tokens_path.clone(), tokens_line.clone().into_bytes())];
        for file in ["ca.pem".to_string(), format!("node-{id}.pem"), format!("node-{id}-key.pem")] {
            let contents = std::fs::read(ca.join(&file)).expect("a credential file");
            files.push((format!("{tls_dir}/{file}"), contents));
        }
        files
    };
    let started = Arc::clone(&hosts);
    on_namespaces(hosts, async move {
        let setup = Setup {
            naming: Naming::Addresses,
            files: &files,
            token: Some(&token),
            log_dir: log_dir("plain-machines"),
            schedule: Schedule::random(machines.len(), SUITE_MAX_DELAY),
            project_dir: None,
        };
        let deployment = Deployment::start(started, &machines, setup).await;
        let voters = deployment.wait_for_three_voters().await;
        assert_eq!(voters, [1, 2, 3], "the machines' WORKER_IDs");
        deployment.write_and_read_everywhere().await;
        drop(credentials_dir);
    })
    .await;
}
