//! Who the node is, where it listens, and how it finds its cluster.

use std::net::SocketAddr;

use clap::Args;

use super::ConfigError;
use crate::types::NodeId;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    pub const HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
    pub const RAFT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000);
}

/// The node's id and addresses, and whether it founds or joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Node and cluster")]
pub struct IdentitySettings {
    /// This node's id. Generated at random when absent.
    #[arg(long, env = "WORKER_ID")]
    pub id: Option<NodeId>,

    /// Address the HTTP API listens on. Port 0 picks a free port.
    #[arg(long, env = "HTTP_ADDR", default_value_t = defaults::HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// Address the Raft gRPC service listens on. Port 0 picks a free port.
    #[arg(long, env = "RAFT_ADDR", default_value_t = defaults::RAFT_ADDR)]
    pub raft_addr: SocketAddr,

    /// Host (name or IP) that peers and clients should dial to reach this node.
    /// Defaults to the listen address's IP; for a wildcard listen address, the
    /// ECS task's private IP (ECS_CONTAINER_METADATA_URI_V4), else the address
    /// of the interface that routes to the peers (--join, the stored members)
    /// or of the default route, else 127.0.0.1.
    #[arg(long, env = "ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// HTTP URL of any cluster member to join (e.g. http://10.0.0.5:8080).
    /// Used only by a node with no state; one with state resumes.
    #[arg(long, env = "MASTER_URL")]
    pub join: Option<String>,

    /// Found a new one-node cluster if this node has no state. Only for the
    /// first node of a new cluster: a node with no state and neither this
    /// nor --join refuses to start, so a node that lost its data never
    /// founds a second cluster by accident. A node with state ignores it.
    #[arg(long, env = "GAMERAFT_BOOTSTRAP", conflicts_with = "join")]
    pub bootstrap: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            id: None,
            http_addr: defaults::HTTP_ADDR,
            raft_addr: defaults::RAFT_ADDR,
            advertise_host: None,
            join: None,
            bootstrap: false,
        }
    }
}

impl IdentitySettings {
    /// `--bootstrap` and `--join` exclude each other, and `--join` is an
    /// HTTP URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap && self.join.is_some() {
            // Clap refuses both flags; both environment variables reach here.
            return Err(ConfigError::BootstrapAndJoin);
        }
        if let Some(url) = &self.join {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ConfigError::JoinUrl { url: url.clone() });
            }
        }
        Ok(())
    }
}
