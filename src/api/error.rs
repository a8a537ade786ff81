//! The one place where failures become HTTP statuses and JSON bodies.
//!
//! Every error answer has the design's response shape
//! (`success: false`, `message`, `log_index: null`) plus a machine-readable
//! `error` code; a 503 "Not the leader" also names the leader when known.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::membership::MembershipError;
use crate::types::NodeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub leader: Option<LeaderHint>,
}

/// Where the client should go instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderHint {
    pub leader_id: NodeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_http_addr: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: &'static str,
    message: &'a str,
    log_index: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    leader: Option<&'a LeaderHint>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), leader: None }
    }

    /// The design's answer when no leader could be reached in time.
    pub fn not_leader(leader: Option<LeaderHint>) -> Self {
        let id = leader.as_ref().map(|hint| hint.leader_id);
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_leader",
            message: format!("Not the leader. Current leader: {id:?}"),
            leader,
        }
    }

    /// The write was proposed and not confirmed in time. `retry_horizon`
    /// is how long after the first attempt a retry under the same request
    /// id is still recognised ([`ApiSettings::retry_horizon`]).
    ///
    /// [`ApiSettings::retry_horizon`]: crate::config::ApiSettings::retry_horizon
    pub fn write_timeout(waited: Duration, retry_horizon: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("the write was not confirmed within {waited:?}; {}", may_have_committed(retry_horizon)),
        )
    }

    /// Raft stopped (a storage failure, or shutdown) while a write was in
    /// flight: the entry may already be in the log and be committed later,
    /// so the client must not assume it failed.
    pub fn stopped_during_write(detail: impl std::fmt::Display, retry_horizon: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("this node stopped before confirming the write ({detail}); {}", may_have_committed(retry_horizon)),
        )
    }

    /// A forwarded request reached the leader, maybe, and no answer came.
    pub fn no_answer_from_leader(err: &dyn std::fmt::Display, retry_horizon: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("{err}; {}", may_have_committed(retry_horizon)),
        )
    }

    /// A request id was sent again with another event: not a retry. The
    /// holder's position is not told (the id may be another client's).
    pub fn request_id_reused(id: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "request_id_reused",
            format!(
                "request id {id:?} was used for another event, committed recently; nothing was appended \
                 (a retry must send the same event, a new write needs a new id)"
            ),
        )
    }

    /// An event too large for one Raft entry (the body limit is checked
    /// against this at start, so only a misconfigured test meets it).
    pub fn event_too_large(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail.to_string())
    }

    /// The node could not read its own store (a disk error or damage).
    pub fn storage(err: &std::io::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", format!("cannot read this node's events: {err}"))
    }
}

/// What an `outcome_unknown` answer tells the client to do.
fn may_have_committed(retry_horizon: Duration) -> String {
    format!(
        "it may or may not have been committed (sent again with the same request_id and event, to any node, \
         within {} s of the first attempt, it is applied at most once)",
        retry_horizon.as_secs()
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            success: false,
            error: self.code,
            message: &self.message,
            log_index: None,
            leader: self.leader.as_ref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        let code = match &rejection {
            JsonRejection::JsonDataError(_) if message.contains("unknown variant") => "unknown_event_type",
            JsonRejection::JsonDataError(_) => "invalid_field",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_content_type",
            JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                "payload_too_large"
            }
            _ => "invalid_body",
        };
        Self::new(rejection.status(), code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_path", rejection.body_text())
    }
}

impl From<MembershipError> for ApiError {
    fn from(err: MembershipError) -> Self {
        let status = match &err {
            MembershipError::AddressConflict { .. } => StatusCode::CONFLICT,
            MembershipError::UnknownNode(_) => StatusCode::NOT_FOUND,
            MembershipError::LastVoter(_) => StatusCode::CONFLICT,
            MembershipError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            MembershipError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            MembershipError::Raft(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match &err {
            MembershipError::AddressConflict { .. } => "address_conflict",
            MembershipError::UnknownNode(_) => "unknown_node",
            MembershipError::LastVoter(_) => "last_voter",
            MembershipError::Timeout(_) => "membership_timeout",
            MembershipError::NotLeader(_) => "not_leader",
            MembershipError::Raft(_) => "membership_failed",
        };
        Self::new(status, code, err.to_string())
    }
}

/// `axum::Json`, but a rejected body answers with an [`ApiError`] JSON body
/// instead of axum's plain text.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_unknown_answer_names_how_long_a_retry_is_recognised() {
        let horizon = Duration::from_secs(56);
        for err in [
            ApiError::write_timeout(Duration::from_secs(10), horizon),
            ApiError::stopped_during_write("storage failed", horizon),
            ApiError::no_answer_from_leader(&"no answer from the leader", horizon),
        ] {
            assert_eq!((err.status, err.code), (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"));
            assert!(
                err.message
                    .contains("with the same request_id and event, to any node, within 56 s of the first attempt"),
                "{}",
                err.message
            );
        }
    }
}
