//! The client side of the peer network, used by OpenRaft's core.
//!
//! One tonic `Channel` (one HTTP/2 connection, multiplexed) is kept per peer
//! address and shared by every replication stream and vote to that peer.
//! Channels connect lazily, so `new_client` never blocks on a dead peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tonic::transport::{Channel, Endpoint};

use super::fault::PeerDelay;
use super::MAX_MESSAGE_BYTES;
use crate::identity::NodeIdentity;
use crate::proto::pb;
use crate::proto::pb::raft_service_client::RaftServiceClient;
use crate::proto::ConvertError;
use crate::tls::PeerTls;
use crate::types::{NodeId, PeerAddr, TypeConfig};

/// Creates [`PeerConnection`]s for OpenRaft and keeps one channel per peer.
#[derive(Clone)]
pub struct PeerNetwork {
    identity: Arc<NodeIdentity>,
    /// With peer TLS: this node's certificate and the cluster CA.
    tls: Option<PeerTls>,
    connect_timeout: Duration,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    delay: PeerDelay,
}

impl PeerNetwork {
    pub fn new(identity: Arc<NodeIdentity>, tls: Option<PeerTls>, connect_timeout: Duration) -> Self {
        Self { identity, tls, connect_timeout, channels: Arc::default(), delay: PeerDelay::default() }
    }

    /// Delays every outgoing RPC by `delay` (fault injection).
    pub fn with_delay(mut self, delay: PeerDelay) -> Self {
        self.delay = delay;
        self
    }

    fn channel(&self, raft_addr: &str) -> Result<Channel, String> {
        let mut channels = crate::locks::lock(&self.channels);
        if let Some(channel) = channels.get(raft_addr) {
            return Ok(channel.clone());
        }
        let invalid = |e: tonic::transport::Error| format!("invalid raft address {raft_addr:?}: {e}");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{raft_addr}")).map_err(invalid)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.channel_config()).map_err(invalid)?;
        }
        let endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(raft_addr.to_string(), channel.clone());
        Ok(channel)
    }
}

impl PeerNetwork {
    /// Sends TimeoutNow (`handoff.rs`) to `target`: this node, leader in
    /// `term` with its log ending at `last_log_index`, asks it to campaign.
    pub async fn timeout_now(
        &self,
        target: NodeId,
        addr: &PeerAddr,
        term: u64,
        last_log_index: u64,
        limit: Duration,
    ) -> Result<(), tonic::Status> {
        let channel = self.channel(&addr.raft_addr).map_err(tonic::Status::invalid_argument)?;
        let mut client = RaftServiceClient::new(channel);
        let leader = pb::LeaderId { term, node_id: self.identity.node_id() };
        let mut request = tonic::Request::new(pb::TimeoutNowRequest { leader: Some(leader), last_log_index });
        self.identity.stamp(request.metadata_mut(), target, &addr.incarnation);
        match tokio::time::timeout(limit, client.timeout_now(request)).await {
            Ok(reply) => reply.map(|_| ()),
            Err(_elapsed) => Err(tonic::Status::deadline_exceeded(format!("no answer within {limit:?}"))),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerAddr) -> PeerConnection {
        let client = self.channel(&node.raft_addr).map(|channel| {
            RaftServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        PeerConnection {
            identity: self.identity.clone(),
            target,
            target_incarnation: node.incarnation.clone(),
            client,
            delay: self.delay.clone(),
        }
    }
}

/// OpenRaft's handle on one peer.
pub struct PeerConnection {
    identity: Arc<NodeIdentity>,
    target: NodeId,
    /// The incarnation the membership names for `target`; every RPC says it
    /// is for that one.
    target_incarnation: String,
    /// `Err` when the peer's address cannot even be parsed; every RPC then
    /// reports the peer as unreachable so OpenRaft backs off.
    client: Result<RaftServiceClient<Channel>, String>,
    delay: PeerDelay,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadAddress(String);

#[derive(Debug, thiserror::Error)]
#[error("peer sent an invalid reply: {0}")]
struct InvalidReply(#[from] ConvertError);

impl PeerConnection {
    /// Runs one RPC under OpenRaft's deadline and sorts failures the way
    /// OpenRaft needs them: a peer that cannot be reached is `Unreachable` (the
    /// replication stream backs off), a slow one is `Timeout`, a broken reply is
    /// a `NetworkError` (retried), and an error the peer's Raft returned is a
    /// `RemoteError`.
    async fn call<Msg, Reply, Resp, E, F, Fut>(
        &mut self,
        action: RPCTypes,
        option: &RPCOption,
        message: Msg,
        rpc: F,
    ) -> Result<Resp, RPCError<NodeId, PeerAddr, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<Msg>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Reply>, tonic::Status>>,
        Reply: TryInto<Result<Resp, RaftError<NodeId, E>>, Error = ConvertError>,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(msg) => return Err(RPCError::Unreachable(Unreachable::new(&BadAddress(msg.clone())))),
        };
        let mut request = tonic::Request::new(message);
        self.identity.stamp(request.metadata_mut(), self.target, &self.target_incarnation);
        let ttl = option.hard_ttl();
        let delay = self.delay.clone();
        let target = self.target;
        let delayed = async move {
            delay.wait(target).await;
            rpc(client, request).await
        };
        let reply = match tokio::time::timeout(ttl, delayed).await {
            Err(_elapsed) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.identity.node_id(),
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(status)) => return Err(status_to_rpc_error(status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match reply.try_into() {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(raft_err)) => Err(RPCError::RemoteError(RemoteError::new(self.target, raft_err))),
            Err(convert) => Err(RPCError::Network(NetworkError::new(&InvalidReply(convert)))),
        }
    }
}

/// Transport failures (refused, reset, DNS) come back from tonic as
/// `Unavailable`; those peers are unreachable and retrying at once is waste.
/// So is a peer that refused us for who we are (`FailedPrecondition`: another
/// cluster, or a new incarnation not admitted yet) until the membership
/// changes, and one whose certificate does not match (`PermissionDenied`).
fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, PeerAddr, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerAddr, RaftError<NodeId>>> {
        let req = pb::AppendEntriesRequest::from(rpc);
        self.call(RPCTypes::AppendEntries, &option, req, |mut c, r| async move { c.append_entries(r).await }).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerAddr, RaftError<NodeId>>> {
        let req = pb::VoteRequest::from(rpc);
        self.call(RPCTypes::Vote, &option, req, |mut c, r| async move { c.vote(r).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, PeerAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        let req = pb::InstallSnapshotRequest::from(rpc);
        self.call(RPCTypes::InstallSnapshot, &option, req, |mut c, r| async move { c.install_snapshot(r).await }).await
    }
}
