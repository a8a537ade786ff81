//! The request ids of recent events, for the exactly-once rule of the apply
//! step (`apply.rs`, where the rule is stated).
//!
//! [`RequestIds`] is the in-memory index that answers it without reading the
//! store: it holds every event with an id applied at a time `>=`
//! [`RequestIds::held_from_ms`], nothing older, so memory is bounded by the
//! ids written in one window. It is rebuilt from the event store when a
//! node opens its data or installs a snapshot, and extended from the store
//! when an entry carries a longer window than it holds (a leader started
//! with a larger `--request-id-window-secs`).
//!
//! Memory: per id held, the id's bytes in a reference-counted string, a
//! 48-byte map slot and a 32-byte expiry queue slot, with the map's and the
//! queue's spare capacity and allocator rounding: measured, 208 bytes per
//! 45-byte id (2.16 million ids in 428 MiB: 18,000 writes/s for the default
//! 120 s). There is no count cap: a cap that forgot ids before their time
//! would let a retry inside the window commit twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::event::CriticalEvent;

/// Where an event with a request id is, when it was applied, and what it
/// was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub position: u64,
    /// The Raft log index of the entry that carried it.
    pub log_index: u64,
    /// The log time of that entry (ms since the epoch).
    pub at_ms: u64,
    /// [`fingerprint`] of the event.
    pub fingerprint: u64,
}

/// A stable 64-bit hash of an event's canonical bytes (its JSON, which for
/// a [`CriticalEvent`] has a fixed field order and no maps or floats):
/// FNV-1a, so it is the same on every node, build and run.
pub fn fingerprint(event: &CriticalEvent) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    struct Fnv(u64);
    impl std::io::Write for Fnv {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            for byte in buf {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(PRIME);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hash = Fnv(OFFSET);
    // Serializing a plain data type into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hash, event);
    hash.0
}

/// What an event's id finds among the ids held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The same event, already applied: a retry.
    Same(Seen),
    /// Another event under the same id.
    Other(Seen),
}

/// Request id -> the latest event carrying it, for every event applied at a
/// log time `>= held_from_ms`.
#[derive(Debug, Default)]
pub struct RequestIds {
    by_id: HashMap<Arc<str>, Seen>,
    /// (log time, position, id) of every event held, oldest first (log
    /// times never fall along positions): what to drop as time passes. An
    /// id held twice (possible when the window grew over two events with
    /// the same id) is in the map once, at its latest position.
    order: VecDeque<(u64, u64, Arc<str>)>,
    held_from_ms: u64,
}

impl RequestIds {
    /// Every event applied at this log time or later is held.
    #[cfg(test)]
    pub fn held_from_ms(&self) -> u64 {
        self.held_from_ms
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The event carrying `id` applied at a log time within `window_ms`
    /// before `now_ms`, compared with `fingerprint`. The window must be held:
    /// see [`RequestIds::older_to_read`].
    pub fn find(&self, id: &str, fingerprint: u64, now_ms: u64, window_ms: u64) -> Option<Found> {
        let oldest = now_ms.saturating_sub(window_ms);
        debug_assert!(oldest >= self.held_from_ms, "window from {oldest} beyond what is held ({})", self.held_from_ms);
        let seen = self.by_id.get(id).copied().filter(|seen| seen.at_ms >= oldest)?;
        Some(if seen.fingerprint == fingerprint { Found::Same(seen) } else { Found::Other(seen) })
    }

    /// The log times `[from, to)` whose events' ids must be read from the
    /// store (and passed to [`RequestIds::extend_older`]) before deciding
    /// with `window_ms` at `now_ms`; `None` if they are all held.
    pub fn older_to_read(&self, now_ms: u64, window_ms: u64) -> Option<(u64, u64)> {
        let from = now_ms.saturating_sub(window_ms);
        (from < self.held_from_ms).then_some((from, self.held_from_ms))
    }

    /// Adds the ids of older events read from the store (those applied at
    /// the times of [`RequestIds::older_to_read`], oldest first) and holds
    /// everything from `from_ms`.
    pub fn extend_older(&mut self, older: impl IntoIterator<Item = (String, Seen)>, from_ms: u64) {
        // Held already: everything from the oldest event held on.
        let first_held = self.order.front().map_or(u64::MAX, |(_, position, _)| *position);
        let mut read: Vec<(Arc<str>, Seen)> = older
            .into_iter()
            .filter(|(_, seen)| seen.at_ms >= from_ms && seen.at_ms < self.held_from_ms && seen.position < first_held)
            .map(|(id, seen)| (Arc::from(id), seen))
            .collect();
        for (id, seen) in &read {
            // Anything held already is newer.
            let newer = self.by_id.get(id).is_some_and(|held| held.position > seen.position);
            if !newer {
                self.by_id.insert(id.clone(), *seen);
            }
        }
        read.sort_by_key(|(_, seen)| std::cmp::Reverse(seen.position));
        for (id, seen) in read {
            self.order.push_front((seen.at_ms, seen.position, id));
        }
        self.held_from_ms = self.held_from_ms.min(from_ms);
    }

    /// The index of a store whose events applied at `from_ms` or later are
    /// `read` (oldest first).
    pub fn loaded(read: impl IntoIterator<Item = (String, Seen)>, from_ms: u64) -> Self {
        let mut ids = Self::nothing_held();
        ids.extend_older(read, from_ms);
        ids
    }

    /// An index holding no ids, for a store that needs none yet: the first
    /// window asked for is read from the store.
    pub fn nothing_held() -> Self {
        Self { held_from_ms: u64::MAX, ..Self::default() }
    }

    /// Records `id` for the event just appended.
    pub fn insert(&mut self, id: &str, seen: Seen) {
        let id: Arc<str> = Arc::from(id);
        self.order.push_back((seen.at_ms, seen.position, id.clone()));
        self.by_id.insert(id, seen);
    }

    /// Forgets the events applied before `now_ms - window_ms`: the window the
    /// last entry carried, so memory follows the current leader's setting.
    pub fn expire(&mut self, now_ms: u64, window_ms: u64) {
        let oldest_kept = now_ms.saturating_sub(window_ms);
        while let Some((at_ms, _, _)) = self.order.front() {
            if *at_ms >= oldest_kept {
                break;
            }
            if let Some((_, position, id)) = self.order.pop_front() {
                // Only if the map still points here: a later event may carry
                // the same id and stay in the window.
                if self.by_id.get(&id).is_some_and(|seen| seen.position == position) {
                    self.by_id.remove(&id);
                }
            }
        }
        self.held_from_ms = self.held_from_ms.max(oldest_kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(position: u64, at_ms: u64) -> Seen {
        Seen { position, log_index: position + 10, at_ms, fingerprint: position }
    }

    #[test]
    fn an_id_is_found_only_within_the_window_and_dropped_once_older() {
        let mut ids = RequestIds::default();
        for (position, id) in ["a", "b", "c", "d"].iter().enumerate() {
            ids.insert(id, seen(position as u64, 1000 * position as u64));
        }
        // At 4000 ms with a 3000 ms window: "a" (at 0) is just outside.
        assert_eq!(ids.find("a", 0, 4000, 3000), None);
        assert_eq!(ids.find("b", 1, 4000, 3000), Some(Found::Same(seen(1, 1000))));
        assert_eq!(ids.find("b", 7, 4000, 3000), Some(Found::Other(seen(1, 1000))), "another event");
        ids.expire(4000, 3000);
        assert_eq!((ids.len(), ids.held_from_ms()), (3, 1000));
        ids.expire(4000, 1000);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.find("c", 2, 4000, 1000), None);
    }

    #[test]
    fn an_id_held_twice_stays_while_its_latest_event_is_in_the_window() {
        let mut ids = RequestIds::loaded(
            [("x".to_string(), seen(0, 0)), ("y".to_string(), seen(1, 5)), ("x".to_string(), seen(2, 9))],
            0,
        );
        assert_eq!(ids.find("x", 2, 10, 10), Some(Found::Same(seen(2, 9))));
        ids.expire(10, 6);
        assert_eq!(ids.find("x", 2, 10, 6), Some(Found::Same(seen(2, 9))), "dropping position 0 must not drop x");
        assert_eq!(ids.find("y", 1, 10, 6), Some(Found::Same(seen(1, 5))));
    }

    #[test]
    fn a_longer_window_asks_for_exactly_the_times_not_held() {
        let mut ids = RequestIds::default();
        ids.expire(10_000, 2_000);
        assert_eq!(ids.older_to_read(10_000, 2_000), None);
        assert_eq!(ids.older_to_read(10_000, 5_000), Some((5_000, 8_000)));
        assert_eq!(ids.older_to_read(3_000, 100_000), Some((0, 8_000)));
    }

    #[test]
    fn fingerprints_are_stable_and_tell_events_apart() {
        let event = CriticalEvent::ScoreUpdate { player_id: 1, score: 2, timestamp: 3 };
        // FNV-1a of `{"ScoreUpdate":{"player_id":1,"score":2,"timestamp":3}}`:
        // a changed value here would make nodes of two builds disagree.
        assert_eq!(fingerprint(&event), 0x3d09_0d62_16a2_57f3);
        let other = CriticalEvent::ScoreUpdate { player_id: 1, score: 2, timestamp: 4 };
        assert_ne!(fingerprint(&event), fingerprint(&other));
    }
}
