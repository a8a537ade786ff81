//! The request ids of the most recent events, for exactly-once appends.
//!
//! The rule, applied to every event of a `Command` in order: an event whose
//! request id is carried by one of the last `W` events (positions
//! `>= event_count - W`, `W` the window the leader stamped into the entry) is
//! a duplicate and is not appended. The rule reads only the event list and
//! the entry, so every node decides the same way.
//!
//! [`RequestIds`] is the in-memory index that answers it without reading the
//! store: it holds the id of every event in the last `covered` positions,
//! nothing older, so memory is bounded by the window. It is rebuilt from the
//! event store when a node opens its data or installs a snapshot, and is
//! extended from the store when an entry carries a larger window than it
//! covers (a leader started with a larger `--request-id-window`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Where an event with a request id is: its event position and the Raft log
/// index of the entry that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub position: u64,
    pub log_index: u64,
}

/// Request id -> the latest event carrying it, for every event at positions
/// `[count - covered, count)` (`count` the events applied so far).
#[derive(Debug, Default)]
pub struct RequestIds {
    by_id: HashMap<Arc<str>, Seen>,
    /// (position, id) of every event held, oldest first: what to drop as
    /// events leave the window. An id held twice (possible when the window
    /// grew over two events with the same id) is in the map once, at its
    /// latest position.
    order: VecDeque<(u64, Arc<str>)>,
    covered: u64,
}

impl RequestIds {
    /// How many of the latest event positions are held.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// How many ids are held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The event carrying `id` among the last `window` of `count` events.
    /// `window` must not exceed [`RequestIds::covered`]: see
    /// [`RequestIds::older_to_read`].
    pub fn find(&self, id: &str, count: u64, window: u64) -> Option<Seen> {
        debug_assert!(window <= self.covered, "window {window} beyond what is held ({})", self.covered);
        self.by_id.get(id).copied().filter(|seen| seen.position >= count.saturating_sub(window))
    }

    /// The positions `[from, to)` whose ids must be read from the store (and
    /// passed to [`RequestIds::extend_older`]) before deciding with `window`;
    /// `None` if they are all held.
    pub fn older_to_read(&self, count: u64, window: u64) -> Option<(u64, u64)> {
        let (from, to) = (count.saturating_sub(window), count.saturating_sub(self.covered));
        (window > self.covered && from < to).then_some((from, to))
    }

    /// Adds the ids of older events read from the store (those of
    /// [`RequestIds::older_to_read`], oldest first) and covers `window`.
    pub fn extend_older(&mut self, older: impl IntoIterator<Item = (String, Seen)>, window: u64) {
        let mut read: Vec<(Arc<str>, Seen)> = older.into_iter().map(|(id, seen)| (Arc::from(id), seen)).collect();
        for (id, seen) in &read {
            // Anything held already is newer.
            let newer = self.by_id.get(id).is_some_and(|held| held.position > seen.position);
            if !newer {
                self.by_id.insert(id.clone(), *seen);
            }
        }
        read.sort_by_key(|(_, seen)| std::cmp::Reverse(seen.position));
        for (id, seen) in read {
            self.order.push_front((seen.position, id));
        }
        self.covered = self.covered.max(window);
    }

    /// Records `id` for the event just appended at `seen.position`.
    pub fn insert(&mut self, id: &str, seen: Seen) {
        let id: Arc<str> = Arc::from(id);
        self.order.push_back((seen.position, id.clone()));
        self.by_id.insert(id, seen);
    }

    /// Keeps only the last `window` of `count` events: the window the last
    /// entry carried, so memory follows the current leader's setting.
    pub fn retain_last(&mut self, count: u64, window: u64) {
        let oldest_kept = count.saturating_sub(window);
        while let Some((position, _)) = self.order.front() {
            if *position >= oldest_kept {
                break;
            }
            if let Some((position, id)) = self.order.pop_front() {
                // Only if the map still points here: a later event may carry
                // the same id and stay in the window.
                if self.by_id.get(&id).is_some_and(|seen| seen.position == position) {
                    self.by_id.remove(&id);
                }
            }
        }
        self.covered = window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(position: u64) -> Seen {
        Seen { position, log_index: position + 10 }
    }

    #[test]
    fn an_id_is_found_only_within_the_window_and_dropped_once_older() {
        let mut ids = RequestIds::default();
        ids.extend_older([], 3);
        for (position, id) in ["a", "b", "c", "d"].iter().enumerate() {
            ids.insert(id, seen(position as u64));
        }
        // Four events, window 3: "a" (position 0) is just outside.
        assert_eq!(ids.find("a", 4, 3), None);
        assert_eq!(ids.find("b", 4, 3), Some(seen(1)));
        assert_eq!(ids.find("d", 4, 1), Some(seen(3)));
        ids.retain_last(4, 3);
        assert_eq!((ids.len(), ids.covered()), (3, 3));
        ids.retain_last(4, 1);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.find("c", 4, 1), None);
    }

    #[test]
    fn an_id_held_twice_stays_while_its_latest_event_is_in_the_window() {
        let mut ids = RequestIds::default();
        ids.extend_older([("x".to_string(), seen(0)), ("y".to_string(), seen(1)), ("x".to_string(), seen(2))], 10);
        assert_eq!(ids.find("x", 3, 10), Some(seen(2)));
        ids.retain_last(3, 2);
        assert_eq!(ids.find("x", 3, 2), Some(seen(2)), "dropping position 0 must not drop x");
        assert_eq!(ids.find("y", 3, 2), Some(seen(1)));
    }

    #[test]
    fn a_larger_window_asks_for_exactly_the_positions_not_held() {
        let mut ids = RequestIds::default();
        ids.extend_older([], 2);
        assert_eq!(ids.older_to_read(10, 2), None);
        assert_eq!(ids.older_to_read(10, 5), Some((5, 8)));
        assert_eq!(ids.older_to_read(3, 100), Some((0, 1)));
        assert_eq!(ids.older_to_read(2, 100), None, "all of the two events are held");
    }
}
