//! The HTTP API (axum): the design's `/events` and `/status`, plus paging,
//! request ids for exactly-once writes, `/log`, cluster membership, health
//! and readiness.
//!
//! Handlers read local state directly; anything that must run on the leader
//! goes through [`AppState::on_leader`] (`forward.rs`), which runs it here or
//! relays it to the leader.

pub(crate) mod authorize;
mod backup;
mod cluster;
mod error;
mod events;
mod extract;
mod formation;
mod forward;
pub mod http_server;
pub mod openapi;
mod positions;
mod request_id;
mod status;
pub mod store_reads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use backup::BackupSlots;
pub use cluster::{JoinResponse, NodeInfo, NodesResponse};
pub use error::{ApiError, ErrorCode, LeaderHint};
pub use events::{EventsPage, EventsResponse, PostEventRequest, PostEventResponse, MAX_PAGE_LIMIT};
pub use forward::{Forwarder, HOPS_HEADER};
pub use positions::{PositionedEvent, PositionedEventsPage};
pub use request_id::{ASSIGNED_ID_HEADER, IDEMPOTENCY_KEY_HEADER};
pub use status::StatusResponse;
pub use store_reads::StoreReads;

use crate::auth::TokenStore;
use crate::config::NodeConfig;
use crate::ephemeral::EphemeralStore;
use crate::proposer::Proposer;
use crate::registry::NodeRegistry;
use crate::state_machine::EventList;
use crate::types::{NodeId, PeerAddr, Raft};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub node_id: NodeId,
    pub addr: PeerAddr,
    pub raft: Raft,
    pub registry: NodeRegistry,
    pub events: EventList,
    /// Turns at reading `events` on the blocking pool (`store_reads.rs`).
    pub reads: StoreReads,
    pub ephemeral: Arc<EphemeralStore>,
    pub settings: Arc<NodeConfig>,
    pub forwarder: Forwarder,
    /// The leader's write path: critical events are batched into entries.
    pub proposer: Proposer,
    /// Serializes membership changes on the leader: OpenRaft refuses a change
    /// while another is uncommitted.
    pub membership_lock: Arc<tokio::sync::Mutex<()>>,
    /// The client tokens requests are checked against (`authorize.rs`).
    pub tokens: Arc<TokenStore>,
    /// The founders this node settled on while forming a cluster
    /// (`crate::formation`), for `GET /formation`.
    pub formation: crate::formation::Board,
    /// The backups being served (`backup.rs`): one at a time.
    pub backups: BackupSlots,
}

/// Every route, each registered with its handler's OpenAPI documentation
/// (`routes!`), so that the router and the document `GET /openapi.json`
/// serves are made from this one list.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiInfo::openapi())
        .routes(routes!(events::post_event, events::get_events))
        .routes(routes!(positions::get_positioned_events))
        .routes(routes!(events::get_ephemeral))
        .routes(routes!(status::status))
        .routes(routes!(status::health))
        .routes(routes!(status::ready))
        .routes(routes!(cluster::list_nodes, cluster::join))
        .routes(routes!(cluster::remove))
        .routes(routes!(formation::formation))
        .routes(routes!(backup::backup))
        .routes(routes!(openapi::serve))
}

/// The document's title, version and description (from Cargo.toml).
#[derive(utoipa::OpenApi)]
struct ApiInfo;

/// The node's HTTP routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.api.max_body_bytes;
    let read_timeout = state.settings.api.read_timeout();
    let (routes, document) = routes().split_for_parts();
    routes
        .fallback(not_found)
        .layer(Extension(openapi::Document::new(document)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize::authorize))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(read_timeout))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {}", uri.path()))
}

#[cfg(test)]
mod tests;
