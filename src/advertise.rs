//! The host a node advertises: the one its peers and clients dial.
//!
//! Sources, first match wins:
//! 1. `--advertise-host` / `ADVERTISE_HOST`;
//! 2. the listen address's host, when it is a specific IP (not 0.0.0.0 or
//!    `::`): the node can be reached nowhere else;
//! 3. on ECS (`ECS_CONTAINER_METADATA_URI_V4` set), the task's private IPv4
//!    from the task metadata endpoint, for awsvpc networking;
//! 4. the address of the local interface that routes to the peers (the
//!    `--join` URL's host, the members of the stored membership), found by
//!    connecting a UDP socket, which sends nothing;
//! 5. with no peer known, the interface of the default route;
//! 6. 127.0.0.1, when nothing routes anywhere else.
//!
//! So a node listening on all interfaces advertises 127.0.0.1 only when
//! its peers are on loopback or it has no route off the machine.
//!
//! CAVEATS: a container on a bridge network (not awsvpc) has no address its
//! peers can dial that this module could find; it needs `ADVERTISE_HOST`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use serde::Deserialize;

/// The environment variable ECS sets in every container of a task.
pub const ECS_METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// How long the task metadata endpoint may take to answer. It is local to
/// the task's host, so a slow answer means something is wrong.
const ECS_TIMEOUT: Duration = Duration::from_secs(3);

/// An address no packet is sent to: the UDP `connect` only asks the kernel
/// which interface would route to it. Any address outside the machine
/// does; this one is in TEST-NET-2 (RFC 5737).
const OFF_MACHINE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 9);

/// Where the advertised host came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    ListenAddress,
    EcsMetadata,
    RouteToPeers,
    DefaultRoute,
    Loopback,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "--advertise-host",
            Source::ListenAddress => "the listen address",
            Source::EcsMetadata => "the ECS task metadata",
            Source::RouteToPeers => "the interface that routes to the peers",
            Source::DefaultRoute => "the interface of the default route",
            Source::Loopback => "loopback (no route off this machine)",
        })
    }
}

/// The host to advertise and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub source: Source,
}

/// Why the ECS task metadata gave no address. The node does not start: on
/// ECS, any other guess would likely be an address peers cannot reach.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    #[error("cannot read the ECS task metadata at {url} ({ECS_METADATA_ENV}): {source}; set ADVERTISE_HOST")]
    EcsUnreachable { url: String, source: reqwest::Error },
    #[error("the ECS task metadata at {url} answered {status}; set ADVERTISE_HOST")]
    EcsStatus { url: String, status: u16 },
    #[error("the ECS task metadata at {url} is not a v4 task document: {reason}; set ADVERTISE_HOST")]
    EcsNonsense { url: String, reason: String },
}

/// What [`detect`] decides from.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// `--advertise-host`.
    pub flag: Option<&'a str>,
    /// The IP the listeners are bound to.
    pub listen_ip: Option<IpAddr>,
    /// `ECS_CONTAINER_METADATA_URI_V4`, if set.
    pub ecs_metadata_uri: Option<&'a str>,
    /// Peers' `host:port` addresses (or URLs), in order of preference.
    pub peers: &'a [String],
}

/// Picks the host to advertise; see the module doc for the order.
pub async fn detect(inputs: Inputs<'_>) -> Result<Advertised, AdvertiseError> {
    if let Some(host) = inputs.flag {
        return Ok(Advertised { host: host.to_string(), source: Source::Flag });
    }
    if let Some(ip) = inputs.listen_ip.filter(|ip| !ip.is_unspecified()) {
        return Ok(Advertised { host: ip.to_string(), source: Source::ListenAddress });
    }
    if let Some(uri) = inputs.ecs_metadata_uri {
        match ecs_task_ip(uri).await? {
            Some(ip) => return Ok(Advertised { host: ip.to_string(), source: Source::EcsMetadata }),
            None => tracing::info!(uri, "the ECS task has no awsvpc network; trying the route to the peers"),
        }
    }
    for peer in inputs.peers {
        if let Some(ip) = route_to_peer(peer).await {
            return Ok(Advertised { host: ip.to_string(), source: Source::RouteToPeers });
        }
    }
    match local_ip_towards(OFF_MACHINE) {
        Some(ip) if !ip.is_loopback() => Ok(Advertised { host: ip.to_string(), source: Source::DefaultRoute }),
        _ => Ok(Advertised { host: Ipv4Addr::LOCALHOST.to_string(), source: Source::Loopback }),
    }
}

/// The `host:port` peers should dial for a listener bound to `bound`.
pub fn advertised(bound: SocketAddr, detected: &Advertised) -> String {
    let host = advertised_host(bound, detected);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", bound.port())
    } else {
        format!("{host}:{}", bound.port())
    }
}

/// The host peers dial for a listener bound to `bound`: the bound IP if it
/// is a specific one (unless --advertise-host overrides it), else the
/// detected host.
pub fn advertised_host(bound: SocketAddr, detected: &Advertised) -> String {
    match detected.source {
        Source::Flag => detected.host.clone(),
        _ if !bound.ip().is_unspecified() => bound.ip().to_string(),
        _ => detected.host.clone(),
    }
}

/// The v4 task metadata document, as far as it is read here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskMetadata {
    containers: Vec<ContainerMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerMetadata {
    #[serde(default)]
    networks: Vec<NetworkMetadata>,
}

#[derive(Debug, Deserialize)]
struct NetworkMetadata {
    #[serde(rename = "NetworkMode", default)]
    network_mode: String,
    #[serde(rename = "IPv4Addresses", default)]
    ipv4_addresses: Vec<String>,
}

/// The task's private IPv4 (`${uri}/task`: `Containers[].Networks[]
/// .IPv4Addresses[0]` of an awsvpc network), or `None` if the task has no
/// awsvpc network (bridge or host mode).
pub async fn ecs_task_ip(uri: &str) -> Result<Option<Ipv4Addr>, AdvertiseError> {
    let url = format!("{}/task", uri.trim_end_matches('/'));
    let unreachable = |source| AdvertiseError::EcsUnreachable { url: url.clone(), source };
    let client = reqwest::Client::builder().timeout(ECS_TIMEOUT).build().map_err(unreachable)?;
    let resp = client.get(&url).send().await.map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(AdvertiseError::EcsStatus { url, status: resp.status().as_u16() });
    }
    let body = resp.bytes().await.map_err(unreachable)?;
    let nonsense = |reason: String| AdvertiseError::EcsNonsense { url: url.clone(), reason };
    let task: TaskMetadata = serde_json::from_slice(&body).map_err(|e| nonsense(e.to_string()))?;
    let awsvpc = task.containers.iter().flat_map(|c| &c.networks).find(|n| n.network_mode == "awsvpc");
    let Some(network) = awsvpc else {
        return Ok(None);
    };
    let first =
        network.ipv4_addresses.first().ok_or_else(|| nonsense("its awsvpc network has no IPv4Addresses".into()))?;
    first
        .parse::<Ipv4Addr>()
        .map(Some)
        .map_err(|_| nonsense(format!("IPv4Addresses[0] is {first:?}, not an IPv4 address")))
}

/// The local IP that routes to `peer` (`host:port`, or an `http(s)://` URL),
/// resolving a host name; `None` if it cannot be resolved or routed to.
pub async fn route_to_peer(peer: &str) -> Option<IpAddr> {
    let authority = peer.split_once("://").map_or(peer, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let mut targets = tokio::net::lookup_host(authority).await.ok()?;
    targets.find_map(local_ip_towards)
}

/// The source address the kernel would pick to reach `target`. A UDP
/// `connect` only sets the socket's peer: no packet leaves the machine.
pub fn local_ip_towards(target: SocketAddr) -> Option<IpAddr> {
    let any: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests;
