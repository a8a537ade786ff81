//! Who may call the HTTP API (see `auth/`), and whether the node may run
//! open to anyone.

use std::path::PathBuf;

use clap::Args;

/// Client tokens: the file this node checks them against, and the token it
/// joins a cluster with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Security")]
pub struct AuthSettings {
    /// File of accepted client tokens, one per line: `<role> <sha256 hex>
    /// <name>`, roles read < write < admin (`gameraft token new` makes one).
    /// Requests then need `Authorization: Bearer <token>`, except /health and
    /// /ready. Re-read on SIGHUP. Without it, every request is allowed.
    #[arg(long, env = "GAMERAFT_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Admin token this node presents when it joins a cluster (--join) whose
    /// members check tokens.
    #[arg(long, env = "GAMERAFT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,

    /// Run with no --auth-tokens-file on a non-loopback address: anyone who
    /// reaches the node may write events and change the membership. Without
    /// this flag such a node refuses to start.
    #[arg(long, env = "GAMERAFT_INSECURE")]
    pub insecure: bool,
}
