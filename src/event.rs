//! Game events, in exactly the JSON form of the original design.
//!
//! Serde's externally tagged enums give the design's shape:
//! `{"Critical": {"PlayerJoin": {"player_id": 1, "name": "Alice", "timestamp": 2}}}`.
//! Unknown fields are refused so that a misspelt field is an error the client
//! sees, not a default value silently committed to the log.

use serde::{Deserialize, Serialize};

/// An event sent by a game server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GameEvent {
    /// Goes through Raft: durable and replicated in one order to every node.
    Critical(CriticalEvent),
    /// Handled by the leader alone, in memory; never enters the Raft log.
    Ephemeral(EphemeralEvent),
}

/// Events that change the game's shared, authoritative state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CriticalEvent {
    PlayerJoin { player_id: u64, name: String, timestamp: u64 },
    PlayerLeave { player_id: u64, timestamp: u64 },
    ScoreUpdate { player_id: u64, score: i32, timestamp: u64 },
    GameStateChange { state: String, timestamp: u64 },
}

/// High-rate events whose latest value is all that matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum EphemeralEvent {
    PlayerMove { player_id: u64, x: f32, y: f32, z: f32, timestamp: u64 },
    PlayerAction { player_id: u64, action: String, timestamp: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as `T`, serializes it back in the design's 2-space pretty
    /// form, and checks the bytes are identical.
    fn assert_round_trip<T>(text: &str) -> T
    where
        T: serde::de::DeserializeOwned + Serialize,
    {
        let value: T = serde_json::from_str(text).expect("example parses");
        let again = serde_json::to_string_pretty(&value).expect("serializes");
        assert_eq!(again, text, "re-serialized bytes differ from the design's example");
        value
    }

    /// The body of `POST /events`.
    #[derive(Serialize, Deserialize)]
    struct Request {
        event: GameEvent,
    }

    #[test]
    fn design_post_events_request_round_trips_byte_for_byte() {
        let text = r#"{
  "event": {
    "Critical": {
      "PlayerJoin": {
        "player_id": 12345,
        "name": "Alice",
        "timestamp": 1234567890
      }
    }
  }
}"#;
        let request: Request = assert_round_trip(text);
        assert_eq!(
            request.event,
            GameEvent::Critical(CriticalEvent::PlayerJoin {
                player_id: 12345,
                name: "Alice".into(),
                timestamp: 1234567890
            })
        );
    }

    #[test]
    fn design_events_list_item_round_trips_byte_for_byte() {
        let text = r#"{
  "Critical": {
    "PlayerJoin": {
      "player_id": 12345,
      "name": "Alice",
      "timestamp": 1234567890
    }
  }
}"#;
        assert_round_trip::<GameEvent>(text);
    }

    #[test]
    fn design_curl_example_round_trips_byte_for_byte() {
        let text = r#"{
  "event": {
    "Critical": {
      "PlayerJoin": {
        "player_id": 1,
        "name": "TestPlayer",
        "timestamp": 1234567890
      }
    }
  }
}"#;
        let request: Request = assert_round_trip(text);
        assert!(matches!(request.event, GameEvent::Critical(CriticalEvent::PlayerJoin { player_id: 1, .. })));
    }

    #[test]
    fn every_variant_has_the_designs_compact_form() {
        let cases: Vec<(GameEvent, &str)> = vec![
            (
                GameEvent::Critical(CriticalEvent::PlayerLeave { player_id: 7, timestamp: 9 }),
                r#"{"Critical":{"PlayerLeave":{"player_id":7,"timestamp":9}}}"#,
            ),
            (
                GameEvent::Critical(CriticalEvent::ScoreUpdate { player_id: 7, score: -3, timestamp: 9 }),
                r#"{"Critical":{"ScoreUpdate":{"player_id":7,"score":-3,"timestamp":9}}}"#,
            ),
            (
                GameEvent::Critical(CriticalEvent::GameStateChange { state: "lobby".into(), timestamp: 9 }),
                r#"{"Critical":{"GameStateChange":{"state":"lobby","timestamp":9}}}"#,
            ),
            (
                GameEvent::Ephemeral(EphemeralEvent::PlayerMove {
                    player_id: 7,
                    x: 1.5,
                    y: -2.25,
                    z: 0.0,
                    timestamp: 9,
                }),
                r#"{"Ephemeral":{"PlayerMove":{"player_id":7,"x":1.5,"y":-2.25,"z":0.0,"timestamp":9}}}"#,
            ),
            (
                GameEvent::Ephemeral(EphemeralEvent::PlayerAction {
                    player_id: 7,
                    action: "jump".into(),
                    timestamp: 9,
                }),
                r#"{"Ephemeral":{"PlayerAction":{"player_id":7,"action":"jump","timestamp":9}}}"#,
            ),
        ];
        for (event, json) in cases {
            assert_eq!(serde_json::to_string(&event).unwrap(), json);
            assert_eq!(serde_json::from_str::<GameEvent>(json).unwrap(), event);
        }
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        for bad in [
            r#"{"Critical":{"PlayerTeleport":{"player_id":1,"timestamp":2}}}"#,
            r#"{"Critical":{"PlayerLeave":{"player_id":"one","timestamp":2}}}"#,
            r#"{"Critical":{"PlayerLeave":{"player_id":1}}}"#,
            r#"{"Critical":{"PlayerLeave":{"player_id":1,"timestamp":2,"extra":true}}}"#,
            r#"{"Critical":{"ScoreUpdate":{"player_id":1,"score":3000000000,"timestamp":2}}}"#,
            r#"{"Persistent":{"PlayerLeave":{"player_id":1,"timestamp":2}}}"#,
        ] {
            assert!(serde_json::from_str::<GameEvent>(bad).is_err(), "accepted {bad}");
        }
    }
}
