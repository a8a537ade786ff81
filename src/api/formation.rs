//! `GET /formation`: what a node with no state tells the peers it forms a
//! cluster with (`crate::formation`).

use axum::extract::State;
use axum::Json;

use super::AppState;
use crate::formation::{FormationStatus, Founder};

/// This node as a founding member, whether it is in a cluster, and the
/// founders it has settled on.
#[utoipa::path(
    get,
    path = "/formation",
    tag = "cluster",
    summary = "This node's part in forming a cluster",
    description = "Asked by nodes started with `--bootstrap-expect` of each peer they discover: its id, \
        addresses and incarnation, whether it is in a cluster, and the initial members it has settled on.",
    responses((status = 200, description = "This node's formation status.", body = FormationStatus)),
)]
pub async fn formation(State(state): State<AppState>) -> Json<FormationStatus> {
    let in_cluster = state.raft.metrics().borrow().membership_config.membership().nodes().next().is_some();
    let node = Founder::new(state.node_id, &state.addr);
    Json(FormationStatus { node, in_cluster, founders: state.formation.founders() })
}
