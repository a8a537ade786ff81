//! The one place where failures become HTTP statuses and JSON bodies.
//!
//! Every error answer has the design's response shape
//! (`success: false`, `message`, `log_index: null`) plus a machine-readable
//! `error` code; a 503 "Not the leader" also names the leader when known.
//! [`ErrorCode`] lists every code the API answers with and its status; the
//! README's error table is checked against it.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::membership::MembershipError;
use crate::types::NodeId;

/// Declares [`ErrorCode`] from one table, so that its list, its codes and
/// its statuses cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident;)*) => {
        /// Every error code the API answers with, and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the README's order (by status).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `error` field of the JSON body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", BAD_REQUEST;
    InvalidBody => "invalid_body", BAD_REQUEST;
    InvalidRequestId => "invalid_request_id", BAD_REQUEST;
    ConflictingRequestId => "conflicting_request_id", BAD_REQUEST;
    InvalidQuery => "invalid_query", BAD_REQUEST;
    InvalidPath => "invalid_path", BAD_REQUEST;
    InvalidAddress => "invalid_address", BAD_REQUEST;
    Unauthorized => "unauthorized", UNAUTHORIZED;
    Forbidden => "forbidden", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    UnknownNode => "unknown_node", NOT_FOUND;
    RequestIdReused => "request_id_reused", CONFLICT;
    AddressConflict => "address_conflict", CONFLICT;
    LastVoter => "last_voter", CONFLICT;
    TooManyMembers => "too_many_members", CONFLICT;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedContentType => "unsupported_content_type", UNSUPPORTED_MEDIA_TYPE;
    UnknownEventType => "unknown_event_type", UNPROCESSABLE_ENTITY;
    InvalidField => "invalid_field", UNPROCESSABLE_ENTITY;
    StorageError => "storage_error", INTERNAL_SERVER_ERROR;
    WriteFailed => "write_failed", INTERNAL_SERVER_ERROR;
    MembershipFailed => "membership_failed", INTERNAL_SERVER_ERROR;
    NotLeader => "not_leader", SERVICE_UNAVAILABLE;
    NotReady => "not_ready", SERVICE_UNAVAILABLE;
    OutcomeUnknown => "outcome_unknown", GATEWAY_TIMEOUT;
    MembershipTimeout => "membership_timeout", GATEWAY_TIMEOUT;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
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
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), leader: None }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The design's answer when no leader could be reached in time.
    pub fn not_leader(leader: Option<LeaderHint>) -> Self {
        let id = leader.as_ref().map(|hint| hint.leader_id);
        Self { code: ErrorCode::NotLeader, message: format!("Not the leader. Current leader: {id:?}"), leader }
    }

    /// The write was proposed and not confirmed in time. `retry_horizon`
    /// is how long after the first attempt a retry under the same request
    /// id is still recognised ([`NodeConfig::retry_horizon`]).
    ///
    /// [`NodeConfig::retry_horizon`]: crate::config::NodeConfig::retry_horizon
    pub fn write_timeout(waited: Duration, retry_horizon: Duration) -> Self {
        Self::new(
            ErrorCode::OutcomeUnknown,
            format!("the write was not confirmed within {waited:?}; {}", may_have_committed(retry_horizon)),
        )
    }

    /// Raft stopped (a storage failure, or shutdown) while a write was in
    /// flight: the entry may already be in the log and be committed later,
    /// so the client must not assume it failed.
    pub fn stopped_during_write(detail: impl std::fmt::Display, retry_horizon: Duration) -> Self {
        Self::new(
            ErrorCode::OutcomeUnknown,
            format!("this node stopped before confirming the write ({detail}); {}", may_have_committed(retry_horizon)),
        )
    }

    /// A forwarded request reached the leader, maybe, and no answer came.
    pub fn no_answer_from_leader(err: &dyn std::fmt::Display, retry_horizon: Duration) -> Self {
        Self::new(ErrorCode::OutcomeUnknown, format!("{err}; {}", may_have_committed(retry_horizon)))
    }

    /// A request id was sent again with another event: not a retry. The
    /// holder's position is not told (the id may be another client's).
    pub fn request_id_reused(id: &str) -> Self {
        Self::new(
            ErrorCode::RequestIdReused,
            format!(
                "request id {id:?} was used for another event, committed recently; nothing was appended \
                 (a retry must send the same event, a new write needs a new id)"
            ),
        )
    }

    /// An event too large for one Raft entry (the body limit is checked
    /// against this at start, so only a misconfigured test meets it).
    pub fn event_too_large(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, detail.to_string())
    }

    /// The node could not read its own store (a disk error or damage).
    pub fn storage(err: &std::io::Error) -> Self {
        Self::new(ErrorCode::StorageError, format!("cannot read this node's events: {err}"))
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
            error: self.code.as_str(),
            message: &self.message,
            log_index: None,
            leader: self.leader.as_ref(),
        };
        (self.status(), Json(body)).into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(ErrorCode::InvalidQuery, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(ErrorCode::InvalidPath, rejection.body_text())
    }
}

impl From<MembershipError> for ApiError {
    fn from(err: MembershipError) -> Self {
        let code = match &err {
            MembershipError::AddressConflict { .. } | MembershipError::AddressInUse { .. } => {
                ErrorCode::AddressConflict
            }
            MembershipError::UnknownNode(_) => ErrorCode::UnknownNode,
            MembershipError::LastVoter(_) => ErrorCode::LastVoter,
            MembershipError::TooManyMembers { .. } => ErrorCode::TooManyMembers,
            MembershipError::Timeout(_) => ErrorCode::MembershipTimeout,
            MembershipError::NotLeader(_) => ErrorCode::NotLeader,
            MembershipError::Raft(_) => ErrorCode::MembershipFailed,
        };
        Self::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's error table: (status, code) per row, in order.
    fn documented_codes() -> Vec<(u16, String)> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("| status | `error` | when |\n|---|---|---|\n")
            .expect("the README has the error table")
            .1;
        table
            .lines()
            .take_while(|line| line.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let status = cells[1].parse().unwrap_or_else(|_| panic!("a status in {row:?}"));
                (status, cells[2].trim_matches('`').to_string())
            })
            .collect()
    }

    #[test]
    fn the_readme_documents_every_error_code_with_its_status() {
        let from_code: Vec<(u16, String)> =
            ErrorCode::ALL.iter().map(|code| (code.status().as_u16(), code.as_str().to_string())).collect();
        assert_eq!(documented_codes(), from_code, "README error table vs ErrorCode::ALL");
    }

    #[test]
    fn an_outcome_unknown_answer_names_how_long_a_retry_is_recognised() {
        let horizon = Duration::from_secs(56);
        for err in [
            ApiError::write_timeout(Duration::from_secs(10), horizon),
            ApiError::stopped_during_write("storage failed", horizon),
            ApiError::no_answer_from_leader(&"no answer from the leader", horizon),
        ] {
            assert_eq!((err.status(), err.code), (StatusCode::GATEWAY_TIMEOUT, ErrorCode::OutcomeUnknown));
            assert!(
                err.message
                    .contains("with the same request_id and event, to any node, within 56 s of the first attempt"),
                "{}",
                err.message
            );
        }
    }
}
