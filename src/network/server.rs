//! The server side of the peer network: hands peers' RPCs to the local Raft.

use openraft::raft::AppendEntriesResponse;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::raft_service_server::{RaftService, RaftServiceServer};
use super::MAX_MESSAGE_BYTES;
use crate::failover::AppendEntriesClock;
use crate::types::Raft;

/// Serves `RaftService` for one node.
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft,
    /// Told of every AppendEntries from a leader this node accepts, for the
    /// leader probe.
    appends: AppendEntriesClock,
}

impl RaftGrpcService {
    pub fn new(raft: Raft, appends: AppendEntriesClock) -> Self {
        Self { raft, appends }
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
        let req = request.into_inner().try_into()?;
        Ok(Response::new(self.raft.vote(req).await.into()))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotReply>, Status> {
        let req = request.into_inner().try_into()?;
        Ok(Response::new(self.raft.install_snapshot(req).await.into()))
    }
}
