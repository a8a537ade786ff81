//! One gameraft node: binds its two listeners, builds the Raft instance, runs
//! the gRPC and HTTP servers, and bootstraps or joins a cluster.
//!
//! ```text
//!            ┌────────────── node ───────────────┐
//!  clients ──┤ HTTP (axum) ── api ── Raft ── log store, state machine
//!            │                        │
//!  peers   ──┤ gRPC (tonic) ──────────┘  PeerNetwork ──> other nodes' gRPC
//!            └───────────────────────────────────┘
//! ```
//!
//! Start-up: the listeners and the addresses the node advertises
//! (`addresses.rs`, which must come before its certificate and Raft),
//! then Raft on the opened stores, then the servers, then entering the
//! cluster: resuming, moving, joining, forming or founding (`entry.rs`).
//!
//! With `--reap-after-ms`, the leader removes members it has not reached
//! for that long (`reaper.rs`), within the limits its rule sets.
//!
//! Shutdown (SIGTERM/SIGINT): stop taking HTTP requests and let in-flight
//! ones finish; if this node leads, hand leadership to a caught-up follower
//! (`handoff.rs`, bounded; a failure only logs); stop Raft, then stop
//! answering peers.
//!
//! Storage: the data directory (`--data-dir`, locked while the node runs)
//! unless `--in-memory`, where a restarted node is a new, empty node that
//! must join again (the leader then replaces its old membership).

mod addresses;
mod entry;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::addresses::{advertised_addr, bind, local_addr};
use crate::api::{self, AppState, Forwarder};
use crate::auth::{self, TokenFileError, TokenStore};
use crate::config::{ConfigError, NodeConfig};
use crate::disk::{DataDir, DataDirError};
use crate::ephemeral::EphemeralStore;
use crate::failover;
use crate::formation;
use crate::handoff::{Handoff, HandoffLimits, LeadershipClock};
use crate::identity::{new_node_id, NodeIdentity};
use crate::network::fault::PeerDelay;
use crate::network::{PeerNetwork, RaftGrpcService};
use crate::proposer::{BatchLimits, Proposer};
use crate::raft_log::{FileLogStore, MemLogStore};
use crate::reaper::{ReapRule, Reaper};
use crate::registry::NodeRegistry;
use crate::state_machine::GameStateMachine;
use crate::tls::{PeerTls, TlsError};
use crate::types::{NodeId, PeerAddr, Raft};

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// Boxed: OpenRaft's fatal error is large and this one travels in `Result`s.
    #[error("cannot start raft: {0}")]
    Raft(#[source] Box<openraft::error::Fatal<NodeId>>),
    /// Boxed, like `Raft`.
    #[error("cannot bootstrap the cluster: {0}")]
    Bootstrap(#[source] Box<RaftError<NodeId, InitializeError<NodeId, PeerAddr>>>),
    #[error(
        "node {node_id} has no state (a new or lost data directory) and was given neither --bootstrap \
         nor --join nor --bootstrap-expect: pass --join URL of a member to join a cluster (a member that lost \
         its data is replaced), --bootstrap to found a new cluster, or --peers (or --discovery-dns) with \
         --bootstrap-expect N to form one with its initial members"
    )]
    NothingToStart { node_id: NodeId },
    #[error(
        "data directory {path} holds Raft state but no cluster id: it was not written by this version; \
         move it away and start the node with --join to rejoin"
    )]
    NoClusterId { path: std::path::PathBuf },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("the cluster at {url} refused to let this node join or move ({status}): {body}")]
    JoinRefused { url: String, status: u16, body: String },
    #[error("no cluster member is known to ask")]
    NoMemberToAsk,
    #[error(transparent)]
    Advertise(#[from] crate::advertise::AdvertiseError),
    #[error("the HTTP server stopped: {0}")]
    HttpServer(#[source] std::io::Error),
    #[error("the gRPC server stopped: {0}")]
    GrpcServer(#[source] tonic::transport::Error),
    #[error("the {0} task ended abnormally: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    #[error("the {0} server stopped unasked")]
    ServerEnded(&'static str),
    #[error("raft stopped: {0}")]
    RaftStopped(#[source] Box<openraft::error::Fatal<NodeId>>),
    #[error("raft stopped: {0}")]
    RaftGone(#[source] openraft::metrics::WaitError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    #[error("cannot read or raise the open-file limit: {0}")]
    OpenFileLimit(#[source] std::io::Error),
    #[error(
        "the open-file limit is {limit}, but --max-connections, --max-peer-connections and the node's own \
         files need {needed}: lower them or raise the hard limit (ulimit -Hn)"
    )]
    TooFewOpenFiles { limit: u64, needed: u64 },
    #[error("forming the cluster: {0}")]
    Formation(#[from] formation::FormationError),
    #[error("peer TLS (--peer-tls-dir): {0}")]
    PeerTls(#[from] TlsError),
}

/// HTTP/2 pings on the Raft port's connections: a connection whose peer
/// does not answer within the timeout is closed.
const PEER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A started node. Drop it, or call [`RunningNode::run_until`], to stop it.
pub struct RunningNode {
    pub state: AppState,
    /// The addresses actually bound (useful with port 0).
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    stop_http: CancellationToken,
    stop_grpc: CancellationToken,
    http_task: JoinHandle<std::io::Result<()>>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    join_task: Option<JoinHandle<Result<(), NodeError>>>,
    /// For the leadership handoff on shutdown.
    peers: PeerNetwork,
    leadership: LeadershipClock,
    handoff_limits: HandoffLimits,
    /// Held (locked) for as long as the node runs.
    _data_dir: Option<Arc<DataDir>>,
}

impl RunningNode {
    /// Binds, starts Raft and both servers, and starts bootstrapping or
    /// joining. Returns once the node is listening.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        config.validate()?;
        // Connections must never take the descriptors the log needs.
        let open_files = crate::disk::open_files::raise_limit().map_err(NodeError::OpenFileLimit)?;
        let needed = (config.api.max_connections as u64)
            .saturating_add(config.raft.max_peer_connections as u64)
            .saturating_add(crate::disk::open_files::RESERVED);
        if needed > open_files {
            return Err(NodeError::TooFewOpenFiles { limit: open_files, needed });
        }
        // A tokens file that cannot be read stops the start, before anything
        // is created: a node must not come up open by mistake.
        let tokens = Arc::new(match &config.auth.auth_tokens_file {
            Some(file) => TokenStore::load(file)?,
            None => TokenStore::open_to_all(),
        });
        if tokens.enabled() {
            auth::reload_on_sighup(tokens.clone());
        }
        let raft_config = Arc::new(config.raft.to_openraft());
        // Opened first: a directory that is locked, damaged or another
        // node's must stop us before we bind anything.
        let data_dir = match config.storage.in_memory {
            true => None,
            false => Some(Arc::new(DataDir::open(&config.storage.data_dir, config.identity.id, new_node_id)?)),
        };
        let (identity, has_state) = match &data_dir {
            Some(dir) => (NodeIdentity::durable(dir.clone()), dir.has_raft_state()),
            None => (NodeIdentity::in_memory(config.identity.id.unwrap_or_else(new_node_id)), false),
        };
        let identity = Arc::new(identity);
        let node_id = identity.node_id();
        // Decided before anything is created, so that a refused start leaves
        // the directory as it found it.
        if !has_state && !config.identity.bootstrap && config.identity.join.is_none() && !config.formation.enabled() {
            return Err(NodeError::NothingToStart { node_id });
        }

        let http_listener = bind(config.identity.http_addr).await?;
        let raft_listener = bind(config.identity.raft_addr).await?;
        let http_addr = local_addr(&http_listener, config.identity.http_addr)?;
        let raft_addr = local_addr(&raft_listener, config.identity.raft_addr)?;
        // The stores, opened before Raft is built: the addresses this node
        // advertises, and so its certificate, come first.
        let (stores, events) = match &data_dir {
            Some(dir) => {
                let state_machine = GameStateMachine::open(&dir.state_dir())?
                    .with_crash_in_install_file(config.faults.fault_crash_in_install_file.clone());
                let events = state_machine.event_list();
                // Purges wait for the state machine; a log already purged
                // past it is refused here, with what to do.
                let log = FileLogStore::open(&dir.log_dir())?
                    .with_purge_limit(state_machine.durable_watermark().purge_limit())
                    .await?;
                (Stores::Durable(state_machine, log), events)
            }
            None => {
                let state_machine = GameStateMachine::in_memory();
                let events = state_machine.event_list();
                (Stores::Memory(state_machine, MemLogStore::new()), events)
            }
        };
        let (addr, raft_host) =
            advertised_addr(&config, &identity, stores.applied_members(), http_addr, raft_addr).await?;
        // A missing or wrong certificate stops the start with the command
        // that makes the right one.
        let peer_tls = match &config.auth.peer_tls_dir {
            Some(dir) => Some(PeerTls::load(dir, node_id, &raft_host)?),
            None => None,
        };
        let mut network = PeerNetwork::new(
            identity.clone(),
            peer_tls.clone(),
            Duration::from_millis(raft_config.heartbeat_interval.max(500)),
        );
        if let Some(file) = &config.faults.fault_peer_delay_file {
            network = network.with_delay(PeerDelay::from_file(file.clone()));
        }
        let peers = network.clone();
        let handoff_limits = HandoffLimits::from_openraft(&raft_config);
        let raft = match stores {
            Stores::Durable(state_machine, log) => Raft::new(node_id, raft_config, network, log, state_machine).await,
            Stores::Memory(state_machine, log) => Raft::new(node_id, raft_config, network, log, state_machine).await,
        };
        let raft = raft.map_err(|e| NodeError::Raft(Box::new(e)))?;
        // The membership as Raft has it (log entries not yet applied
        // included): what a moved node compares its addresses with.
        // Asked of RaftCore: its metrics are published only once it runs.
        let stored = raft
            .with_raft_state(|state| state.membership_state.effective().membership().clone())
            .await
            .map_err(|e| NodeError::Raft(Box::new(e)))?;

        let registry = NodeRegistry::new();
        tokio::spawn(mirror_membership(raft.clone(), registry.clone()));
        let leadership = LeadershipClock::default();
        tokio::spawn(crate::handoff::watch_leadership(raft.clone(), node_id, leadership.clone()));
        let appends = failover::AppendEntriesClock::default();
        if config.raft.leader_probe_ms > 0 {
            let probe = failover::ProbeSettings {
                interval: Duration::from_millis(config.raft.leader_probe_ms),
                heartbeat: Duration::from_millis(config.raft.heartbeat_ms),
                appends: appends.clone(),
            };
            tokio::spawn(failover::watch_leader(raft.clone(), registry.clone(), node_id, probe));
        }

        let settings = Arc::new(config.clone());
        let state = AppState {
            node_id,
            addr: addr.clone(),
            raft: raft.clone(),
            registry,
            events,
            reads: api::StoreReads::default(),
            ephemeral: Arc::new(EphemeralStore::new(settings.api.recent_actions, settings.api.max_players)),
            proposer: Proposer::spawn(raft.clone(), BatchLimits::from_config(&config), config.api.write_timeout()),
            forwarder: Forwarder::new(settings.api.forward_timeout(), peer_tls.as_ref())?,
            settings,
            membership_lock: Arc::default(),
            tokens,
            formation: formation::Board::default(),
            backups: api::BackupSlots::default(),
        };
        if let Some(after) = config.reaping.reap_after() {
            let reaper = Reaper {
                raft: raft.clone(),
                own_id: node_id,
                rule: ReapRule { after, min_voters: config.reaping.reap_min_voters },
                forwarder: state.forwarder.clone(),
                membership_lock: state.membership_lock.clone(),
                remove_timeout: config.api.join_timeout(),
            };
            tokio::spawn(reaper.run());
        }

        // The Raft port serves peers' RPCs and, beside them, the API routes
        // for requests forwarded by followers (`api/forward.rs`).
        let raft_incoming = crate::network::listener::incoming(
            raft_listener,
            peer_tls.as_ref().map(PeerTls::server_config),
            crate::network::listener::PeerListenerLimits {
                max_connections: config.raft.max_peer_connections,
                handshake_timeout: config.raft.peer_handshake_timeout(),
            },
        );
        let raft_service = RaftGrpcService::new(raft.clone(), identity.clone(), appends, peer_tls.is_some());
        let raft_port_routes =
            tonic::service::Routes::from(api::router(state.clone())).add_service(raft_service.into_server());
        let stop_grpc = CancellationToken::new();
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                // A peer that vanished without closing is found by the
                // missing ping answer, and its slot freed.
                .http2_keepalive_interval(Some(PEER_KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(PEER_KEEPALIVE_TIMEOUT))
                .add_routes(raft_port_routes)
                .serve_with_incoming_shutdown(raft_incoming, stop_grpc.clone().cancelled_owned()),
        );
        let stop_http = CancellationToken::new();
        let limits = api::http_server::ConnectionLimits {
            max_connections: config.api.max_connections,
            header_read_timeout: config.api.read_timeout(),
            write_stall_timeout: config.api.stalled_reader_timeout(),
        };
        let http_tls = match (&config.auth.http_tls_cert, &config.auth.http_tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::http_server_config(cert, key)?),
            _ => None,
        };
        let http_task = tokio::spawn(api::http_server::serve(
            http_listener,
            api::router(state.clone()),
            limits,
            http_tls,
            stop_http.clone(),
        ));
        match &data_dir {
            Some(dir) => tracing::info!(node_id, %addr, data_dir = %dir.path().display(), "listening"),
            None => tracing::info!(node_id, %addr, "listening; in memory only: nothing survives this process"),
        }

        let join_task = entry::enter_cluster(entry::Entry {
            config: &config,
            raft: &raft,
            identity: &identity,
            data_dir: data_dir.as_deref(),
            stored: &stored,
            addr: &addr,
            http_port: http_addr.port(),
            trusted_ca_pem: peer_tls.as_ref().map(|tls| tls.ca_pem().to_string()),
            board: state.formation.clone(),
        })
        .await?;

        Ok(Self {
            state,
            http_addr,
            raft_addr,
            stop_http,
            stop_grpc,
            http_task,
            grpc_task,
            join_task,
            peers,
            leadership,
            handoff_limits,
            _data_dir: data_dir,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.state.node_id
    }

    /// Serves until `shutdown` completes (or the node fails), then shuts
    /// down gracefully.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let raft = self.state.raft.clone();
        let raft_failed = async move {
            let stopped = raft.wait(None).metrics(|m| m.running_state.is_err(), "raft stopped").await;
            match stopped {
                Ok(metrics) => match &metrics.running_state {
                    Err(fatal) => NodeError::RaftStopped(Box::new(fatal.clone())),
                    Ok(()) => NodeError::ServerEnded("Raft"),
                },
                Err(err) => NodeError::RaftGone(err),
            }
        };
        let join = async {
            match self.join_task.as_mut() {
                Some(task) => match task.await {
                    Ok(result) => result,
                    Err(join_err) => Err(NodeError::Task("join", join_err)),
                },
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            err = raft_failed => Err(err),
            Err(err) = join => Err(err),
            http = &mut self.http_task => Err(match http {
                Ok(Ok(())) => NodeError::ServerEnded("HTTP"),
                Ok(Err(err)) => NodeError::HttpServer(err),
                Err(join_err) => NodeError::Task("HTTP", join_err),
            }),
            grpc = &mut self.grpc_task => Err(match grpc {
                Ok(Ok(())) => NodeError::ServerEnded("gRPC"),
                Ok(Err(err)) => NodeError::GrpcServer(err),
                Err(join_err) => NodeError::Task("gRPC", join_err),
            }),
        };
        self.shutdown().await;
        outcome
    }

    /// Stops HTTP (letting in-flight requests finish, within a bound), hands
    /// leadership over if this node leads (within [`HandoffLimits::total`]),
    /// then stops Raft, then the peer service.
    pub async fn shutdown(self) {
        let node_id = self.node_id();
        tracing::info!(node_id, "shutting down");
        if let Some(task) = &self.join_task {
            task.abort();
        }
        self.stop_http.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.http_task).await.is_err() {
            tracing::warn!(node_id, "HTTP requests still running after 10s; stopping anyway");
        }
        let handoff = Handoff {
            raft: &self.state.raft,
            own_id: node_id,
            peers: &self.peers,
            registry: &self.state.registry,
            proposer: &self.state.proposer,
            clock: &self.leadership,
            limits: self.handoff_limits,
        };
        let started = tokio::time::Instant::now();
        // Each step has its own bound; this one also covers a Raft that no
        // longer takes requests.
        let bound = self.handoff_limits.total() + Duration::from_secs(1);
        match tokio::time::timeout(bound, handoff.run()).await {
            Ok(Ok(leader)) => tracing::info!(node_id, leader, took = ?started.elapsed(), "handed leadership over"),
            Ok(Err(crate::handoff::HandoffError::NotLeader | crate::handoff::HandoffError::NoFollower)) => {}
            Ok(Err(err)) => tracing::warn!(node_id, %err, "leadership handoff failed; stopping anyway"),
            Err(_elapsed) => tracing::warn!(node_id, ?bound, "leadership handoff still running; stopping anyway"),
        }
        if let Err(err) = self.state.raft.shutdown().await {
            tracing::warn!(node_id, %err, "raft shutdown");
        }
        self.stop_grpc.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.grpc_task).await;
        tracing::info!(node_id, "stopped");
    }
}

/// Keeps the registry equal to the latest membership Raft knows.
async fn mirror_membership(raft: Raft, registry: NodeRegistry) {
    let mut metrics = raft.metrics();
    let mut seen = None;
    loop {
        let membership = metrics.borrow_and_update().membership_config.clone();
        let version = (*membership.log_id(), membership.membership().nodes().count());
        if seen != Some(version) {
            registry.sync_with(membership.membership());
            seen = Some(version);
        }
        if metrics.changed().await.is_err() {
            return; // Raft shut down.
        }
    }
}

/// A node's stores, opened, before Raft takes them.
enum Stores {
    Durable(GameStateMachine, FileLogStore),
    Memory(GameStateMachine, MemLogStore),
}

impl Stores {
    /// The members of the membership this node has applied, by id.
    fn applied_members(&self) -> BTreeMap<NodeId, PeerAddr> {
        let (Self::Durable(state_machine, _) | Self::Memory(state_machine, _)) = self;
        state_machine.applied().membership.membership().nodes().map(|(id, addr)| (*id, addr.clone())).collect()
    }
}
