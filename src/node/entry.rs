//! How a starting node enters its cluster, once Raft is built:
//!
//! - **with Raft state**, it resumes; if it now advertises other addresses
//!   than the membership records for it (it moved: a new IP, new ports), it
//!   asks the leader, through the members it knows, to rewrite them
//!   (`membership`), and holds its campaigns meanwhile, for a bound;
//! - **with none**, it joins through `--join`, or forms the cluster with
//!   identical nodes (`formation`), or founds a one-node cluster with
//!   `--bootstrap`; with none of these it refuses to start, so a node that
//!   lost its data never founds a second cluster.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::NodeError;
use crate::config::NodeConfig;
use crate::disk::DataDir;
use crate::formation;
use crate::identity::NodeIdentity;
use crate::membership::{self, JoinRequest};
use crate::types::{Membership, PeerAddr, Raft};

/// What the node knows about itself when it enters its cluster.
pub(super) struct Entry<'a> {
    pub config: &'a NodeConfig,
    pub raft: &'a Raft,
    pub identity: &'a Arc<NodeIdentity>,
    pub data_dir: Option<&'a DataDir>,
    /// The membership as Raft has it at start.
    pub stored: &'a Membership,
    /// What this node advertises.
    pub addr: &'a PeerAddr,
    pub http_port: u16,
    /// The cluster CA, trusted when a member's URL is https.
    pub trusted_ca_pem: Option<String>,
    /// The founders this node settles on, shared with `GET /formation`.
    pub board: formation::Board,
}

/// Starts what the node does to enter its cluster (module doc); returns
/// the task that asks the cluster, if there is one.
pub(super) async fn enter_cluster(e: Entry<'_>) -> Result<Option<JoinHandle<Result<(), NodeError>>>, NodeError> {
    let Entry { config, raft, identity, stored, addr, .. } = e;
    let node_id = identity.node_id();
    // What a request to the cluster about this node carries, whichever
    // branch below sends one.
    let join_request = |fresh| JoinRequest {
        id: node_id,
        raft_addr: addr.raft_addr.clone(),
        http_addr: addr.http_addr.clone(),
        incarnation: addr.incarnation.clone(),
        fresh,
    };
    let token = config.auth.join_token.clone();
    let ca_pem = e.trusted_ca_pem;
    let join_timeout = config.api.join_timeout();
    let scheme = config.auth.http_scheme();
    let join_task = if raft.is_initialized().await.map_err(|e| NodeError::Raft(Box::new(e)))? {
        if identity.cluster_id().is_none() {
            let path = e.data_dir.map(|dir| dir.path().to_path_buf()).unwrap_or_default();
            return Err(NodeError::NoClusterId { path });
        }
        tracing::info!(node_id, "resuming with existing raft state");
        match stored.get_node(&node_id) {
            Some(old) if old.raft_addr != addr.raft_addr || old.http_addr != addr.http_addr => {
                tracing::info!(node_id, from = %old, to = %addr, "this node moved: asking the leader to update its addresses");
                // Its peers still dial the old addresses, so it hears no
                // leader: a campaign now would only raise the term and
                // depose the leader once the update lets them meet.
                // Held for a bound, in case no leader can be reached;
                // not at all when no other voter could lead.
                if stored.voter_ids().any(|id| id != node_id) {
                    let hold = Duration::from_millis(
                        config.raft.election_timeout_max_ms.saturating_mul(ELECTION_HOLD_TIMEOUTS),
                    );
                    hold_elections(raft.clone(), hold);
                }
                // Every member it knows, itself (at its new address) last:
                // if it is the leader, it applies the update itself.
                let urls = config
                    .identity
                    .join
                    .iter()
                    .cloned()
                    .chain(
                        stored
                            .nodes()
                            .filter(|(id, _)| **id != node_id)
                            .map(|(_, peer)| format!("{scheme}://{}", peer.http_addr)),
                    )
                    .chain([format!("{scheme}://{}", addr.http_addr)])
                    .collect();
                let request = join_request(false);
                let raft = raft.clone();
                Some(tokio::spawn(async move {
                    let label = "the cluster updated this node's addresses";
                    post_join(label, urls, request, token, ca_pem, join_timeout).await?;
                    // Heard from through the new addresses: campaigns are safe again.
                    raft.runtime_config().elect(true);
                    Ok(())
                }))
            }
            _ => None,
        }
    } else if config.identity.join.is_some() || config.formation.enabled() {
        let request = join_request(true);
        let task = match config.identity.join.clone() {
            Some(url) => tokio::spawn(post_join("joined the cluster", vec![url], request, token, ca_pem, join_timeout)),
            None => {
                let formation = formation::Formation {
                    settings: config.formation.clone(),
                    me: formation::Founder::new(node_id, addr),
                    http_port: e.http_port,
                    scheme,
                    token: token.clone(),
                    trusted_ca_pem: ca_pem.clone(),
                    board: e.board,
                    identity: identity.clone(),
                    raft: raft.clone(),
                };
                tokio::spawn(async move {
                    match formation.run().await? {
                        formation::Formed::Founded => Ok(()),
                        formation::Formed::JoinThrough(url) => {
                            post_join("joined the cluster", vec![url], request, token, ca_pem, join_timeout).await
                        }
                    }
                })
            }
        };
        Some(task)
    } else if !config.identity.bootstrap {
        // A directory with an empty Raft log: a join that never got far.
        return Err(NodeError::NothingToStart { node_id });
    } else {
        let cluster_id = identity.found_cluster()?;
        tracing::info!(node_id, %cluster_id, "--bootstrap and no state: founding a new one-node cluster");
        raft.initialize(membership::bootstrap_members(node_id, addr.clone()))
            .await
            .map_err(|e| NodeError::Bootstrap(Box::new(e)))?;
        None
    };
    Ok(join_task)
}

/// How many of the longest election timeouts a moved node holds its
/// campaigns while it asks the leader to update its addresses.
const ELECTION_HOLD_TIMEOUTS: u64 = 3;

/// Disables this node's elections, and enables them again after `hold`
/// (or earlier, by whoever disabled them).
fn hold_elections(raft: Raft, hold: Duration) {
    raft.runtime_config().elect(false);
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        raft.runtime_config().elect(true);
    });
}

/// Sends `request` as `POST /nodes` to the members at `urls`, one after
/// the other, retrying while the cluster is unreachable or busy; gives up
/// only when the cluster refuses (4xx). A join, or a member's address
/// update; `done` is the log line for the cluster's yes.
async fn post_join(
    done: &'static str,
    urls: Vec<String>,
    request: JoinRequest,
    token: Option<String>,
    trusted_ca_pem: Option<String>,
    timeout: Duration,
) -> Result<(), NodeError> {
    let mut client = reqwest::Client::builder().timeout(timeout + Duration::from_secs(10));
    // An https:// member is trusted if its certificate is from the cluster CA.
    if let Some(pem) = trusted_ca_pem {
        client = client.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    let client = client.build()?;
    let mut delay = Duration::from_millis(200);
    // Every retry carries the same incarnation: the leader replaces an old
    // member of this id once, and a retry goes on from where it was.
    for url in urls.iter().cycle() {
        let endpoint = format!("{}/nodes", url.trim_end_matches('/'));
        let mut post = client.post(&endpoint).json(&request);
        if let Some(token) = &token {
            post = post.bearer_auth(token);
        }
        match post.send().await {
            Ok(resp) if resp.status().is_success() => {
                let body = resp.text().await.unwrap_or_default();
                tracing::info!(node_id = request.id, %url, %body, "{done}");
                return Ok(());
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Err(NodeError::JoinRefused { url: url.clone(), status, body });
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::warn!(%url, %status, %body, "not accepted yet; retrying");
            }
            Err(err) => tracing::warn!(%url, %err, "cannot reach the cluster; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    // `urls` is never empty; an empty list has no one to ask.
    Err(NodeError::NoMemberToAsk)
}
