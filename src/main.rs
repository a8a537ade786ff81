//! The `gameraft` binary: `serve` runs one node, `cluster` runs a local
//! cluster of them; `token` and `certs` make their credentials; `backup`
//! and `restore` copy a cluster's events out and start a new cluster from
//! them; `probe` is the container health check.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use gameraft::auth::{self, Role};
use gameraft::backup;
use gameraft::cluster::{self, ClusterConfig};
use gameraft::config::NodeConfig;
use gameraft::launcher::Listening;
use gameraft::node::RunningNode;
use gameraft::stop_signals::StopSignals;
use gameraft::tls::certs;
use gameraft::types::NodeId;
use tracing_subscriber::EnvFilter;

// glibc's malloc was the largest single item in the leader's profile under
// load (about a quarter of its CPU, see README "Performance"); mimalloc's
// per-thread free lists make the many small allocations of a request cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The client token `gameraft backup` presents (the name `gameraft cluster`
/// prints in its hints).
const TOKEN_ENV: &str = "GAMERAFT_TOKEN";

#[derive(Parser)]
#[command(name = "gameraft", version, about = "Raft-replicated game event log for game-server workers")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
// Parsed once at startup and consumed at once: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
enum Commands {
    /// Run one node.
    Serve(NodeConfig),
    /// Run a local cluster of nodes on 127.0.0.1 until Ctrl-C.
    Cluster(ClusterConfig),
    /// Client tokens for --auth-tokens-file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The cluster CA and node certificates for --peer-tls-dir.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Copy a consistent backup of the cluster's events from the node at
    /// URL into FILE (written to FILE.tmp, checked, then renamed). For a
    /// node that checks tokens, an admin token in GAMERAFT_TOKEN.
    Backup {
        /// The node to take it from, e.g. http://10.0.0.5:8080 (any member:
        /// a follower's backup is consistent at its own applied point).
        #[arg(long = "from")]
        url: String,
        file: PathBuf,
        /// A CA certificate (PEM) to trust for an https:// URL, such as the
        /// cluster CA (ca.pem).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Make a new data directory from a backup: the first node of a new
    /// cluster (new cluster id) holding every event of FILE. Start it with
    /// `gameraft serve --data-dir D` (no --bootstrap), then join others to it.
    Restore {
        file: PathBuf,
        /// The new node's data directory; refused unless absent or empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id (random if absent).
        #[arg(long)]
        id: Option<NodeId>,
    },
    /// GET URL; exit 0 on a 2xx answer, 1 otherwise (no answer within the
    /// timeout included). The container images' health check: `gameraft
    /// probe http://127.0.0.1:8080/ready`, as they have no curl. Plain HTTP
    /// only: it trusts no certificate.
    Probe {
        url: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a new cluster CA in DIR: ca.pem (give it to every node) and
    /// ca-key.pem (keep it where certificates are issued, nowhere else).
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue node ID a key and a certificate for HOST, signed by the CA in
    /// DIR: node-ID.pem and node-ID-key.pem. Give the node ca.pem and its
    /// two files, in its --peer-tls-dir.
    Node {
        #[arg(long)]
        dir: PathBuf,
        /// The node's id (its --id).
        #[arg(long)]
        id: NodeId,
        /// The host its peers reach it at (its advertised host: a DNS name
        /// or an IP address); they check it on every connection.
        #[arg(long)]
        host: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Draw a new random token. Prints it (line 1: give it to the client),
    /// then its line for the tokens file (line 2: append it there; the file
    /// keeps only the token's hash).
    New {
        /// What the token may do: read, write (includes read) or admin (all).
        #[arg(long)]
        role: Role,
        /// Who holds it (no spaces), shown in logs and refusals.
        #[arg(long, value_parser = token_name)]
        name: String,
    },
}

fn token_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('#') {
        return Err("a name is one word, without spaces or '#'".into());
    }
    Ok(name.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Commands::Serve(config) => serve(config).await,
        Commands::Cluster(config) => cluster::run(config).await.context("local cluster failed"),
        Commands::Token(TokenCommand::New { role, name }) => {
            let token = auth::new_token();
            println!("{token}");
            println!("{role} {} {name}", auth::hash_hex(&token));
            Ok(())
        }
        Commands::Certs(CertsCommand::Init { dir }) => {
            let ca = certs::init_ca(&dir).context("cannot make the cluster CA")?;
            println!("{}", ca.display());
            Ok(())
        }
        Commands::Certs(CertsCommand::Node { dir, id, host }) => {
            let cert = certs::issue_node(&dir, id, &host).context("cannot issue the node certificate")?;
            println!("{}", cert.display());
            Ok(())
        }
        Commands::Backup { url, file, ca_file } => {
            let token = std::env::var(TOKEN_ENV).ok().filter(|token| !token.is_empty());
            let source = backup::Source { url, token, ca_file };
            // One line: the error's message already names its cause.
            let done = backup::download(&source, &file).await.unwrap_or_else(|e| fail("backup", &e));
            println!(
                "{}: {} events up to log index {} ({} bytes, from node {}, {:.1}s)",
                file.display(),
                done.header.event_count,
                done.header.last_log_id.index,
                done.bytes,
                done.header.node_id,
                done.took.as_secs_f64()
            );
            Ok(())
        }
        Commands::Restore { file, data_dir, id } => {
            let done = backup::restore(&file, &data_dir, id).await.unwrap_or_else(|e| fail("restore", &e));
            println!(
                "{}: node {} of new cluster {}, {} events up to log index {}; start it with `gameraft serve --data-dir {}`, then join other nodes to it",
                data_dir.display(),
                done.node_id,
                done.cluster_id,
                done.header.event_count,
                done.header.last_log_id.index,
                data_dir.display()
            );
            Ok(())
        }
        Commands::Probe { url, timeout_ms } => probe(&url, Duration::from_millis(timeout_ms)).await,
    }
}

/// Ends the process after a failed `command`: one line on stderr (the
/// error's message names its cause), exit status 1.
fn fail(command: &str, err: &dyn std::fmt::Display) -> ! {
    eprintln!("gameraft {command} failed: {err}");
    std::process::exit(1)
}

async fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build().context("cannot build an HTTP client")?;
    let response = client.get(url).send().await.with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {}", body.trim());
    }
    Ok(())
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    // Before anything else: a signal during start-up stops the node once it
    // has started, gracefully, instead of killing it.
    let mut stop = StopSignals::listen().context("cannot listen for SIGTERM and SIGINT")?;
    let node = RunningNode::start(config).await.context("node failed to start")?;
    // One line on stdout says where the node is, for scripts, tests and
    // `gameraft::launcher`, which parses it back.
    println!("{}", Listening { node_id: node.node_id(), http_addr: node.http_addr, raft_addr: node.raft_addr });
    let shutdown = async move {
        let signal = stop.received().await;
        tracing::info!("{signal} received");
    };
    node.run_until(shutdown).await.context("node stopped with an error")
}
