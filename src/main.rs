//! The `gameraft` binary: `serve` runs one node, `cluster` runs a local
//! cluster of them.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gameraft::auth::{self, Role};
use gameraft::cluster::{self, ClusterConfig};
use gameraft::config::NodeConfig;
use gameraft::launcher::Listening;
use gameraft::node::RunningNode;
use gameraft::stop_signals::StopSignals;
use tracing_subscriber::EnvFilter;

// glibc's malloc was the largest single item in the leader's profile under
// load (about a quarter of its CPU, see README "Performance"); mimalloc's
// per-thread free lists make the many small allocations of a request cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    }
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
