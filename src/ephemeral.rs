//! Leader-only, in-memory state for ephemeral events.
//!
//! `PlayerMove` and `PlayerAction` arrive many times a second and only their
//! latest value matters, so they skip consensus: the leader keeps each
//! player's latest position and a bounded buffer of recent actions. Nothing
//! here is replicated or durable; a new leader starts empty.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::event::EphemeralEvent;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayerPosition {
    pub player_id: u64,
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub timestamp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayerAction {
    pub player_id: u64,
    pub action: String,
    pub timestamp: u64,
}

/// What the leader currently holds, as served by `GET /ephemeral`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EphemeralSnapshot {
    /// Latest position of each player, ordered by player id.
    pub positions: Vec<PlayerPosition>,
    /// Recent actions, oldest first.
    pub recent_actions: Vec<PlayerAction>,
}

#[derive(Debug, Default)]
struct State {
    positions: BTreeMap<u64, PlayerPosition>,
    actions: VecDeque<PlayerAction>,
}

#[derive(Debug)]
pub struct EphemeralStore {
    state: Mutex<State>,
    action_capacity: usize,
}

impl EphemeralStore {
    pub fn new(action_capacity: usize) -> Self {
        Self { state: Mutex::default(), action_capacity }
    }

    /// Records an event. A position older than the one held (by timestamp) is
    /// ignored, since moves may arrive out of order through forwarding.
    pub fn record(&self, event: EphemeralEvent) {
        let mut state = self.lock();
        match event {
            EphemeralEvent::PlayerMove { player_id, x, y, z, timestamp } => {
                let newer = state.positions.get(&player_id).is_none_or(|held| held.timestamp <= timestamp);
                if newer {
                    state.positions.insert(player_id, PlayerPosition { player_id, x, y, z, timestamp });
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
            positions: state.positions.values().cloned().collect(),
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
        let store = EphemeralStore::new(4);
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
        let store = EphemeralStore::new(3);
        for n in 0..5 {
            store.record(EphemeralEvent::PlayerAction { player_id: n, action: format!("a{n}"), timestamp: n });
        }
        let actions: Vec<String> = store.snapshot().recent_actions.into_iter().map(|a| a.action).collect();
        assert_eq!(actions, ["a2", "a3", "a4"]);
    }
}
