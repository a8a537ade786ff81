//! Bad input gets a 4xx JSON error that says what was wrong, and commits nothing.

use crate::harness::{event, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_input_gets_its_4xx_json_error_and_commits_nothing() {
    let cluster = TestCluster::start("bad-input", 3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    let oversized = format!(
        r#"{{"event":{{"Critical":{{"GameStateChange":{{"state":"{}","timestamp":1}}}}}}}}"#,
        "x".repeat(70 * 1024)
    );
    /// (name, content type, body, expected status, expected error code, what the message mentions)
    type Case = (&'static str, &'static str, Vec<u8>, u16, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "application/json", b"{\"event\": {".to_vec(), 400, "malformed_json", "parse"),
        (
            "unknown event type",
            "application/json",
            br#"{"event":{"Critical":{"PlayerTeleport":{"player_id":1,"timestamp":2}}}}"#.to_vec(),
            422,
            "unknown_event_type",
            "PlayerTeleport",
        ),
        (
            "unknown event class",
            "application/json",
            br#"{"event":{"Persistent":{"PlayerLeave":{"player_id":1,"timestamp":2}}}}"#.to_vec(),
            422,
            "unknown_event_type",
            "Persistent",
        ),
        (
            "wrong field type",
            "application/json",
            br#"{"event":{"Critical":{"ScoreUpdate":{"player_id":1,"score":"ten","timestamp":2}}}}"#.to_vec(),
            422,
            "invalid_field",
            "score",
        ),
        (
            "missing field",
            "application/json",
            br#"{"event":{"Critical":{"PlayerLeave":{"player_id":1}}}}"#.to_vec(),
            422,
            "invalid_field",
            "timestamp",
        ),
        ("oversized body", "application/json", oversized.into_bytes(), 413, "payload_too_large", "length limit"),
        (
            "wrong content type",
            "text/plain",
            br#"{"event":{"Critical":{"PlayerLeave":{"player_id":1,"timestamp":2}}}}"#.to_vec(),
            415,
            "unsupported_content_type",
            "application/json",
        ),
    ];
    for target in [leader, follower] {
        for (name, content_type, body, status, code, mentions) in &cases {
            let resp = cluster.client(target).post_raw("/events", content_type, body.clone()).await.unwrap();
            assert_eq!(resp.status, *status, "{name} on node {target}: {}", resp.body);
            assert_eq!(resp.body["success"], false, "{name}");
            assert_eq!(resp.body["error"], *code, "{name}: {}", resp.body);
            assert_eq!(resp.body["log_index"], serde_json::Value::Null, "{name}");
            let message = resp.body["message"].as_str().unwrap_or_default();
            assert!(message.contains(mentions), "{name}: message {message:?} should mention {mentions:?}");
        }
    }

    // One good write afterwards: once it is everywhere, nothing else is.
    assert_eq!(cluster.client(follower).post_event(&event(42)).await.unwrap().status, 200);
    let events = cluster.converged_events(1).await;
    assert_eq!(events, vec![event(42)]);
    for id in cluster.ids() {
        assert_eq!(cluster.client(id).status().await.unwrap().event_count, 1);
    }
}
