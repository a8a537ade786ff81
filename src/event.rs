//! Game events, in exactly the JSON form of the original design.
//!
//! Serde's externally tagged enums give the design's shape:
//! `{"Critical": {"PlayerJoin": {"player_id": 1, "name": "Alice", "timestamp": 2}}}`.
//! Unknown fields are refused so that a misspelt field is an error the client
//! sees, not a default value silently committed to the log.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_aux::serde_introspection::serde_introspect;

/// An event sent by a game server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum GameEvent {
    /// Goes through Raft: durable and replicated in one order to every node.
    Critical(CriticalEvent),
    /// Handled by the leader alone, in memory; never enters the Raft log.
    Ephemeral(EphemeralEvent),
}

/// Events that change the game's shared, authoritative state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub enum CriticalEvent {
    PlayerJoin { player_id: u64, name: String, timestamp: u64 },
    PlayerLeave { player_id: u64, timestamp: u64 },
    ScoreUpdate { player_id: u64, score: i32, timestamp: u64 },
    GameStateChange { state: String, timestamp: u64 },
}

/// High-rate events whose latest value is all that matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub enum EphemeralEvent {
    PlayerMove {
        player_id: u64,
        #[serde(deserialize_with = "coordinate")]
        x: f32,
        #[serde(deserialize_with = "coordinate")]
        y: f32,
        #[serde(deserialize_with = "coordinate")]
        z: f32,
        timestamp: u64,
    },
    PlayerAction {
        player_id: u64,
        action: String,
        timestamp: u64,
    },
}

/// A coordinate: a JSON number that rounds to a finite `f32` (the OpenAPI
/// document bounds it by `±3.4028235e38`, `f32::MAX` as printed). serde's own `f32` takes a larger one as infinity,
/// which JSON cannot carry back out: `GET /ephemeral` would show `null`.
fn coordinate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    let value = f64::deserialize(deserializer)?;
    let coordinate = value as f32;
    if coordinate.is_finite() {
        Ok(coordinate)
    } else {
        Err(serde::de::Error::custom(format!("{value} is beyond the range of a 32-bit float")))
    }
}

/// Where a body's event names a kind or a type that does not exist: the
/// tag that is not one of the known names. Read from the tags alone (the
/// event's fields are skipped), and the known names are the enums' own, so
/// a body whose tags are all known is never taken for an unknown type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownEventType {
    #[error("unknown event kind `{0}`; expected one of {known:?}", known = serde_introspect::<GameEvent>())]
    Kind(String),
    #[error("unknown {kind} event type `{name}`; expected one of {known:?}")]
    Type { kind: &'static str, name: String, known: &'static [&'static str] },
}

/// The unknown tag in a `{"event": {<kind>: {<type>: {...}}}}` body, if it
/// has one; `None` for a body of another shape or with known tags.
pub fn unknown_event_type(body: &[u8]) -> Option<UnknownEventType> {
    #[derive(Deserialize)]
    struct Tags {
        event: HashMap<String, HashMap<String, IgnoredAny>>,
    }
    let tags: Tags = serde_json::from_slice(body).ok()?;
    for (kind, types) in tags.event {
        let known = match kind.as_str() {
            "Critical" => ("Critical", serde_introspect::<CriticalEvent>()),
            "Ephemeral" => ("Ephemeral", serde_introspect::<EphemeralEvent>()),
            _ => return Some(UnknownEventType::Kind(kind)),
        };
        if let Some(name) = types.into_keys().find(|name| !known.1.contains(&name.as_str())) {
            return Some(UnknownEventType::Type { kind: known.0, name, known: known.1 });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_or_type_is_found_by_its_tag_and_known_ones_are_not() {
        let body = |event: &str| format!(r#"{{"event":{event},"request_id":"r"}}"#).into_bytes();
        assert_eq!(
            unknown_event_type(&body(r#"{"Persistent":{"PlayerLeave":{}}}"#)),
            Some(UnknownEventType::Kind("Persistent".into()))
        );
        let teleport = unknown_event_type(&body(r#"{"Critical":{"PlayerTeleport":{"player_id":1}}}"#));
        assert!(
            matches!(&teleport, Some(UnknownEventType::Type { kind: "Critical", name, .. }) if name == "PlayerTeleport"),
            "{teleport:?}"
        );
        // Every known type, with wrong fields: not an unknown type.
        for event in [
            r#"{"Critical":{"PlayerJoin":{"x":1}}}"#,
            r#"{"Critical":{"PlayerLeave":1}}"#,
            r#"{"Critical":{"ScoreUpdate":{}}}"#,
            r#"{"Critical":{"GameStateChange":{}}}"#,
            r#"{"Ephemeral":{"PlayerMove":{}}}"#,
            r#"{"Ephemeral":{"PlayerAction":{}}}"#,
        ] {
            assert_eq!(unknown_event_type(&body(event)), None, "{event}");
        }
        // The design's names, as the enums define them.
        assert_eq!(serde_introspect::<GameEvent>(), ["Critical", "Ephemeral"]);
        assert_eq!(unknown_event_type(b"{\"other\": 1}"), None);
    }

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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// A body as a client may send it, damaged: parsing it as an event
        /// or reading its tags gives a value or an error, never a panic.
        #[test]
        fn damaged_event_bodies_never_panic_a_parser(
            changes in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                0..8,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut body = br#"{"event":{"Critical":{"PlayerJoin":{"player_id":1,"name":"A","timestamp":2}}},"request_id":"r"}"#.to_vec();
            for (at, value) in changes {
                let at = at.index(body.len());
                body[at] = value;
            }
            body.truncate(cut.index(body.len() + 1));
            for bytes in [&body, &noise] {
                let _ = serde_json::from_slice::<GameEvent>(bytes);
                let _ = serde_json::from_slice::<crate::api::PostEventRequest>(bytes);
                let _ = serde_json::from_slice::<serde_json::Value>(bytes);
                let _ = unknown_event_type(bytes);
            }
        }
    }
}
