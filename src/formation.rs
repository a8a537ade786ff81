//! Identical nodes forming one cluster: `--bootstrap-expect N` with
//! `--peers` or `--discovery-dns`.
//!
//! The rule, the same on every node with no state:
//!
//! 1. Discover: the `--peers` list, or every address `--discovery-dns`
//!    resolves to (at this node's HTTP port); ask each for its
//!    `GET /formation` (its id, addresses, incarnation, whether it is in a
//!    cluster, and the founders it has settled on).
//! 2. If a node found is in a cluster: when its founders include this node
//!    (same id and incarnation), initialize with those founders (it was
//!    settled on with this node's agreement); otherwise join that cluster
//!    through it, as `--join` does.
//! 3. Else, when exactly N nodes answer (this one included), settle on them
//!    as the founders, sorted by id, and from then on never on another set.
//!    Once every one of them reports the same founders, initialize with them:
//!    all N as voters, a cluster id derived from their ids and incarnations.
//!
//! Every founder initializes with the same membership, which OpenRaft
//! allows (the founders then elect a leader as usual); nodes that settled on
//! different sets can never all agree, because each node keeps the first
//! set it settled on. More than N nodes found, none in a cluster, is a
//! misconfiguration: the nodes wait, saying so. A node with state ignores
//! all of this and resumes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::FormationSettings;
use crate::identity::NodeIdentity;
use crate::types::{NodeId, PeerAddr, Raft};

/// How often discovery and the probes run while the cluster forms.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one probe of a peer may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the node says what it is waiting for.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A node as it would be a founding member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Founder {
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
    pub incarnation: String,
}

impl Founder {
    pub fn new(id: NodeId, addr: &PeerAddr) -> Self {
        Self {
            id,
            raft_addr: addr.raft_addr.clone(),
            http_addr: addr.http_addr.clone(),
            incarnation: addr.incarnation.clone(),
        }
    }

    /// Its addresses and incarnation, as the membership records them.
    fn addr(&self) -> PeerAddr {
        PeerAddr {
            raft_addr: self.raft_addr.clone(),
            http_addr: self.http_addr.clone(),
            incarnation: self.incarnation.clone(),
        }
    }
}

/// What `GET /formation` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FormationStatus {
    /// This node.
    pub node: Founder,
    /// Whether this node is in a cluster.
    pub in_cluster: bool,
    /// The founders this node has settled on (sorted by id), if any.
    pub founders: Option<Vec<Founder>>,
}

/// The founders this node has settled on, shared with `GET /formation`.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<Mutex<Option<Vec<Founder>>>>);

impl Board {
    pub fn founders(&self) -> Option<Vec<Founder>> {
        crate::locks::lock(&self.0).clone()
    }

    /// Settles on `founders` unless already settled; returns the founders
    /// settled on.
    fn settle(&self, founders: Vec<Founder>) -> Vec<Founder> {
        crate::locks::lock(&self.0).get_or_insert(founders).clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormationError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot record the cluster id: {0}")]
    ClusterId(#[source] crate::disk::DataDirError),
    #[error("cannot initialize the cluster: {0}")]
    Initialize(String),
}

/// How the formation ended for this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Formed {
    /// This node is one of the founders; Raft is initialized.
    Founded,
    /// A cluster exists without this node: join it through this URL.
    JoinThrough(String),
}

/// Everything the formation needs.
pub struct Formation {
    pub settings: FormationSettings,
    pub me: Founder,
    /// The port peers' HTTP APIs listen on, for DNS discovery.
    pub http_port: u16,
    /// `http` or `https`: the nodes' HTTP APIs, like this node's.
    pub scheme: &'static str,
    /// Sent as a bearer token to the peers (the join token).
    pub token: Option<String>,
    pub trusted_ca_pem: Option<String>,
    pub board: Board,
    pub identity: Arc<NodeIdentity>,
    pub raft: Raft,
}

impl Formation {
    /// Runs the rule in the module doc until this node founds the cluster or
    /// finds one to join.
    pub async fn run(self) -> Result<Formed, FormationError> {
        let mut client = reqwest::Client::builder().timeout(PROBE_TIMEOUT);
        if let Some(pem) = &self.trusted_ca_pem {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
        }
        let client = client.build()?;
        let expect = self.settings.bootstrap_expect.unwrap_or(1);
        let mut last_said = None::<Instant>;
        loop {
            let found = self.discover_and_probe(&client).await;
            if let Some(member) = found.values().find(|status| status.in_cluster) {
                let founders = member.founders.clone().filter(|founders| founders.contains(&self.me));
                return match founders {
                    Some(founders) => self.initialize(&founders).await,
                    None => Ok(Formed::JoinThrough(format!("{}://{}", self.scheme, member.node.http_addr))),
                };
            }
            if found.len() == expect {
                self.board.settle(found.values().map(|status| status.node.clone()).collect());
            }
            if let Some(founders) = self.board.founders() {
                let agreed =
                    |status: &FormationStatus| status.node == self.me || status.founders.as_ref() == Some(&founders);
                if founders.iter().all(|f| found.get(&f.id).is_some_and(agreed)) {
                    return self.initialize(&founders).await;
                }
            }
            if last_said.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
                let ids: Vec<NodeId> = found.keys().copied().collect();
                let settled = self.board.founders().map(|f| f.iter().map(|f| f.id).collect::<Vec<_>>());
                tracing::info!(expect, ?ids, ?settled, "forming the cluster: waiting for its initial members");
                last_said = Some(Instant::now());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Every node found, this one included, by id.
    async fn discover_and_probe(&self, client: &reqwest::Client) -> BTreeMap<NodeId, FormationStatus> {
        let mut found = BTreeMap::new();
        let me = FormationStatus { node: self.me.clone(), in_cluster: false, founders: self.board.founders() };
        found.insert(self.me.id, me);
        let mut probes = tokio::task::JoinSet::new();
        for addr in self.addresses().await {
            probes.spawn(probe(client.clone(), self.scheme, addr, self.token.clone()));
        }
        while let Some(probed) = probes.join_next().await {
            if let Ok(Some(status)) = probed {
                found.entry(status.node.id).or_insert(status);
            }
        }
        found
    }

    async fn addresses(&self) -> Vec<String> {
        let Some(name) = &self.settings.discovery_dns else {
            return self.settings.peers.clone();
        };
        match tokio::net::lookup_host((name.as_str(), self.http_port)).await {
            Ok(addrs) => addrs.map(|addr| addr.to_string()).collect(),
            Err(err) => {
                tracing::debug!(%name, %err, "discovery: the name does not resolve (yet)");
                Vec::new()
            }
        }
    }

    async fn initialize(&self, founders: &[Founder]) -> Result<Formed, FormationError> {
        let cluster_id = cluster_id_of(founders);
        self.identity.adopt_cluster(&cluster_id).map_err(FormationError::ClusterId)?;
        let members: BTreeMap<NodeId, PeerAddr> = founders.iter().map(|f| (f.id, f.addr())).collect();
        let ids: Vec<NodeId> = members.keys().copied().collect();
        match self.raft.initialize(members).await {
            Ok(()) => {}
            // Already in motion: a founder's first RPC arrived first.
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
            Err(err) => return Err(FormationError::Initialize(err.to_string())),
        }
        tracing::info!(%cluster_id, founders = ?ids, "formed the cluster with its initial members");
        Ok(Formed::Founded)
    }
}

/// A peer's `GET /formation`, or `None` if it does not answer it (yet).
async fn probe(
    client: reqwest::Client,
    scheme: &'static str,
    addr: String,
    token: Option<String>,
) -> Option<FormationStatus> {
    let mut request = client.get(format!("{scheme}://{addr}/formation"));
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        tracing::debug!(%addr, status = %response.status(), "discovery: a peer refused the probe");
        return None;
    }
    response.json().await.ok()
}

/// The cluster id every founder derives alike from the founders.
fn cluster_id_of(founders: &[Founder]) -> String {
    let mut hash = Sha256::new();
    for founder in founders {
        hash.update(format!("{}:{};", founder.id, founder.incarnation));
    }
    let digest = hash.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    // The form of a drawn cluster id (`disk::format::random_id`).
    format!("{:032x}", u128::from_be_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn founder(id: NodeId) -> Founder {
        Founder {
            id,
            raft_addr: format!("10.0.0.{id}:5000"),
            http_addr: format!("10.0.0.{id}:8080"),
            incarnation: format!("inc-{id}"),
        }
    }

    #[test]
    fn every_founder_derives_the_same_cluster_id_and_other_founders_another() {
        let founders = [founder(1), founder(2), founder(3)];
        assert_eq!(cluster_id_of(&founders), cluster_id_of(&founders.clone()));
        assert_eq!(cluster_id_of(&founders).len(), 32);
        assert_ne!(cluster_id_of(&founders), cluster_id_of(&[founder(1), founder(2), founder(4)]));
    }

    #[test]
    fn a_node_keeps_the_first_founders_it_settled_on() {
        let board = Board::default();
        assert_eq!(board.settle(vec![founder(1), founder(2)]), vec![founder(1), founder(2)]);
        assert_eq!(board.settle(vec![founder(1), founder(3)]), vec![founder(1), founder(2)]);
        assert_eq!(board.founders(), Some(vec![founder(1), founder(2)]));
    }
}
