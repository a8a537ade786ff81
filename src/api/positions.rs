//! `GET /log?from=N&limit=M`: the committed events, each with its position in
//! the event list, the index of the Raft entry that carried it and the
//! request id it was written under.
//!
//! Read from this node's store, like `GET /events` (a follower may lag by a
//! heartbeat). Meant for checkers and operators that need to match what
//! clients were told (`log_index`) against what every node holds; the plain
//! `GET /events` stays exactly the design's.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::events::{EventsQuery, MAX_PAGE_LIMIT};
use super::extract::ApiQuery;
use super::AppState;
use crate::event::GameEvent;

/// One committed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PositionedEvent {
    /// 0-based position in the event list (`GET /events` order).
    pub position: u64,
    /// Raft index of the entry that committed it (what the writer was told).
    pub log_index: u64,
    /// The client's request id; an id the receiving node assigned (the write
    /// came without one) shows as `auto-<node id>-<32 hex digits>`. Every
    /// write through the API has one (`null` only for entries proposed
    /// without, by tests and benchmarks).
    #[schema(required = true)]
    pub request_id: Option<String>,
    pub event: GameEvent,
}

/// One page of `GET /log`, shaped like `GET /events?from=&limit=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PositionedEventsPage {
    pub entries: Vec<PositionedEvent>,
    pub count: u64,
    /// Position of the first entry in this page.
    pub from: u64,
    /// Position to ask for next (`from + count`).
    pub next: u64,
    /// Committed events on this node when the page was read.
    pub total: u64,
}

#[utoipa::path(
    get,
    path = "/log",
    tag = "events",
    summary = "The committed events with position, log index and request id",
    description = "One page (from `from`, at most `limit`, 10000 by default), read from this node: a \
        follower may lag by a heartbeat.",
    params(EventsQuery),
    responses(
        (status = 200, description = "One page of the log.", body = PositionedEventsPage),
        (status = 400, description = "`invalid_query`.", body = ApiError),
        (status = 500, description = "`storage_error`: this node cannot read its store.", body = ApiError),
    ),
)]
pub async fn get_positioned_events(State(state): State<AppState>, ApiQuery(query): ApiQuery<EventsQuery>) -> Response {
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(MAX_PAGE_LIMIT).min(MAX_PAGE_LIMIT);
    let log = state.events.clone();
    // `total` and the page come from one count, so `next <= total` always.
    let total = log.len();
    let limit = limit.min(total.saturating_sub(from));
    let entries: Vec<PositionedEvent> = match state.reads.run(move || log.range(from, limit)).await {
        Ok(events) => events
            .into_iter()
            .map(|e| PositionedEvent {
                position: e.position,
                log_index: e.log_index,
                request_id: e.request_id,
                event: GameEvent::Critical(e.event),
            })
            .collect(),
        Err(err) => return ApiError::storage(&err).into_response(),
    };
    let count = entries.len() as u64;
    Json(PositionedEventsPage { entries, count, from, next: from.saturating_add(count), total }).into_response()
}
