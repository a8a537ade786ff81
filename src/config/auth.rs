//! Who may call the HTTP API (see `auth/`) and the Raft port (see `tls/`),
//! and whether the node may run open to anyone.

use std::path::PathBuf;

use clap::Args;

/// Client tokens (the file this node checks them against, and the token it
/// joins a cluster with) and peer certificates.
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

    /// Directory with the cluster CA (`ca.pem`) and this node's certificate
    /// and key (`node-<id>.pem`, `node-<id>-key.pem`; `gameraft certs`
    /// makes them). Turns on mutual TLS on the Raft port: peers, and
    /// requests forwarded between nodes, must present a certificate of the
    /// cluster, and one that names the node they speak for.
    #[arg(long, env = "GAMERAFT_PEER_TLS_DIR")]
    pub peer_tls_dir: Option<PathBuf>,

    /// Certificate chain (PEM) for HTTPS on the client API; with
    /// --http-tls-key. A node certificate from `gameraft certs node` will do.
    #[arg(long, env = "GAMERAFT_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --http-tls-cert.
    #[arg(long, env = "GAMERAFT_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,

    /// Run with no --auth-tokens-file or no --peer-tls-dir on a non-loopback address: anyone who
    /// reaches the node may write events and change the membership. Without
    /// this flag such a node refuses to start.
    #[arg(long, env = "GAMERAFT_INSECURE")]
    pub insecure: bool,
}

impl AuthSettings {
    /// The scheme of the HTTP API: `https` with a certificate for it. Nodes
    /// of one cluster are configured alike, so it is their peers' too.
    pub fn http_scheme(&self) -> &'static str {
        if self.http_tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}
