//! How identical nodes find each other and found one cluster
//! (`formation.rs`): the initial members' addresses, or a DNS name that
//! lists them, and how many there are.

use clap::Args;

use super::ConfigError;

/// Where a node with no state looks for the cluster's initial members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Cluster formation")]
pub struct FormationSettings {
    /// HTTP addresses (HOST:PORT) of the initial members, this node's own
    /// included. With --bootstrap-expect, nodes with no state found one
    /// cluster of them (or join it once it exists).
    #[arg(long, env = "GAMERAFT_PEERS", value_delimiter = ',', conflicts_with = "discovery_dns")]
    pub peers: Vec<String>,

    /// DNS name whose A/AAAA records are the initial members (as ECS
    /// service discovery gives), dialled at this node's HTTP port.
    #[arg(long, env = "GAMERAFT_DISCOVERY_DNS")]
    pub discovery_dns: Option<String>,

    /// How many initial members found the cluster, all as voters; needs
    /// --peers or --discovery-dns; excludes --bootstrap and --join. A node
    /// with state ignores it.
    #[arg(long, env = "GAMERAFT_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,
}

impl FormationSettings {
    /// Discovery and an expected size go together; the size is at least 1.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let discovery = !self.peers.is_empty() || self.discovery_dns.is_some();
        match self.bootstrap_expect {
            Some(0) => Err(ConfigError::Zero("--bootstrap-expect")),
            Some(_) if !discovery => Err(ConfigError::FormationWithoutPeers),
            None if discovery => Err(ConfigError::PeersWithoutExpect),
            _ => Ok(()),
        }
    }

    /// Whether this node forms its cluster from discovered peers.
    pub fn enabled(&self) -> bool {
        self.bootstrap_expect.is_some()
    }
}
