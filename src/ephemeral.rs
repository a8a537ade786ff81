//! Leader-only, in-memory state for ephemeral events.
//!
//! `PlayerMove` and `PlayerAction` arrive many times a second and only their
//! latest value matters, so they skip consensus: the leader keeps each
//! player's latest position and a bounded buffer of recent actions. Both are
//! bounded: past `--max-players` players, the one that moved longest ago is
//! forgotten. Nothing here is replicated or durable; a new leader starts
//! empty.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::event::EphemeralEvent;

/// A player's latest position (`PlayerMove`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlayerPosition {
    pub player_id: u64,
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub timestamp: u64,
}

/// A `PlayerAction`, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlayerAction {
    pub player_id: u64,
    pub action: String,
    pub timestamp: u64,
}

/// What the leader currently holds, as served by `GET /ephemeral`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EphemeralSnapshot {
    /// Latest position of each player, ordered by player id.
    pub positions: Vec<PlayerPosition>,
    /// Recent actions, oldest first.
    pub recent_actions: Vec<PlayerAction>,
}

#[derive(Debug, Default)]
struct State {
    /// Each player's latest position, and when it was recorded (a counter).
    positions: BTreeMap<u64, (PlayerPosition, u64)>,
    /// Players by when their position was recorded, oldest first.
    by_age: BTreeMap<u64, u64>,
    recorded: u64,
    actions: VecDeque<PlayerAction>,
}

#[derive(Debug)]
pub struct EphemeralStore {
    state: Mutex<State>,
    action_capacity: usize,
    player_capacity: usize,
}

impl EphemeralStore {
    /// Keeps up to `action_capacity` recent actions and the positions of up
    /// to `player_capacity` players.
    pub fn new(action_capacity: usize, player_capacity: usize) -> Self {
        Self { state: Mutex::default(), action_capacity, player_capacity }
    }

    /// Records an event. A position older than the one held (by timestamp) is
    /// ignored, since moves may arrive out of order through forwarding.
    pub fn record(&self, event: EphemeralEvent) {
        let mut state = self.lock();
        match event {
            EphemeralEvent::PlayerMove { player_id, x, y, z, timestamp } => {
                let newer = state.positions.get(&player_id).is_none_or(|(held, _)| held.timestamp <= timestamp);
                if !newer || self.player_capacity == 0 {
                    return;
                }
                state.recorded += 1;
                let at = state.recorded;
                let position = PlayerPosition { player_id, x, y, z, timestamp };
                if let Some((_, before)) = state.positions.insert(player_id, (position, at)) {
                    state.by_age.remove(&before);
                }
                state.by_age.insert(at, player_id);
                if state.positions.len() > self.player_capacity {
                    if let Some((_, oldest)) = state.by_age.pop_first() {
                        state.positions.remove(&oldest);
                    }
                }
            }
            EphemeralEvent::PlayerAction { player_id, action, timestamp } => {
                if self.action_capacity == 0 {
                    return;
                }
                if state.actions.len() == self.action_capacity {
                    state.actions.pop_front();
                }
                state.actions.push_back(PlayerAction { player_id, action, timestamp });
            }
        }
    }

    pub fn snapshot(&self) -> EphemeralSnapshot {
        let state = self.lock();
        EphemeralSnapshot {
            positions: state.positions.values().map(|(position, _)| position.clone()).collect(),
            recent_actions: state.actions.iter().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::locks::lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(player_id: u64, x: f32, timestamp: u64) -> EphemeralEvent {
        EphemeralEvent::PlayerMove { player_id, x, y: 0.0, z: 0.0, timestamp }
    }

    #[test]
    fn keeps_only_the_latest_position_per_player() {
        let store = EphemeralStore::new(4, 10);
        store.record(mv(1, 1.0, 10));
        store.record(mv(1, 2.0, 20));
        store.record(mv(1, 9.0, 15)); // late arrival: older than what is held
        store.record(mv(2, 5.0, 1));
        let positions = store.snapshot().positions;
        assert_eq!(positions.len(), 2);
        assert_eq!((positions[0].player_id, positions[0].x, positions[0].timestamp), (1, 2.0, 20));
        assert_eq!((positions[1].player_id, positions[1].x), (2, 5.0));
    }

    #[test]
    fn recent_actions_are_bounded_and_ordered() {
        let store = EphemeralStore::new(3, 10);
        for n in 0..5 {
            store.record(EphemeralEvent::PlayerAction { player_id: n, action: format!("a{n}"), timestamp: n });
        }
        let actions: Vec<String> = store.snapshot().recent_actions.into_iter().map(|a| a.action).collect();
        assert_eq!(actions, ["a2", "a3", "a4"]);
    }

    #[test]
    fn past_the_player_cap_the_player_that_moved_longest_ago_is_forgotten() {
        let store = EphemeralStore::new(0, 3);
        for player in 1..=5 {
            store.record(mv(player, 1.0, 10));
        }
        let held = |store: &EphemeralStore| -> Vec<u64> {
            store.snapshot().positions.into_iter().map(|p| p.player_id).collect()
        };
        assert_eq!(held(&store), [3, 4, 5]);
        store.record(mv(3, 2.0, 11)); // 3 moves again: now 4 is the oldest
        store.record(mv(6, 1.0, 10));
        assert_eq!(held(&store), [3, 5, 6]);
        store.record(mv(5, 9.0, 1)); // a late, older move changes nothing
        store.record(mv(7, 1.0, 10));
        assert_eq!(held(&store), [3, 6, 7]);
    }
}
