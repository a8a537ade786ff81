//! Who a node is, beyond its id: the cluster it belongs to and which
//! incarnation of its id it is. Checked on every peer RPC, as etcd checks
//! its cluster and member ids.
//!
//! - The **cluster id** is drawn when a node founds a cluster
//!   (`--bootstrap`). A joining node learns it from the first RPC the
//!   leader sends it. A peer of another cluster is refused.
//! - The **incarnation** is drawn when a data directory is created (or an
//!   in-memory node starts). The join request carries it into the Raft
//!   membership, so every RPC names the incarnation it is for. A node that
//!   lost its data and came back under its old id is a new incarnation:
//!   until the leader has replaced the old member with it, it refuses every
//!   RPC addressed to the old one, so it can neither vote nor take entries
//!   as the member it no longer is.
//! - A node that is not in its own membership (not admitted yet) never
//!   grants a vote, whoever asks.
//!
//! Without these checks OpenRaft 0.9 grants a vote from an empty store:
//! a wiped voter could help elect a leader that lacks committed entries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::disk::format::random_id;
use crate::disk::{DataDir, DataDirError};
use crate::types::NodeId;

/// Metadata every peer RPC carries.
const CLUSTER_HEADER: &str = "gameraft-cluster-id";
const TO_NODE_HEADER: &str = "gameraft-to-node";
const TO_INCARNATION_HEADER: &str = "gameraft-to-incarnation";

/// How often the same kind of refusal is logged: peers retry every few
/// hundred milliseconds.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Why a peer RPC was refused. The message goes back to the sender and
/// into both nodes' logs.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the RPC carries no {0} header: the sender is not a gameraft peer of this version")]
    MissingHeader(&'static str),
    #[error("the sender belongs to another cluster ({theirs}); this node belongs to cluster {ours}")]
    OtherCluster { ours: String, theirs: String },
    #[error("the RPC is addressed to node {addressed}, but this is node {actual}: check the peer addresses")]
    OtherNode { addressed: NodeId, actual: NodeId },
    #[error(
        "the RPC is addressed to incarnation {addressed} of node {node}, but this is incarnation {actual}: \
         this node lost its data and has not been admitted again yet (it rejoins with --join)"
    )]
    OtherIncarnation { node: NodeId, addressed: String, actual: String },
    #[error("node {0} is not a member of any cluster yet: it does not vote")]
    NotAdmitted(NodeId),
    #[error("the caller's certificate is node {certified}'s, but the RPC speaks for node {claimed}")]
    Impersonation { certified: NodeId, claimed: NodeId },
    #[error("the caller presented no node certificate, and this node requires peer TLS")]
    NoCertificate,
    #[error("cannot record the cluster id: {0}")]
    Record(#[source] DataDirError),
}

impl Refusal {
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Refusal::Impersonation { .. } | Refusal::NoCertificate => {
                tonic::Status::permission_denied(self.to_string())
            }
            _ => tonic::Status::failed_precondition(self.to_string()),
        }
    }
}

/// A random node id that JavaScript clients can still hold exactly (< 2^53).
pub fn new_node_id() -> NodeId {
    use rand::Rng;
    rand::thread_rng().gen_range(1..(1u64 << 53))
}

/// This node's identity, shared by the peer client and server.
#[derive(Debug)]
pub struct NodeIdentity {
    node_id: NodeId,
    incarnation: String,
    cluster_id: Mutex<Option<String>>,
    /// Where the cluster id is recorded; `None` for an in-memory node.
    data_dir: Option<Arc<DataDir>>,
    last_refusal_logged: Mutex<Option<(String, Instant)>>,
}

impl NodeIdentity {
    /// The identity kept in `data_dir`.
    pub fn durable(data_dir: Arc<DataDir>) -> Self {
        Self::build(
            data_dir.node_id(),
            data_dir.incarnation().to_string(),
            data_dir.cluster_id().map(str::to_string),
            Some(data_dir),
        )
    }

    /// An in-memory node's identity: a new incarnation every process.
    pub fn in_memory(node_id: NodeId) -> Self {
        Self::build(node_id, random_id(), None, None)
    }

    fn build(node_id: NodeId, incarnation: String, cluster_id: Option<String>, data_dir: Option<Arc<DataDir>>) -> Self {
        Self {
            node_id,
            incarnation,
            cluster_id: Mutex::new(cluster_id),
            data_dir,
            last_refusal_logged: Mutex::new(None),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    pub fn cluster_id(&self) -> Option<String> {
        crate::locks::lock(&self.cluster_id).clone()
    }

    /// The id of the cluster this node founds: the one recorded by an
    /// earlier, interrupted bootstrap, or a new one, recorded before it is
    /// returned.
    pub fn found_cluster(&self) -> Result<String, DataDirError> {
        let mut cluster_id = crate::locks::lock(&self.cluster_id);
        if let Some(id) = cluster_id.as_ref() {
            return Ok(id.clone());
        }
        let id = random_id();
        if let Some(dir) = &self.data_dir {
            dir.record_cluster_id(&id)?;
        }
        *cluster_id = Some(id.clone());
        Ok(id)
    }

    /// Takes `cluster_id`, derived alike by every founder of a cluster
    /// formed from discovered peers (`formation.rs`), and records it. A
    /// node that already has one keeps it (it is in a cluster already).
    pub fn adopt_cluster(&self, cluster_id: &str) -> Result<(), DataDirError> {
        let mut ours = crate::locks::lock(&self.cluster_id);
        if ours.is_some() {
            return Ok(());
        }
        if let Some(dir) = &self.data_dir {
            dir.record_cluster_id(cluster_id)?;
        }
        *ours = Some(cluster_id.to_string());
        Ok(())
    }

    /// Adds this node's view of the cluster and the target's expected
    /// identity to an outgoing RPC.
    pub fn stamp(&self, metadata: &mut MetadataMap, target: NodeId, target_incarnation: &str) {
        if let Some(cluster_id) = self.cluster_id() {
            insert(metadata, CLUSTER_HEADER, &cluster_id);
        }
        insert(metadata, TO_NODE_HEADER, &target.to_string());
        insert(metadata, TO_INCARNATION_HEADER, target_incarnation);
    }

    /// Admits an incoming RPC, or says why not. A node that has no cluster id
    /// yet (it is joining) takes the sender's, but only from an RPC addressed
    /// to this very incarnation: the leader learned it from this node's own
    /// join request.
    pub fn admit(&self, metadata: &MetadataMap) -> Result<(), Refusal> {
        let theirs = header(metadata, CLUSTER_HEADER).ok_or(Refusal::MissingHeader(CLUSTER_HEADER))?;
        let to_node = header(metadata, TO_NODE_HEADER).ok_or(Refusal::MissingHeader(TO_NODE_HEADER))?;
        let to_incarnation =
            header(metadata, TO_INCARNATION_HEADER).ok_or(Refusal::MissingHeader(TO_INCARNATION_HEADER))?;
        match to_node.parse::<NodeId>() {
            Ok(addressed) if addressed == self.node_id => {}
            Ok(addressed) => return Err(Refusal::OtherNode { addressed, actual: self.node_id }),
            Err(_) => return Err(Refusal::MissingHeader(TO_NODE_HEADER)),
        }
        let mut ours = crate::locks::lock(&self.cluster_id);
        if let Some(ours) = ours.as_deref().filter(|ours| *ours != theirs) {
            return Err(Refusal::OtherCluster { ours: ours.to_string(), theirs: theirs.to_string() });
        }
        if to_incarnation != self.incarnation {
            return Err(Refusal::OtherIncarnation {
                node: self.node_id,
                addressed: to_incarnation.to_string(),
                actual: self.incarnation.clone(),
            });
        }
        match ours.as_deref() {
            Some(_) => Ok(()),
            None => {
                if let Some(dir) = &self.data_dir {
                    dir.record_cluster_id(theirs).map_err(Refusal::Record)?;
                }
                tracing::info!(node_id = self.node_id, cluster_id = theirs, "admitted by the cluster's leader");
                *ours = Some(theirs.to_string());
                Ok(())
            }
        }
    }

    /// Logs a refusal, at most once per `REFUSAL_LOG_INTERVAL` for the same
    /// reason, and returns the status to answer with.
    pub fn refuse(&self, rpc: &'static str, refusal: &Refusal) -> tonic::Status {
        let message = refusal.to_string();
        let mut last = crate::locks::lock(&self.last_refusal_logged);
        let repeated =
            matches!(&*last, Some((previous, at)) if *previous == message && at.elapsed() < REFUSAL_LOG_INTERVAL);
        if !repeated {
            tracing::warn!(node_id = self.node_id, rpc, "refusing a peer RPC: {message}");
            *last = Some((message, Instant::now()));
        }
        refusal.to_status()
    }
}

fn insert(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    // Ids and incarnations are digits and hex: always valid header values.
    if let Ok(value) = MetadataValue::try_from(value) {
        metadata.insert(key, value);
    }
}

fn header<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata.get(key).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_node_ids_fit_in_a_javascript_number() {
        for _ in 0..1000 {
            let id = super::new_node_id();
            assert!((1..(1u64 << 53)).contains(&id));
        }
    }

    use super::*;

    fn rpc(from: &NodeIdentity, to: &NodeIdentity) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        from.stamp(&mut metadata, to.node_id(), to.incarnation());
        metadata
    }

    fn founded(id: NodeId) -> NodeIdentity {
        let node = NodeIdentity::in_memory(id);
        node.found_cluster().unwrap();
        node
    }

    #[test]
    fn a_joining_node_takes_the_cluster_id_of_an_rpc_addressed_to_its_incarnation() {
        let leader = founded(1);
        let joining = NodeIdentity::in_memory(2);
        joining.admit(&rpc(&leader, &joining)).expect("admitted");
        assert_eq!(joining.cluster_id(), leader.cluster_id());
        joining.admit(&rpc(&leader, &joining)).expect("admitted");
    }

    #[test]
    fn another_cluster_is_refused() {
        let ours = founded(1);
        let stranger = founded(2);
        let refusal = ours.admit(&rpc(&stranger, &ours)).unwrap_err();
        assert!(matches!(refusal, Refusal::OtherCluster { .. }), "{refusal}");
        assert!(refusal.to_string().contains("another cluster"));
    }

    #[test]
    fn an_rpc_for_an_earlier_incarnation_is_refused_and_teaches_nothing() {
        let leader = founded(1);
        let old = NodeIdentity::in_memory(3);
        let wiped = NodeIdentity::in_memory(3);
        let refusal = wiped.admit(&rpc(&leader, &old)).unwrap_err();
        assert!(matches!(refusal, Refusal::OtherIncarnation { node: 3, .. }), "{refusal}");
        assert_eq!(wiped.cluster_id(), None, "a refused RPC must not make the node a member");
    }

    #[test]
    fn an_rpc_for_another_node_or_without_headers_is_refused() {
        let leader = founded(1);
        let two = NodeIdentity::in_memory(2);
        let three = NodeIdentity::in_memory(3);
        assert!(matches!(three.admit(&rpc(&leader, &two)), Err(Refusal::OtherNode { addressed: 2, actual: 3 })));
        assert!(matches!(two.admit(&MetadataMap::new()), Err(Refusal::MissingHeader(CLUSTER_HEADER))));
    }
}
