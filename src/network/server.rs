//! The server side of the peer network: hands peers' RPCs to the local Raft,
//! once `identity` has admitted them (same cluster, this incarnation; and for
//! a vote, a node that is a member).

use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use tonic::{Request, Response, Status};

use super::MAX_MESSAGE_BYTES;
use crate::failover::AppendEntriesClock;
use crate::identity::{NodeIdentity, Refusal};
use crate::proto::pb;
use crate::proto::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::types::Raft;

/// Serves `RaftService` for one node.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft,
    identity: Arc<NodeIdentity>,
    /// Told of every AppendEntries from a leader this node accepts, for the
    /// leader probe.
    appends: AppendEntriesClock,
}

impl RaftGrpcService {
    pub fn new(raft: Raft, identity: Arc<NodeIdentity>, appends: AppendEntriesClock) -> Self {
        Self { raft, identity, appends }
    }

    /// Admits a peer's RPC (same cluster, addressed to this incarnation);
    /// a vote also needs this node to be a member: OpenRaft 0.9 grants a
    /// vote from an empty store, and a node not in its own membership has
    /// not been admitted. A refusal is logged and answered with its reason
    /// (the status returned).
    fn refusal<T>(&self, rpc: &'static str, request: &Request<T>) -> Option<Status> {
        let own_id = self.identity.node_id();
        let admitted = self.identity.admit(request.metadata()).and_then(|()| {
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

    /// The tonic service, with message limits matching the client's.
    pub fn into_server(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesReply>, Status> {
        if let Some(refused) = self.refusal("append_entries", &request) {
            return Err(refused);
        }
        let req = request.into_inner().try_into()?;
        let resp = self.raft.append_entries(req).await;
        // A stale leader (answered with a higher vote) is not the one the
        // probe watches.
        if !matches!(resp, Ok(AppendEntriesResponse::HigherVote(_))) {
            self.appends.record();
        }
        Ok(Response::new(resp.into()))
    }

    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteReply>, Status> {
        if let Some(refused) = self.refusal("vote", &request) {
            return Err(refused);
        }
        let req = request.into_inner().try_into()?;
        Ok(Response::new(self.raft.vote(req).await.into()))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotReply>, Status> {
        if let Some(refused) = self.refusal("install_snapshot", &request) {
            return Err(refused);
        }
        let req = request.into_inner().try_into()?;
        Ok(Response::new(self.raft.install_snapshot(req).await.into()))
    }
}
