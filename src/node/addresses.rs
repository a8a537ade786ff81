//! Where a node listens, and the addresses it advertises to its peers and
//! clients (the host itself is found by `advertise`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

use super::NodeError;
use crate::advertise;
use crate::config::NodeConfig;
use crate::identity::NodeIdentity;
use crate::types::{NodeId, PeerAddr};

pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { addr, source })
}

pub(super) fn local_addr(listener: &TcpListener, requested: SocketAddr) -> Result<SocketAddr, NodeError> {
    listener.local_addr().map_err(|source| NodeError::Bind { addr: requested, source })
}

/// The addresses this node advertises, and the host of its Raft address
/// (the one its peers dial, which its certificate must name). The peers it
/// routes to are the --join URL's host, the formation's peers (or its DNS
/// name) and, for a node with state, the members it has applied.
pub(super) async fn advertised_addr(
    config: &NodeConfig,
    identity: &NodeIdentity,
    members: BTreeMap<NodeId, PeerAddr>,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
) -> Result<(PeerAddr, String), NodeError> {
    let node_id = identity.node_id();
    let discovery_name = config.formation.discovery_dns.as_ref().map(|name| format!("{name}:{}", http_addr.port()));
    let route_peers: Vec<String> = config
        .identity
        .join
        .iter()
        .cloned()
        .chain(config.formation.peers.iter().cloned())
        .chain(discovery_name)
        .chain(members.into_iter().filter(|(id, _)| *id != node_id).map(|(_, peer)| peer.raft_addr))
        .collect();
    let ecs_metadata_uri = std::env::var(advertise::ECS_METADATA_ENV).ok().filter(|uri| !uri.is_empty());
    let wildcard = http_addr.ip().is_unspecified() || raft_addr.ip().is_unspecified();
    let detected = advertise::detect(advertise::Inputs {
        flag: config.identity.advertise_host.as_deref(),
        listen_ip: Some(if wildcard { Ipv4Addr::UNSPECIFIED.into() } else { http_addr.ip() }),
        ecs_metadata_uri: ecs_metadata_uri.as_deref(),
        peers: &route_peers,
    })
    .await?;
    tracing::info!(node_id, host = %detected.host, source = %detected.source, "advertised host");
    let addr = PeerAddr {
        raft_addr: advertise::advertised(raft_addr, &detected),
        http_addr: advertise::advertised(http_addr, &detected),
        incarnation: identity.incarnation().to_string(),
    };
    Ok((addr, advertise::advertised_host(raft_addr, &detected)))
}
