//! `POST /events`, `GET /events` and `GET /ephemeral`.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorCode};
use super::extract::{ApiJson, ApiQuery};
use super::forward::{ForwardRequest, LocalError};
use super::openapi::EventsAnswer;
use super::request_id;
use super::store_reads::StoreReads;
use super::AppState;
use crate::ephemeral::EphemeralSnapshot;
use crate::event::{CriticalEvent, EphemeralEvent, GameEvent};
use crate::proposer::{ProposeError, RequestId};
use crate::state_machine::EventList;
use crate::types::EventOutcome;

/// Most events one page of `GET /events?from=&limit=` returns.
pub const MAX_PAGE_LIMIT: u64 = 10_000;

/// The body of `POST /events`: the design's `{"event": ...}`, optionally
/// with the client's request id (see `request_id.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEventRequest {
    pub event: GameEvent,
    /// Names the write, so that sending it again (to any node) cannot append
    /// it twice. Used by critical events only; accepted and ignored for
    /// ephemeral ones. 1 to 128 bytes of UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub request_id: Option<String>,
}

/// The design's answer to `POST /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostEventResponse {
    pub success: bool,
    pub message: String,
    /// The Raft entry that committed the event; `null` for an ephemeral one.
    #[schema(required = true)]
    pub log_index: Option<u64>,
    /// Only when the client gave a request id for a critical event: `true` if
    /// an earlier request with that id had committed the event, and
    /// `log_index` is that event's. Absent otherwise, so a client of the
    /// design sees exactly the design's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// With `duplicate`: the event's 0-based position in the event list, the
    /// dense index `GET /events?from=` and `GET /log?from=` page by. Unlike
    /// `log_index` (the Raft entry, shared by the events of one batch), no
    /// two events have the same position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

/// The design's `GET /events` body: every committed event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    pub events: Vec<GameEvent>,
    pub count: u64,
}

/// `GET /events?from=N&limit=M`: one page, by event position (0-based).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<GameEvent>,
    pub count: u64,
    /// Position of the first event in this page.
    pub from: u64,
    /// Position to ask for next (`from + count`).
    pub next: u64,
    /// Committed events on this node.
    pub total: u64,
}

/// The paging query of `GET /events` and `GET /log`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Position (0-based) of the first event to list; 0 if absent.
    pub from: Option<u64>,
    /// Most events to list; at most (and by default) 10000.
    pub limit: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    summary = "Submit an event",
    description = "Any node takes it. A critical event is committed through Raft on the leader (a \
        follower forwards it and relays the answer); an ephemeral one is held by the leader.",
    request_body = PostEventRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 128,
            description = "The write's request id, instead of (or equal to) the body's `request_id`."),
    ),
    responses(
        (status = 200, description = "Committed (critical) or accepted by the leader (ephemeral).",
            body = PostEventResponse),
        (status = 400, description = "`malformed_json`, `invalid_body`, `invalid_request_id` or \
            `conflicting_request_id`; nothing was appended.", body = ApiError),
        (status = 409, description = "`request_id_reused`: the request id named another event; \
            nothing was appended.", body = ApiError),
        (status = 413, description = "`payload_too_large`.", body = ApiError),
        (status = 415, description = "`unsupported_content_type`.", body = ApiError),
        (status = 422, description = "`unknown_event_type` or `invalid_field`.", body = ApiError),
        (status = 500, description = "`write_failed`: Raft refused the write; nothing was appended.",
            body = ApiError),
        (status = 503, description = "`not_leader`: no leader within `--leader-wait-ms`.", body = ApiError),
        (status = 504, description = "`outcome_unknown`: proposed, not confirmed in time; send it again \
            with the same request id.", body = ApiError),
    ),
)]

pub async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PostEventRequest>,
) -> Response {
    let client_id = match request_id::client_request_id(&headers, request.request_id.as_deref()) {
        Ok(id) => id,
        Err(err) => return ApiError::from(err).into_response(),
    };
    // The leader gets the client's id in the body, wherever the client put it.
    let body = PostEventRequest { event: request.event, request_id: client_id.clone() };
    let mut forward = ForwardRequest {
        method: Method::POST,
        path_and_query: "/events".into(),
        json_body: serde_json::to_vec(&body).ok(),
        headers: Vec::new(),
    };
    match body.event {
        GameEvent::Critical(event) => {
            let id = match request_id::for_write(&headers, client_id, state.node_id) {
                Ok(id) => id,
                Err(err) => return ApiError::from(err).into_response(),
            };
            forward.headers.extend(request_id::forward_header(&id));
            state.on_leader(&headers, forward, || write_critical(&state, event.clone(), id.clone())).await
        }
        GameEvent::Ephemeral(event) => {
            state.on_leader(&headers, forward, || record_ephemeral(&state, event.clone())).await
        }
    }
}

/// Proposes one event under `id` (`proposer/`) and answers once its entry
/// is committed and applied on this (the leader's) state machine, which may
/// find the id already used (a retry) and name the original instead.
async fn write_critical(state: &AppState, event: CriticalEvent, id: RequestId) -> Result<Response, LocalError> {
    let horizon = state.settings.retry_horizon();
    match state.proposer.propose(&id, event).await {
        Ok(outcome) => Ok(Json(committed(&id, outcome)?).into_response()),
        // OpenRaft answers this before appending (this node does not lead),
        // but also for an entry it had appended and then truncated from its
        // log as a deposed leader (`DeleteConflictLog`): that entry may
        // survive on other nodes and still commit. Retrying on the new
        // leader is safe only because the retry carries the same request id,
        // so the state machine appends the event at most once.
        Err(ProposeError::NotLeader) => Err(LocalError::NotLeader),
        Err(ProposeError::TimedOut(waited)) => Err(ApiError::write_timeout(waited, horizon).into()),
        Err(err @ (ProposeError::Refused(_) | ProposeError::NoOutcome { .. })) => {
            Err(ApiError::new(ErrorCode::WriteFailed, err.to_string()).into())
        }
        Err(err @ (ProposeError::RaftStopped(_) | ProposeError::Unanswered | ProposeError::BatcherStopped)) => {
            Err(ApiError::stopped_during_write(err, horizon).into())
        }
        Err(err @ ProposeError::TooLarge { .. }) => Err(ApiError::event_too_large(err).into()),
    }
}

/// The answer for a committed write: the design's body, plus `duplicate`
/// when the client named the write; 409 if the id was another event's.
fn committed(id: &RequestId, outcome: EventOutcome) -> Result<PostEventResponse, ApiError> {
    let index = outcome.log_index();
    let (message, duplicate, position) = match (id, outcome) {
        (_, EventOutcome::Reused { .. }) => return Err(ApiError::request_id_reused(id.as_str())),
        (RequestId::Client(id), EventOutcome::Duplicate { position, .. }) => {
            (format!("Duplicate of request {id}: event committed at log index {index}"), Some(true), Some(position))
        }
        (RequestId::Client(_), EventOutcome::Appended { position, .. }) => {
            (format!("Event committed at log index {index}"), Some(false), Some(position))
        }
        // An assigned id found already used is this node's own retry: to
        // the client it is simply the write committed.
        (RequestId::Assigned(_), _) => (format!("Event committed at log index {index}"), None, None),
    };
    Ok(PostEventResponse { success: true, message, log_index: Some(index), duplicate, position })
}

async fn record_ephemeral(state: &AppState, event: EphemeralEvent) -> Result<Response, LocalError> {
    state.ephemeral.record(event);
    Ok(Json(PostEventResponse {
        success: true,
        message: format!("Ephemeral event accepted by leader {}", state.node_id),
        log_index: None,
        duplicate: None,
        position: None,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    summary = "The committed events",
    description = "Without `from` and `limit`, every committed event on this node (the design's \
        `{events, count}`); with either, one page by position. Read from this node: a follower may \
        lag by a heartbeat.",
    params(EventsQuery),
    responses(
        (status = 200, description = "The events, or one page of them.", body = EventsAnswer),
        (status = 400, description = "`invalid_query`.", body = ApiError),
        (status = 500, description = "`storage_error`: this node cannot read its store.", body = ApiError),
    ),
)]
pub async fn get_events(State(state): State<AppState>, ApiQuery(query): ApiQuery<EventsQuery>) -> Response {
    if query.from.is_none() && query.limit.is_none() {
        return stream_all_events(
            state.events.clone(),
            state.reads.clone(),
            state.settings.api.stalled_reader_timeout(),
        );
    }
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(MAX_PAGE_LIMIT).min(MAX_PAGE_LIMIT);
    let total = state.events.len();
    let log = state.events.clone();
    let events: Vec<GameEvent> = match state.reads.run(move || log.range(from, limit)).await {
        Ok(events) => events.into_iter().map(|e| GameEvent::Critical(e.event)).collect(),
        Err(err) => return ApiError::storage(&err).into_response(),
    };
    let count = events.len() as u64;
    Json(EventsPage { events, count, from, next: from.saturating_add(count), total }).into_response()
}

/// A chunk of a streamed `GET /events` holds the events of the log records
/// read until this many bytes were (one record more at most: the largest
/// entry). Tiny in tests, so that they cross chunk boundaries.
#[cfg(not(test))]
pub const STREAM_CHUNK_BYTES: u64 = 64 * 1024;
#[cfg(test)]
pub const STREAM_CHUNK_BYTES: u64 = 100;

/// Chunks of a streamed `GET /events` queued for its connection, besides
/// the one being written and the one being built.
pub const STREAM_QUEUED_CHUNKS: usize = 1;

/// The design's `GET /events` body, `{"events":[...],"count":N}`, byte for
/// byte what serializing [`EventsResponse`] would give, but written a chunk at
/// a time from the store: the events committed when the request arrived.
/// Memory is bounded by bytes, whatever the number or the size of the
/// events: a reader that stops reading holds the chunk being built, one
/// queued and what the connection buffers (`http_server`). A read error
/// after the status was sent aborts the body (the client sees a cut,
/// invalid JSON, never a wrong list).
fn stream_all_events(log: EventList, reads: StoreReads, stall: std::time::Duration) -> Response {
    let total = log.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(STREAM_QUEUED_CHUNKS);
    // An async task, not a blocking one: a reader that stops reading holds
    // no thread, and is cut off after `stall`. Each chunk is read and
    // encoded in a turn of `reads`, on the blocking pool, briefly.
    tokio::spawn(async move {
        let mut from = 0;
        let mut chunk = b"{\"events\":[".to_vec();
        loop {
            if from < total {
                let reader = log.clone();
                match reads.run(move || encode_events(&reader, from, total)).await {
                    Ok((encoded, count)) => {
                        chunk.extend_from_slice(&encoded);
                        from += count;
                    }
                    Err(err) => {
                        tracing::error!(%err, from, "GET /events: read failed; aborting the response");
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
            let last = from >= total;
            if last {
                chunk.extend_from_slice(format!("],\"count\":{total}}}").as_bytes());
            }
            match tokio::time::timeout(stall, tx.send(Ok(std::mem::take(&mut chunk).into()))).await {
                Ok(Ok(())) if !last => {}
                Ok(_) => return, // done, or the client went away
                Err(_) => {
                    tracing::info!(from, total, "GET /events: the reader stopped reading; cutting it off");
                    return;
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The events from position `from` (of `total`) that the log records read
/// up to [`STREAM_CHUNK_BYTES`] hold, as the JSON list's next items (each
/// but the very first preceded by a comma), and how many they are.
fn encode_events(log: &EventList, from: u64, total: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let events = log.range_within(from, total - from, STREAM_CHUNK_BYTES)?;
    if events.is_empty() {
        return Err(std::io::Error::other(format!("event {from} of {total} is missing")));
    }
    let count = events.len() as u64;
    let mut encoded = Vec::new();
    for (at, event) in (from..).zip(events) {
        if at > 0 {
            encoded.push(b',');
        }
        serde_json::to_writer(&mut encoded, &GameEvent::Critical(event.event)).map_err(std::io::Error::other)?;
    }
    Ok((encoded, count))
}

/// What the leader holds for ephemeral events; asked of the leader.
#[utoipa::path(
    get,
    path = "/ephemeral",
    tag = "events",
    summary = "The leader's ephemeral state",
    description = "Latest positions and recent actions, as the leader holds them (any node asks it).",
    responses(
        (status = 200, description = "The leader's ephemeral state.", body = EphemeralSnapshot),
        (status = 503, description = "`not_leader`: no leader within `--leader-wait-ms`.", body = ApiError),
        (status = 504, description = "`outcome_unknown`: the leader did not answer.", body = ApiError),
    ),
)]
pub async fn get_ephemeral(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let forward = ForwardRequest {
        method: Method::GET,
        path_and_query: "/ephemeral".into(),
        json_body: None,
        headers: Vec::new(),
    };
    state.on_leader(&headers, forward, || async { Ok(Json(state.ephemeral.snapshot()).into_response()) }).await
}
