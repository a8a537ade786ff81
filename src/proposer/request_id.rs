//! Request ids: every critical event is proposed under one, so that the
//! state machine appends it at most once within `--request-id-window-secs`
//! however often it is sent (see `state_machine/request_ids.rs`).
//!
//! The id is the client's, or one the first node the write reached
//! assigned: `auto-<node id>-<128 random bits in hex>`, passed on when the
//! write is forwarded, so the node's own retries (on a new leader after
//! `ForwardToLeader`) cannot append the event twice. Where the HTTP API
//! finds them (body, `Idempotency-Key`, the forwarding header) is
//! `api/request_id.rs`.

use rand::Rng;

use crate::config::MAX_REQUEST_ID_BYTES;
use crate::types::NodeId;

/// The id a critical write is proposed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// The client's: the answer carries `duplicate`.
    Client(String),
    /// Assigned by the node the request first reached: the answer is the
    /// design's, whatever the state machine found.
    Assigned(String),
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        match self {
            RequestId::Client(id) | RequestId::Assigned(id) => id,
        }
    }

    /// A fresh id for a write with none, unique across nodes and restarts.
    pub fn assign(node_id: NodeId) -> Self {
        let random: u128 = rand::thread_rng().gen();
        RequestId::Assigned(format!("auto-{node_id}-{random:032x}"))
    }
}

/// Why a request id was refused: always before anything is proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{source_name} is {len} bytes long; at most {MAX_REQUEST_ID_BYTES} are allowed")]
    TooLong { source_name: &'static str, len: usize },
    #[error("the {0} header is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("the Idempotency-Key header ({header:?}) and the body's request_id ({body:?}) differ")]
    Conflict { header: String, body: String },
}

/// `id` if it may name a write; `source_name` says where it came from.
pub fn check<'a>(id: &'a str, source_name: &'static str) -> Result<&'a str, RequestIdError> {
    if id.is_empty() {
        return Err(RequestIdError::Empty(source_name));
    }
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(RequestIdError::TooLong { source_name, len: id.len() });
    }
    Ok(id)
}
