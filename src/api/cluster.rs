//! `GET /nodes`, `POST /nodes` (join) and `DELETE /nodes/{id}`.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorCode};
use super::extract::{ApiJson, ApiPath};
use super::forward::{ForwardRequest, LocalError};
use super::AppState;
use crate::membership::{self, JoinOutcome, JoinRequest, MembershipError};
use crate::types::NodeId;

/// One member, as `GET /nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    #[schema(value_type = u64)]
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
    /// `voter` or `learner`.
    #[schema(pattern = "^(voter|learner)$")]
    pub role: String,
    pub is_leader: bool,
}

/// `GET /nodes`: this node's copy of the membership.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodesResponse {
    #[schema(value_type = Option<u64>, required = true)]
    pub leader: Option<NodeId>,
    pub term: u64,
    pub nodes: Vec<NodeInfo>,
}

/// `POST /nodes` done.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    pub success: bool,
    pub message: String,
    #[schema(value_type = u64)]
    pub node_id: NodeId,
    /// `already_member`, `joined`, `replaced` or `address_updated` (a
    /// member, same incarnation, at new addresses).
    #[schema(pattern = "^(already_member|joined|replaced|address_updated)$")]
    pub outcome: String,
}

/// `DELETE /nodes/{id}` done.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemoveResponse {
    pub success: bool,
    pub message: String,
    #[schema(value_type = u64)]
    pub node_id: NodeId,
}

/// Every member, as this node's copy of the membership has it.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "cluster",
    summary = "The members",
    responses((status = 200, description = "Every member, as this node's copy of the membership has it.",
        body = NodesResponse)),
)]
pub async fn list_nodes(State(state): State<AppState>) -> Json<NodesResponse> {
    let (leader, term) = {
        let metrics = state.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.current_leader, metrics.current_term)
    };
    let nodes = state
        .registry
        .members()
        .into_iter()
        .map(|m| NodeInfo {
            id: m.id,
            raft_addr: m.addr.raft_addr,
            http_addr: m.addr.http_addr,
            role: if m.voter { "voter" } else { "learner" }.into(),
            is_leader: Some(m.id) == leader,
        })
        .collect();
    Json(NodesResponse { leader, term, nodes })
}

/// Adds the node to the cluster (learner, catch-up, voter); run on the leader.
#[utoipa::path(
    post,
    path = "/nodes",
    tag = "cluster",
    summary = "Join a node",
    description = "What `--join` sends, to any member: the node becomes a learner, catches up and is \
        promoted to voter. The same id and addresses again are harmless. A member (same id and \
        incarnation) at new addresses has its addresses rewritten (`address_updated`): what a node \
        restarted on its data directory at a new address sends.",
    request_body = JoinRequest,
    responses(
        (status = 200, description = "The node is a voter.", body = JoinResponse),
        (status = 400, description = "`malformed_json`, `invalid_body`, or `invalid_address`: an address \
            that is not `host:port` (a valid host name or IP, a port 1-65535, 255 bytes at most).", body = ApiError),
        (status = 409, description = "`address_conflict`: only a member's recorded incarnation \
            moves it, and never onto another member's address; or \
            `too_many_members`: the cluster has `--max-members` members.", body = ApiError),
        (status = 413, description = "`payload_too_large`.", body = ApiError),
        (status = 415, description = "`unsupported_content_type`.", body = ApiError),
        (status = 422, description = "`invalid_field`.", body = ApiError),
        (status = 500, description = "`membership_failed`: Raft refused the change.", body = ApiError),
        (status = 503, description = "`not_leader`: no leader within `--leader-wait-ms`.", body = ApiError),
        (status = 504, description = "`membership_timeout` (it may still complete) or `outcome_unknown` \
            (the leader did not answer).", body = ApiError),
    ),
)]
pub async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<JoinRequest>,
) -> Response {
    let valid = validate_addr("raft_addr", &request.raft_addr)
        .and(validate_addr("http_addr", &request.http_addr))
        .and(validate_incarnation(&request.incarnation));
    if let Err(err) = valid {
        return err.into_response();
    }
    let forward = ForwardRequest {
        method: Method::POST,
        path_and_query: "/nodes".into(),
        json_body: serde_json::to_vec(&request).ok(),
        headers: Vec::new(),
    };
    state
        .on_leader(&headers, forward, || async {
            let _one_change_at_a_time = state.membership_lock.lock().await;
            let api = &state.settings.api;
            let outcome = membership::join(&state.raft, &request, api.join_timeout(), api.max_members)
                .await
                .map_err(membership_to_local)?;
            let message = match outcome {
                JoinOutcome::AlreadyMember => format!("node {} is already a voter", request.id),
                JoinOutcome::Joined => format!("node {} joined as a voter", request.id),
                JoinOutcome::Replaced => {
                    format!("node {} replaced its old membership and joined as a voter", request.id)
                }
                JoinOutcome::AddressUpdated => {
                    format!("node {} now has raft {} and http {}", request.id, request.raft_addr, request.http_addr)
                }
            };
            Ok(Json(JoinResponse { success: true, message, node_id: request.id, outcome: outcome.as_str().into() })
                .into_response())
        })
        .await
}

/// Removes a voter or learner; run on the leader.
#[utoipa::path(
    delete,
    path = "/nodes/{id}",
    tag = "cluster",
    summary = "Remove a node",
    description = "Removes a voter or learner (then stop its process).",
    params(("id" = u64, Path, minimum = 0, description = "The node's id.")),
    responses(
        (status = 200, description = "The node is no longer a member.", body = RemoveResponse),
        (status = 400, description = "`invalid_path`: the id is not a number.", body = ApiError),
        (status = 404, description = "`unknown_node`: not a member.", body = ApiError),
        (status = 409, description = "`last_voter`: the last voter cannot be removed.", body = ApiError),
        (status = 500, description = "`membership_failed`: Raft refused the change.", body = ApiError),
        (status = 503, description = "`not_leader`: no leader within `--leader-wait-ms`.", body = ApiError),
        (status = 504, description = "`membership_timeout` (it may still complete) or `outcome_unknown` \
            (the leader did not answer).", body = ApiError),
    ),
)]
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, ApiPath(id): ApiPath<NodeId>) -> Response {
    let forward = ForwardRequest {
        method: Method::DELETE,
        path_and_query: format!("/nodes/{id}"),
        json_body: None,
        headers: Vec::new(),
    };
    state
        .on_leader(&headers, forward, || async {
            let _one_change_at_a_time = state.membership_lock.lock().await;
            membership::remove(&state.raft, id, state.settings.api.join_timeout())
                .await
                .map_err(membership_to_local)?;
            Ok(Json(RemoveResponse { success: true, message: format!("node {id} removed"), node_id: id })
                .into_response())
        })
        .await
}

fn membership_to_local(err: MembershipError) -> LocalError {
    match err {
        MembershipError::NotLeader(_) => LocalError::NotLeader,
        other => LocalError::Failed(other.into()),
    }
}

/// An incarnation is what `disk::format::random_id` draws: up to 64 hex
/// digits (or none, from a node of a version before incarnations). It is
/// stored in every membership entry, so its size is bounded.
fn validate_incarnation(incarnation: &str) -> Result<(), ApiError> {
    if incarnation.len() <= 64 && incarnation.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("incarnation must be at most 64 hex digits, got {} bytes", incarnation.len()),
        ))
    }
}

/// An address must be one a node could listen on and be dialled at
/// (`membership::check_addr`); it is stored in every membership entry.
fn validate_addr(field: &str, addr: &str) -> Result<(), ApiError> {
    membership::check_addr(addr).map_err(|err| ApiError::new(ErrorCode::InvalidAddress, format!("{field} {err}")))
}
