//! Where `POST /events` finds a write's request id: what the client gave, or
//! what the first node assigned (the ids themselves: `proposer/request_id.rs`).
//!
//! A client names a write with `"request_id"` in the body or an
//! `Idempotency-Key` header; the state machine then appends the event at
//! most once within `--request-id-window-secs`, and the answer says whether
//! this request was the one that appended it (`duplicate`). The same id with
//! another event in that time is refused (409 `request_id_reused`).
//!
//! A write without a client id still gets one: the first node it reaches
//! assigns `auto-<node id>-<128 random bits in hex>` and passes it on in the
//! [`ASSIGNED_ID_HEADER`] when forwarding. The node's own retries (on a new
//! leader after the local Raft answered `ForwardToLeader`) then cannot append
//! the event twice, and the client's answer stays exactly the design's, with
//! no `duplicate` field.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::error::{ApiError, ErrorCode};
use crate::proposer::request_id::check;
use crate::proposer::{RequestId, RequestIdError};
use crate::types::NodeId;

/// The standard header a client may name its write with instead of the
/// body's `request_id`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Node to node only: the id the first node assigned to a write that came
/// without one. A client that sends it gets its write deduplicated like with
/// a `request_id`, but an answer without `duplicate`.
pub const ASSIGNED_ID_HEADER: &str = "x-gameraft-assigned-request-id";

/// The header that carries an assigned id to the next node; the client's id
/// travels in the forwarded body instead.
pub fn forward_header(id: &RequestId) -> Option<(HeaderName, HeaderValue)> {
    match id {
        RequestId::Client(_) => None,
        // An assigned id is ASCII (or came in a header already), so it is
        // always a valid header value; `ok()` only guards the type.
        RequestId::Assigned(id) => {
            HeaderValue::from_str(id).ok().map(|value| (HeaderName::from_static(ASSIGNED_ID_HEADER), value))
        }
    }
}

impl From<RequestIdError> for ApiError {
    fn from(err: RequestIdError) -> Self {
        let code = match err {
            RequestIdError::Conflict { .. } => ErrorCode::ConflictingRequestId,
            _ => ErrorCode::InvalidRequestId,
        };
        ApiError::new(code, err.to_string())
    }
}

/// The client's request id, from the body or the `Idempotency-Key` header
/// (both may be given if they are equal).
pub fn client_request_id(headers: &HeaderMap, body: Option<&str>) -> Result<Option<String>, RequestIdError> {
    let body = body.map(|id| check(id, "request_id")).transpose()?;
    let header = header_id(headers, IDEMPOTENCY_KEY_HEADER, "Idempotency-Key")?;
    match (header, body) {
        (Some(header), Some(body)) if header != body => {
            Err(RequestIdError::Conflict { header: header.to_string(), body: body.to_string() })
        }
        (header, body) => Ok(body.or(header).map(str::to_string)),
    }
}

/// The id to propose a critical write under: the client's (from
/// [`client_request_id`]), else the one an earlier node assigned, else a new
/// one.
pub fn for_write(headers: &HeaderMap, client: Option<String>, node_id: NodeId) -> Result<RequestId, RequestIdError> {
    if let Some(id) = client {
        return Ok(RequestId::Client(id));
    }
    Ok(match header_id(headers, ASSIGNED_ID_HEADER, ASSIGNED_ID_HEADER)? {
        Some(id) => RequestId::Assigned(id.to_string()),
        None => RequestId::assign(node_id),
    })
}

fn header_id<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    display: &'static str,
) -> Result<Option<&'h str>, RequestIdError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => {
            let id = std::str::from_utf8(value.as_bytes()).map_err(|_| RequestIdError::NotUtf8(display))?;
            check(id, display).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_REQUEST_ID_BYTES;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_bytes(value).expect("test header value"));
        }
        map
    }

    #[test]
    fn the_client_id_comes_from_the_body_or_the_header_and_both_must_agree() {
        assert_eq!(client_request_id(&headers(&[]), None), Ok(None));
        assert_eq!(client_request_id(&headers(&[]), Some("b")), Ok(Some("b".into())));
        assert_eq!(client_request_id(&headers(&[(IDEMPOTENCY_KEY_HEADER, b"h")]), None), Ok(Some("h".into())));
        assert_eq!(client_request_id(&headers(&[(IDEMPOTENCY_KEY_HEADER, b"x")]), Some("x")), Ok(Some("x".into())));
        assert!(matches!(
            client_request_id(&headers(&[(IDEMPOTENCY_KEY_HEADER, b"x")]), Some("y")),
            Err(RequestIdError::Conflict { .. })
        ));
    }

    #[test]
    fn empty_long_and_non_utf8_ids_are_refused() {
        assert_eq!(client_request_id(&headers(&[]), Some("")), Err(RequestIdError::Empty("request_id")));
        let longest = "é".repeat(MAX_REQUEST_ID_BYTES / 2);
        assert!(client_request_id(&headers(&[]), Some(&longest)).is_ok());
        assert_eq!(
            client_request_id(&headers(&[]), Some(&format!("{longest}x"))),
            Err(RequestIdError::TooLong { source_name: "request_id", len: MAX_REQUEST_ID_BYTES + 1 })
        );
        assert_eq!(
            client_request_id(&headers(&[(IDEMPOTENCY_KEY_HEADER, b"\xff\xfe")]), None),
            Err(RequestIdError::NotUtf8("Idempotency-Key"))
        );
    }

    #[test]
    fn a_write_without_a_client_id_keeps_the_id_the_first_node_assigned() {
        let first = for_write(&headers(&[]), None, 7).expect("assigned");
        let RequestId::Assigned(id) = &first else { panic!("expected an assigned id, got {first:?}") };
        assert!(id.starts_with("auto-7-") && id.len() == "auto-7-".len() + 32, "{id}");
        let (name, value) = forward_header(&first).expect("an assigned id is forwarded");
        let mut forwarded = HeaderMap::new();
        forwarded.insert(name, value);
        assert_eq!(for_write(&forwarded, None, 9), Ok(first.clone()));
        // A client id wins over an assigned one.
        assert_eq!(for_write(&forwarded, Some("c".into()), 9), Ok(RequestId::Client("c".into())));
        assert_ne!(for_write(&headers(&[]), None, 7), Ok(first), "two writes get two ids");
        assert_eq!(forward_header(&RequestId::Client("c".into())), None, "a client id travels in the body");
    }
}
