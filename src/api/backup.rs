//! `GET /backup`: a consistent copy of this node's events, streamed in the
//! backup file's format (`backup/format.rs`).
//!
//! Consistent: the events applied up to one log id, the one applied when
//! the request arrived. That point and its generation are taken under the
//! state machine's lock at once ([`EventList::freeze`]); the event file's
//! prefix up to it is then read without any lock, a chunk at a time in a
//! turn of the store reads (`store_reads.rs`), while writes and applies go
//! on. Nothing here touches the Raft log or waits on it.
//!
//! One backup at a time per node ([`BackupSlots`]): another is answered 503
//! `not_ready` at once. A client that stops reading is cut off after
//! `--stalled-reader-timeout-ms`, as `GET /events` readers are.
//!
//! [`EventList::freeze`]: crate::state_machine::EventList::freeze

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::error::{ApiError, ErrorCode};
use super::store_reads::StoreReads;
use super::AppState;
use crate::backup::format::{BackupHeader, VERSION};
use crate::disk::format::FORMAT;
use crate::state_machine::FrozenEvents;

/// Bytes of the event file read per turn.
const CHUNK_BYTES: usize = 64 * 1024;

/// Backups a node serves at once.
pub const BACKUPS_AT_ONCE: usize = 1;

/// The node's slots for backups being served.
#[derive(Debug, Clone)]
pub struct BackupSlots(Arc<Semaphore>);

impl Default for BackupSlots {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(BACKUPS_AT_ONCE)))
    }
}

/// The body of a 200 `GET /backup`: bytes.
pub struct BackupBytes;

impl PartialSchema for BackupBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .description(Some(
                "\"GAMERAFT-BACKUP\\n\", the header's length (u32 LE), the header (JSON: version, \
                 data_format, node_id, last_log_id, membership, event_count, dat_len, log_time_ms), \
                 dat_len bytes of the event file's checksummed records, then the CRC-32 of those \
                 bytes (u32 LE).",
            ))
            .into()
    }
}

impl ToSchema for BackupBytes {}

#[utoipa::path(
    get,
    path = "/backup",
    tag = "cluster",
    operation_id = "backup",
    summary = "A consistent backup of the events",
    description = "Every event this node has applied up to one log id (the one applied when the \
        request arrived), with that point and the membership, in the backup format `gameraft \
        backup` writes and `gameraft restore` reads. Served by this node from its own state, \
        never forwarded: a follower's backup is consistent at its own applied point. Needs an \
        admin token. One backup at a time per node.",
    responses(
        (status = 200, description = "The backup, streamed.", content_type = "application/octet-stream",
            body = BackupBytes),
        (status = 503, description = "`not_ready`: another backup is being served by this node, or \
            it has applied nothing yet; retry later or ask another node.", body = ApiError),
    ),
)]
pub async fn backup(State(state): State<AppState>) -> Response {
    let Ok(slot) = state.backups.0.clone().try_acquire_owned() else {
        return ApiError::new(
            ErrorCode::NotReady,
            "another backup is being served by this node: retry when it is done, or ask another node",
        )
        .into_response();
    };
    let frozen = state.events.freeze();
    let applied = frozen.state();
    let Some(last_log_id) = applied.last_applied else {
        return ApiError::new(ErrorCode::NotReady, "this node has applied nothing yet: it has nothing to back up")
            .into_response();
    };
    let header = BackupHeader {
        version: VERSION,
        data_format: FORMAT,
        node_id: state.node_id,
        last_log_id,
        membership: applied.membership.clone(),
        event_count: applied.event_count,
        dat_len: applied.dat_len,
        log_time_ms: applied.log_time_ms,
    };
    tracing::info!(events = header.event_count, bytes = header.dat_len, %last_log_id, "serving a backup");
    let total = header.total_len();
    let body = stream(header, frozen, state.reads.clone(), state.settings.api.stalled_reader_timeout(), slot);
    (
        [(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_LENGTH, total.to_string())],
        body,
    )
        .into_response()
}

/// The header, then the frozen prefix a chunk at a time, then its CRC-32.
/// A read error or a reader that stops reading for `stall` ends the body
/// short: the client's length and checksum checks refuse it.
fn stream(
    header: BackupHeader,
    frozen: FrozenEvents,
    reads: StoreReads,
    stall: Duration,
    slot: OwnedSemaphorePermit,
) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let _slot = slot;
        let send = |chunk: Vec<u8>| {
            let tx = tx.clone();
            async move { matches!(tokio::time::timeout(stall, tx.send(Ok(chunk.into()))).await, Ok(Ok(()))) }
        };
        if !send(header.encode()).await {
            return;
        }
        let mut crc = crc32fast::Hasher::new();
        let mut offset = 0;
        while offset < header.dat_len {
            let reader = frozen.clone();
            let read = reads.run(move || reader.read_at(offset, CHUNK_BYTES)).await.and_then(|chunk| match chunk {
                chunk if chunk.is_empty() => Err(std::io::Error::other("the event file ended early")),
                chunk => Ok(chunk),
            });
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(err) => {
                    tracing::error!(%err, offset, "GET /backup: read failed; aborting the response");
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            };
            crc.update(&chunk);
            offset += chunk.len() as u64;
            if !send(chunk).await {
                tracing::info!(offset, "GET /backup: the reader went away or stopped reading; cutting it off");
                return;
            }
        }
        let _ = send(crc.finalize().to_le_bytes().to_vec()).await;
        tracing::info!(events = header.event_count, bytes = header.dat_len, "backup served");
    });
    axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}
