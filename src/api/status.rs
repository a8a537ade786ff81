//! `GET /status` (the design's), `GET /health` and `GET /ready`.

use axum::extract::State;
use axum::Json;
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::types::NodeId;

/// The design's `/status` body, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub node_id: NodeId,
    pub is_leader: bool,
    pub current_leader: Option<NodeId>,
    pub current_term: u64,
    pub event_count: u64,
}

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

#[derive(Debug, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub node_id: NodeId,
}

/// The process is up and serving HTTP; says nothing about the cluster.
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok".into(), node_id: state.node_id })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReadyResponse {
    pub ready: bool,
    pub node_id: NodeId,
    pub leader: NodeId,
}

/// 200 only when this node is a member, its Raft runs, and it knows a leader,
/// i.e. it can serve reads and take (or forward) writes.
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
