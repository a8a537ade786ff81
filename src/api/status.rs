//! `GET /status` (the design's), `GET /health` and `GET /ready`.

use axum::extract::State;
use axum::Json;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::types::NodeId;

/// The design's `/status` body, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    pub is_leader: bool,
    #[schema(value_type = Option<u64>, required = true)]
    pub current_leader: Option<NodeId>,
    pub current_term: u64,
    pub event_count: u64,
}

#[utoipa::path(
    get,
    path = "/status",
    tag = "cluster",
    summary = "This node's view of the cluster",
    responses((status = 200, description = "This node's Raft state and event count.", body = StatusResponse)),
)]
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    let metrics = state.raft.metrics().borrow().clone();
    Json(StatusResponse {
        node_id: state.node_id,
        is_leader: metrics.state == ServerState::Leader,
        current_leader: metrics.current_leader,
        current_term: metrics.current_term,
        event_count: state.events.len(),
    })
}

/// `GET /health`'s body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    pub status: String,
    #[schema(value_type = u64)]
    pub node_id: NodeId,
}

/// The process is up and serving HTTP; says nothing about the cluster.
#[utoipa::path(
    get,
    path = "/health",
    tag = "cluster",
    summary = "Liveness: the process serves HTTP",
    description = "Says nothing about the cluster. Needs no token.",
    responses((status = 200, description = "The process is up.", body = HealthResponse)),
)]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok".into(), node_id: state.node_id })
}

/// `GET /ready`'s body (a node that is not ready answers 503 `not_ready`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// Always `true`.
    pub ready: bool,
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    #[schema(value_type = u64)]
    pub leader: NodeId,
}

/// 200 only when this node is a member, its Raft runs, and it knows a leader,
/// i.e. it can serve reads and take (or forward) writes.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "cluster",
    summary = "Readiness: a member that knows a leader",
    description = "For load-balancer checks. Needs no token.",
    responses(
        (status = 200, description = "This node can serve reads and take writes.", body = ReadyResponse),
        (status = 503, description = "`not_ready`: not a member yet, stopped, in an election, or no \
            leader known.", body = ApiError),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    let metrics = state.raft.metrics().borrow().clone();
    let not_ready = |reason: String| ApiError::new(ErrorCode::NotReady, reason);
    if let Err(fatal) = &metrics.running_state {
        return Err(not_ready(format!("raft has stopped: {fatal}")));
    }
    if metrics.membership_config.membership().get_node(&state.node_id).is_none() {
        return Err(not_ready("this node is not a cluster member (yet)".into()));
    }
    if metrics.state == ServerState::Candidate {
        return Err(not_ready("an election is in progress".into()));
    }
    match metrics.current_leader {
        Some(leader) => Ok(Json(ReadyResponse { ready: true, node_id: state.node_id, leader })),
        None => Err(not_ready("no leader is known".into())),
    }
}
