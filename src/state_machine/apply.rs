//! The apply step: what each committed entry does to the event list, and
//! the exactly-once rule.
//!
//! The rule, for every event of an [`EventBatch`] in order: an event whose
//! request id was carried by an event applied at a log time at most `W`
//! earlier (`W` the window the leader stamped into the entry) is not
//! appended. If the two events are the same (equal fingerprints) it is a
//! duplicate, a retry, answered with the original's position
//! ([`EventOutcome::Duplicate`]); otherwise the id was reused for another
//! event, which is refused ([`EventOutcome::Reused`]). The log time of an
//! entry is the largest time any leader stamped into the entries up to it,
//! so it never goes back, and it is read from the log only: every node
//! decides the same way, whatever its clock.
//!
//! The ids of the window are held in memory ([`RequestIds`]); an entry that
//! carries a longer window than is held first reads the older ids back from
//! the event file, where each event is stored with its id.

use std::io;

use openraft::EntryPayload;

use super::event_store::{EntryWriter, Generation};
use super::request_ids::{fingerprint, Found, RequestIds, Seen};
use crate::disk::format::{AppliedPayload, AppliedState, StoredEvent};
use crate::types::{Entry, EventBatch, EventBatchResult, EventOutcome};

/// Applies `entries` in order to the event list in `generation`, advancing
/// `state` and `ids`; returns each entry's per-event outcomes. Deterministic:
/// it depends on the entries and what was applied before them only.
pub fn apply_entries(
    generation: &Generation,
    state: &mut AppliedState,
    entries: impl IntoIterator<Item = Entry>,
    ids: &mut RequestIds,
) -> io::Result<Vec<EventBatchResult>> {
    let mut writer = generation.writer();
    let mut results = Vec::new();
    for entry in entries {
        let (payload, outcomes) = match entry.payload {
            EntryPayload::Blank => (AppliedPayload::Blank, Vec::new()),
            EntryPayload::Membership(membership) => (AppliedPayload::Membership(membership), Vec::new()),
            EntryPayload::Normal(batch) => decide(&mut writer, state, ids, entry.log_id.index, batch)?,
        };
        writer.push(state, entry.log_id, payload)?;
        results.push(EventBatchResult { events: outcomes });
    }
    writer.flush(state)?;
    Ok(results)
}

/// The exactly-once rule for the events of the entry at `log_index`: which
/// to store (with their ids and fingerprints, under the entry's log time),
/// and each event's outcome.
fn decide(
    writer: &mut EntryWriter<'_>,
    state: &mut AppliedState,
    ids: &mut RequestIds,
    log_index: u64,
    batch: EventBatch,
) -> io::Result<(AppliedPayload, Vec<EventOutcome>)> {
    // Time never goes back along the log, whatever the clock of the leader
    // that proposed this entry.
    let at_ms = state.log_time_ms.max(batch.proposed_at_ms);
    state.log_time_ms = at_ms;
    let window = batch.request_id_window_ms;
    if let Some((from, to)) = ids.older_to_read(at_ms, window).filter(|_| window > 0) {
        // The window grew: the older events' ids come from the store, which
        // must first hold everything before them.
        writer.flush(state)?;
        let older = writer.generation().read_request_ids_between(from, to, state.event_count)?;
        ids.extend_older(older, from);
    }
    let mut outcomes = Vec::with_capacity(batch.events.len());
    let mut stored = Vec::with_capacity(batch.events.len());
    for proposed in batch.events {
        let fingerprint = proposed.request_id.as_ref().map(|_| fingerprint(&proposed.event));
        let found = match (&proposed.request_id, fingerprint) {
            (Some(id), Some(fingerprint)) if window > 0 => ids.find(id, fingerprint, at_ms, window),
            _ => None,
        };
        let outcome = match found {
            Some(Found::Same(original)) => {
                EventOutcome::Duplicate { position: original.position, log_index: original.log_index }
            }
            Some(Found::Other(holder)) => {
                EventOutcome::Reused { position: holder.position, log_index: holder.log_index }
            }
            None => {
                // The writer gives stored events the next positions, in order.
                let position = state.event_count + stored.len() as u64;
                if let (Some(id), Some(fingerprint)) = (&proposed.request_id, fingerprint) {
                    ids.insert(id, Seen { position, log_index, at_ms, fingerprint });
                }
                stored.push(StoredEvent { request_id: proposed.request_id, fingerprint, event: proposed.event });
                EventOutcome::Appended { position, log_index }
            }
        };
        outcomes.push(outcome);
    }
    // Entries without a window (tests, benchmarks) check nothing and leave
    // the window as it was.
    if window > 0 {
        state.request_id_window_ms = window;
    }
    ids.expire(at_ms, state.request_id_window_ms);
    Ok((AppliedPayload::Events { at_ms, request_id_window_ms: window, events: stored }, outcomes))
}
