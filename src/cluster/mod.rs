//! `gameraft cluster`: a local cluster of `gameraft serve` processes on
//! 127.0.0.1, for trying gameraft out and for demos.
//!
//! Node 1 founds the cluster (`--bootstrap`); the others join it through
//! `--join`. Each node's log goes to `<dir>/node-<id>.log` and its data to
//! `<dir>/node-<id>/`; started again, the nodes resume from their data (the
//! `--join` is then ignored). Ctrl-C (or SIGTERM) stops every node with
//! SIGTERM, and SIGKILLs any that has not exited after a grace period.
//!
//! With `--secure`, the nodes run with peer TLS and client tokens, from
//! credentials made on the first run (`secure.rs`).
//!
//! The command takes every `serve` flag except those it sets per node
//! ([`PER_NODE_FLAGS`]) and passes the ones given on to every node
//! ([`NodeFlags`]); the nodes are started by [`crate::launcher`].

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, FromArgMatches};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Client;
use crate::launcher::{self, LaunchError, ServeCommand};
use crate::stop_signals::StopSignals;

mod secure;
pub use secure::{Credentials, CredentialsError};

/// Prints a line for whoever watches the command. Its output is for people
/// only: once nobody reads it (a closed terminal, `| head`), lines are
/// dropped and the cluster keeps running, rather than the command panicking
/// as `println!` does and killing its nodes without a graceful stop.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How long a node has to print its listening line.
const START_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// HTTP port of node 1; node i listens on base + i - 1.
    #[arg(long, default_value_t = 8081)]
    pub base_http_port: u16,
    /// Raft port of node 1; node i listens on base + i - 1.
    #[arg(long, default_value_t = 5001)]
    pub base_raft_port: u16,
    /// Directory for the nodes' log files (`node-<id>.log`) and data
    /// directories (`node-<id>/`). Running the command again on it resumes
    /// the same cluster with its events; delete it to start from scratch.
    #[arg(long, default_value = "gameraft-cluster")]
    pub dir: PathBuf,
    /// Keep every node's state in memory: nothing survives a stop.
    #[arg(long)]
    pub in_memory: bool,
    /// Run with peer TLS and client tokens: a cluster CA, a certificate
    /// per node and an admin token are made in DIR/secure/ on the first
    /// run (and reused after); the command prints how to use them.
    #[arg(long)]
    pub secure: bool,
    #[command(flatten)]
    pub node_flags: NodeFlags,
}

/// The `serve` flags the cluster sets for each node itself; it takes every
/// other `serve` flag and passes it on to every node.
pub const PER_NODE_FLAGS: [&str; 11] = [
    "id",
    "http_addr",
    "raft_addr",
    "advertise_host",
    "join",
    "bootstrap",
    "peers",
    "discovery_dns",
    "bootstrap_expect",
    "data_dir",
    "in_memory",
];

/// The `serve` flags given to `gameraft cluster` (on its command line or in
/// the environment), as `serve` arguments for every node. `cluster` accepts
/// every `serve` flag but [`PER_NODE_FLAGS`], with its clap definition
/// (name, variable, parser, help), so a new `serve` flag is passed on with
/// no change here.
#[derive(Debug, Clone, Default)]
pub struct NodeFlags(pub Vec<OsString>);

impl NodeFlags {
    fn definitions() -> Vec<Arg> {
        launcher::serve_flags()
            .get_arguments()
            .filter(|arg| !PER_NODE_FLAGS.contains(&arg.get_id().as_str()))
            .map(|arg| arg.clone().help_heading("Passed to every node"))
            .collect()
    }
}

impl NodeFlags {
    /// The value given for the `serve` flag `--<long>`, if any.
    fn value(&self, long: &str) -> Option<String> {
        let prefix = format!("--{long}=");
        self.0.iter().find_map(|arg| arg.to_str()?.strip_prefix(&prefix).map(str::to_string))
    }
}

impl Args for NodeFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(Self::definitions())
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for NodeFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        launcher::serve_args_set_in(matches, &Self::definitions()).map(Self)
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--nodes must be between 1 and 99")]
    NodeCount,
    #[error("cannot find the gameraft executable: {0}")]
    Executable(#[source] std::io::Error),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node {id} did not start (see {}): {source}", log.display())]
    Start {
        id: u16,
        log: PathBuf,
        #[source]
        source: LaunchError,
    },
    #[error("the cluster did not form within {0:?}; see the node logs")]
    NotFormed(Duration),
    #[error("node {id} exited unexpectedly ({status})")]
    NodeExited { id: u16, status: String },
    #[error("waiting for a signal: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("cannot make the cluster's credentials: {0}")]
    Credentials(#[from] CredentialsError),
}

type Exits = JoinSet<(u16, std::io::Result<std::process::ExitStatus>)>;

/// Starts the cluster, prints where it is, and runs until Ctrl-C.
pub async fn run(config: ClusterConfig) -> Result<(), ClusterError> {
    if !(1..=99).contains(&config.nodes) {
        return Err(ClusterError::NodeCount);
    }
    let exe = std::env::current_exe().map_err(ClusterError::Executable)?;
    std::fs::create_dir_all(&config.dir).map_err(|source| ClusterError::Dir { path: config.dir.clone(), source })?;
    let credentials = match config.secure {
        true => Some(Credentials::prepare(&config.dir.join("secure"), config.nodes)?),
        false => None,
    };

    // Listening from the start: a SIGTERM or Ctrl-C at any moment stops
    // the nodes, instead of killing this process and leaving them running.
    let mut stop = StopSignals::listen().map_err(ClusterError::Signal)?;
    let mut pids = Vec::new();
    let mut exits = JoinSet::new();
    let outcome = tokio::select! {
        outcome = start_and_run(&config, credentials.as_ref(), &exe, &mut pids, &mut exits) => outcome,
        _ = stop.received() => Ok(()),
    };
    stop_all(&pids, &mut exits).await;
    outcome
}

async fn start_and_run(
    config: &ClusterConfig,
    credentials: Option<&Credentials>,
    exe: &Path,
    pids: &mut Vec<Pid>,
    exits: &mut Exits,
) -> Result<(), ClusterError> {
    start_nodes(config, credentials, exe, pids, exits).await?;
    tokio::select! {
        formed = wait_until_formed(config, credentials) => formed?,
        Some(Ok((id, status))) = exits.join_next() => return Err(node_exited(id, status)),
    }
    report_exits(exits).await
}

/// Starts node 1 (`--bootstrap`), then the others (`--join` node 1), each
/// once the one before listens.
async fn start_nodes(
    config: &ClusterConfig,
    credentials: Option<&Credentials>,
    exe: &Path,
    pids: &mut Vec<Pid>,
    exits: &mut Exits,
) -> Result<(), ClusterError> {
    let localhost = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let first_url = format!("http://{}", localhost(config.base_http_port));
    for id in 1..=config.nodes {
        let log_path = config.dir.join(format!("node-{id}.log"));
        let log =
            std::fs::File::create(&log_path).map_err(|source| ClusterError::Dir { path: log_path.clone(), source })?;
        let serve = ServeCommand::new(exe)
            .id(u64::from(id))
            .http_addr(localhost(config.base_http_port + id - 1))
            .raft_addr(localhost(config.base_raft_port + id - 1))
            .args(&config.node_flags.0)
            .stderr(log);
        let serve = match credentials {
            Some(credentials) => {
                serve.args(credentials.node_flags()).env(secure::JOIN_TOKEN_ENV, &credentials.admin_token)
            }
            None => serve,
        };
        let serve = match config.in_memory {
            true => serve.in_memory(),
            false => serve.data_dir(config.dir.join(format!("node-{id}"))),
        };
        let serve = match id {
            1 => serve.bootstrap(),
            _ => serve.join(&first_url),
        };
        let start_error = |source| ClusterError::Start { id, log: log_path.clone(), source };
        let mut node = serve.spawn().map_err(start_error)?;
        if let Some(pid) = node.pid() {
            pids.push(Pid::from_raw(pid as i32));
        }
        let listening = node.listening(START_LIMIT).await;
        exits.spawn(async move { (id, node.process.wait().await) });
        listening.map_err(start_error)?;
    }
    Ok(())
}

/// Polls until every node is a voter and all agree on a leader, then prints
/// the cluster.
async fn wait_until_formed(config: &ClusterConfig, credentials: Option<&Credentials>) -> Result<(), ClusterError> {
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    // Nodes that check tokens are watched with an admin token: the one made
    // for --secure, or the one the nodes join with.
    let token = credentials.map(|c| c.admin_token.clone()).or_else(|| config.node_flags.value("join-token"));
    let clients: Vec<Client> = (0..config.nodes)
        .map(|i| {
            let base = format!("http://127.0.0.1:{}", config.base_http_port + i);
            match &token {
                Some(token) => Client::with_token(base, token),
                None => Client::new(base),
            }
        })
        .collect::<Result<_, _>>()?;
    loop {
        if let Some(leader) = agreed_leader(&clients, config.nodes).await {
            say!("gameraft local cluster: {} nodes, leader is node {leader}", config.nodes);
            for (i, client) in clients.iter().enumerate() {
                let id = i as u64 + 1;
                let role = if id == leader { "  (leader)" } else { "" };
                say!("  node {id}  {}  raft 127.0.0.1:{}{role}", client.base(), config.base_raft_port + i as u16);
            }
            if let Some(credentials) = credentials {
                say_how_to_use(credentials, clients[0].base());
            }
            say!("Node logs are in {}/. Press Ctrl-C to stop the cluster.", config.dir.display());
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NotFormed(limit));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn say_how_to_use(credentials: &Credentials, base: &str) {
    let token = credentials.admin_token_path();
    say!("Secured: peers talk mutual TLS (CA and node certificates in {}/),", credentials.dir.display());
    say!("and every request but /health and /ready needs a token. The admin token is in {}:", token.display());
    say!("  export GAMERAFT_TOKEN=$(cat {})", token.display());
    say!("  curl -H \"Authorization: Bearer $GAMERAFT_TOKEN\" {base}/status");
    say!(
        "More tokens: `gameraft token new --role write --name NAME`, its second line appended to {}, then `kill -HUP` the nodes.",
        credentials.tokens_path().display()
    );
}

async fn agreed_leader(clients: &[Client], expected_voters: u16) -> Option<u64> {
    let mut leader = None;
    for client in clients {
        let nodes = client.nodes().await.ok()?;
        let voters = nodes.nodes.iter().filter(|n| n.role == "voter").count();
        if voters != usize::from(expected_voters) || nodes.leader.is_none() {
            return None;
        }
        if leader.is_some() && leader != nodes.leader {
            return None;
        }
        leader = nodes.leader;
    }
    leader
}

/// Reports each node that dies (say, killed to watch a failover) while the
/// others keep running, until the command is told to stop (see
/// [`StopSignals`]).
async fn report_exits(exits: &mut Exits) -> Result<(), ClusterError> {
    loop {
        match exits.join_next().await {
            Some(Ok((id, status))) => say!("{}; the other nodes keep running", node_exited(id, status)),
            Some(Err(_)) => {}
            None => std::future::pending().await,
        }
    }
}

fn node_exited(id: u16, status: std::io::Result<std::process::ExitStatus>) -> ClusterError {
    let status = match status {
        Ok(status) => status.to_string(),
        Err(err) => err.to_string(),
    };
    ClusterError::NodeExited { id, status }
}

async fn stop_all(pids: &[Pid], exits: &mut Exits) {
    say!("stopping {} nodes", pids.len());
    for pid in pids {
        // The node may already have exited; nothing to do then.
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let grace = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = exits.join_next() => if next.is_none() { return },
            () = &mut grace => {
                for pid in pids {
                    let _ = kill(*pid, Signal::SIGKILL);
                }
                while exits.join_next().await.is_some() {}
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterConfig,
    }

    fn parse(args: &[&str]) -> Result<ClusterConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("cluster").chain(args.iter().copied())).map(|cli| cli.cluster)
    }

    #[test]
    fn every_per_node_flag_is_a_serve_flag() {
        let serve = launcher::serve_flags();
        for id in PER_NODE_FLAGS {
            assert!(serve.get_arguments().any(|arg| arg.get_id() == id), "serve has no flag {id}");
        }
    }

    #[test]
    fn serve_flags_given_to_the_cluster_are_passed_to_every_node() {
        let config =
            parse(&["--nodes", "5", "--in-memory", "--heartbeat-ms", "100", "--write-timeout-ms", "2000"]).unwrap();
        assert_eq!((config.nodes, config.in_memory), (5, true));
        let passed: Vec<String> = config.node_flags.0.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        for expected in ["--heartbeat-ms=100", "--write-timeout-ms=2000"] {
            assert!(passed.contains(&expected.to_string()), "{expected} in {passed:?}");
        }
        assert!(!passed.iter().any(|a| a.starts_with("--in-memory")), "the cluster sets it per node: {passed:?}");
        assert!(!passed.iter().any(|a| a.starts_with("--nodes")), "the cluster's own flag: {passed:?}");
    }

    #[test]
    fn secure_credentials_are_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Credentials::prepare(dir.path(), 3).expect("made");
        let ca = std::fs::read(crate::tls::certs::ca_cert_path(dir.path())).expect("CA");
        let again = Credentials::prepare(dir.path(), 3).expect("reused");
        assert_eq!(first.admin_token, again.admin_token);
        assert_eq!(std::fs::read(crate::tls::certs::ca_cert_path(dir.path())).expect("CA"), ca, "the same CA");
        for id in 1..=3 {
            crate::tls::PeerTls::load(dir.path(), id, "127.0.0.1").expect("each node's certificate loads");
        }
        let tokens = crate::auth::TokenStore::load(&first.tokens_path()).expect("tokens file");
        assert!(tokens.check(Some(&format!("Bearer {}", first.admin_token)), crate::auth::Role::Admin).is_ok());
    }

    #[test]
    fn per_node_flags_are_not_cluster_flags() {
        for args in [&["--id", "1"][..], &["--http-addr", "127.0.0.1:1"], &["--join", "http://a:1"], &["--bootstrap"]] {
            assert!(parse(args).is_err(), "{args:?}: set per node");
        }
        assert!(parse(&["--leader-probe-ms", "0"]).is_ok());
    }
}
