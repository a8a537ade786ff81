//! The server side of the peer network: hands peers' RPCs to the local Raft,
//! once `identity` has admitted them (same cluster, this incarnation; and for
//! a vote, a node that is a member) and, with peer TLS, once the node the
//! RPC speaks for (the vote's node) is the one the caller's certificate
//! names.
//!
//! TimeoutNow (a stopping leader's "campaign now", `handoff.rs`) is
//! admitted the same way, its sender being the leader it names, and is
//! honoured only if that node is the leader this node follows, in the same
//! term, and this node's log reaches the leader's last index: anyone else
//! could otherwise start elections at will.

use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::listener::PeerConnectInfo;
use super::MAX_MESSAGE_BYTES;
use crate::failover::AppendEntriesClock;
use crate::identity::{NodeIdentity, Refusal};
use crate::proto::pb;
use crate::proto::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::types::{NodeId, Raft};

/// Serves `RaftService` for one node.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft,
    identity: Arc<NodeIdentity>,
    /// Told of every AppendEntries from a leader this node accepts, for the
    /// leader probe.
    appends: AppendEntriesClock,
    /// Peer TLS is on: every RPC must come over a connection whose
    /// certificate names the node it speaks for.
    certificates_required: bool,
}

impl RaftGrpcService {
    pub fn new(
        raft: Raft,
        identity: Arc<NodeIdentity>,
        appends: AppendEntriesClock,
        certificates_required: bool,
    ) -> Self {
        Self { raft, identity, appends, certificates_required }
    }

    /// Admits a peer's RPC (same cluster, addressed to this incarnation);
    /// a vote also needs this node to be a member: OpenRaft 0.9 grants a
    /// vote from an empty store, and a node not in its own membership has
    /// not been admitted. A refusal is logged and answered with its reason
    /// (the status returned).
    ///
    /// `sender` is the node the RPC speaks for (its vote's node): with peer
    /// TLS it must be the node the connection's certificate names.
    fn refusal(&self, rpc: &'static str, caller: &Caller, sender: NodeId) -> Option<Status> {
        let own_id = self.identity.node_id();
        let certified = self.certified(caller, sender);
        let admitted = certified.and_then(|()| self.identity.admit(&caller.metadata)).and_then(|()| {
            let member = rpc != "vote"
                || self.raft.metrics().borrow().membership_config.membership().get_node(&own_id).is_some();
            if member {
                Ok(())
            } else {
                Err(Refusal::NotAdmitted(own_id))
            }
        });
        admitted.err().map(|refusal| self.identity.refuse(rpc, &refusal))
    }

    fn certified(&self, caller: &Caller, sender: NodeId) -> Result<(), Refusal> {
        if !self.certificates_required {
            return Ok(());
        }
        let certified = caller.extensions.get::<PeerConnectInfo>().and_then(|info| info.certified_node);
        match certified {
            Some(node) if node == sender => Ok(()),
            Some(node) => Err(Refusal::Impersonation { certified: node, claimed: sender }),
            None => Err(Refusal::NoCertificate),
        }
    }

    /// The tonic service, with message limits matching the client's.
    pub fn into_server(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Who sent an RPC: its metadata (cluster and addressee) and its
/// connection (the certificate's node).
struct Caller {
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::Extensions,
}

impl Caller {
    fn split<T>(request: Request<T>) -> (Self, T) {
        let (metadata, extensions, message) = request.into_parts();
        (Self { metadata, extensions }, message)
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesReply>, Status> {
        let (caller, message) = Caller::split(request);
        let req: openraft::raft::AppendEntriesRequest<_> = message.try_into()?;
        if let Some(refused) = self.refusal("append_entries", &caller, req.vote.leader_id().node_id) {
            return Err(refused);
        }
        let resp = self.raft.append_entries(req).await;
        // A stale leader (answered with a higher vote) is not the one the
        // probe watches.
        if !matches!(resp, Ok(AppendEntriesResponse::HigherVote(_))) {
            self.appends.record();
        }
        Ok(Response::new(resp.into()))
    }

    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteReply>, Status> {
        let (caller, message) = Caller::split(request);
        let req: openraft::raft::VoteRequest<_> = message.try_into()?;
        if let Some(refused) = self.refusal("vote", &caller, req.vote.leader_id().node_id) {
            return Err(refused);
        }
        Ok(Response::new(self.raft.vote(req).await.into()))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotReply>, Status> {
        let (caller, message) = Caller::split(request);
        let req: openraft::raft::InstallSnapshotRequest<_> = message.try_into()?;
        if let Some(refused) = self.refusal("install_snapshot", &caller, req.vote.leader_id().node_id) {
            return Err(refused);
        }
        Ok(Response::new(self.raft.install_snapshot(req).await.into()))
    }

    async fn timeout_now(&self, request: Request<pb::TimeoutNowRequest>) -> Result<Response<pb::Empty>, Status> {
        let (caller, message) = Caller::split(request);
        let leader = message.leader.ok_or_else(|| Status::invalid_argument("TimeoutNow without a leader id"))?;
        if let Some(refused) = self.refusal("timeout_now", &caller, leader.node_id) {
            return Err(refused);
        }
        let own_id = self.identity.node_id();
        let refusal = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let voter = m.membership_config.membership().voter_ids().any(|id| id == own_id);
            if m.current_leader != Some(leader.node_id) || m.current_term != leader.term {
                Some(format!(
                    "node {} in term {} is not this node's leader (node {:?} in term {})",
                    leader.node_id, leader.term, m.current_leader, m.current_term
                ))
            } else if m.state != ServerState::Follower || !voter {
                Some(format!("this node is a {:?}, not a voting follower", m.state))
            } else if m.last_log_index.unwrap_or(0) < message.last_log_index {
                Some(format!(
                    "this node's log ends at {:?}, before the leader's last index {}",
                    m.last_log_index, message.last_log_index
                ))
            } else {
                None
            }
        };
        if let Some(reason) = refusal {
            tracing::warn!(node_id = own_id, from = leader.node_id, "refusing TimeoutNow: {reason}");
            return Err(Status::failed_precondition(reason));
        }
        tracing::info!(node_id = own_id, from = leader.node_id, term = leader.term, "TimeoutNow: campaigning now");
        self.raft.trigger().elect().await.map_err(|fatal| Status::unavailable(fatal.to_string()))?;
        Ok(Response::new(pb::Empty {}))
    }
}
