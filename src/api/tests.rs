//! The API's handlers against a real one-node cluster, called in-process
//! through the router (no socket between test and handler).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::config::NodeConfig;
use crate::node::RunningNode;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: NodeConfig,
}

/// A bootstrapped one-node cluster on free ports with its data in a
/// temporary directory, its router, and the directory (removed on drop).
async fn single_node() -> (RunningNode, Router, tempfile::TempDir) {
    single_node_with(&[]).await
}

/// The configuration of a one-node cluster in memory on free ports, with
/// `extra` flags: for tests of how a node starts, or refuses to.
fn in_memory_founder(extra: &[&str]) -> NodeConfig {
    let base = ["serve", "--in-memory", "--id=1", "--http-addr=127.0.0.1:0", "--raft-addr=127.0.0.1:0", "--bootstrap"];
    Args::parse_from(base.iter().chain(extra)).node
}

/// [`single_node`] with `extra` flags.
async fn single_node_with(extra: &[&str]) -> (RunningNode, Router, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_str().expect("utf-8 temp path");
    let base =
        ["serve", "--id", "1", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--data-dir", data_dir];
    let args = Args::parse_from(base.iter().chain(["--bootstrap"].iter()).chain(extra.iter()));
    let node = RunningNode::start(args.node).await.expect("node starts");
    node.state.raft.wait(Some(Duration::from_secs(10))).current_leader(1, "node 1 leads").await.expect("leader");
    let app = router(node.state.clone());
    (node, app, data)
}

async fn call(app: &Router, method: &str, uri: &str, content_type: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
    let (status, bytes) = call_raw(app, method, uri, content_type, body).await;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{uri}: body is not JSON: {bytes:?}"));
    (status, body)
}

async fn call_raw(
    app: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, axum::body::Bytes) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = app.clone().oneshot(request.body(Body::from(body.to_vec())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes)
}

async fn post_json(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", uri, Some("application/json"), body.to_string().as_bytes()).await
}

fn join_event(player_id: u64) -> Value {
    json!({ "event": { "Critical": { "PlayerJoin": { "player_id": player_id, "name": "Alice", "timestamp": 1234567890 } } } })
}

#[tokio::test]
async fn post_then_get_events_use_the_designs_exact_shapes() {
    let (node, app, _data) = single_node().await;
    let mut indexes = Vec::new();
    for player in [1, 2, 3] {
        let (status, body) = post_json(&app, "/events", join_event(player)).await;
        assert_eq!(status, StatusCode::OK);
        let index = body["log_index"].as_u64().unwrap();
        assert_eq!(
            body,
            json!({ "success": true, "message": format!("Event committed at log index {index}"), "log_index": index })
        );
        indexes.push(index);
    }
    assert!(indexes.windows(2).all(|w| w[0] < w[1]));

    // Streamed in chunks of about 100 bytes (the test build's size), the
    // body is byte for byte what serializing the whole list gives.
    let (status, bytes) = call_raw(&app, "GET", "/events", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<crate::event::GameEvent> =
        [1, 2, 3].iter().map(|p| serde_json::from_value(join_event(*p)["event"].clone()).unwrap()).collect();
    let whole = serde_json::to_vec(&super::EventsResponse { events: expected, count: 3 }).unwrap();
    assert_eq!(String::from_utf8_lossy(&bytes), String::from_utf8_lossy(&whole));

    let (_, status_body) = call(&app, "GET", "/status", None, b"").await;
    let term = status_body["current_term"].as_u64().unwrap();
    assert_eq!(
        status_body,
        json!({ "node_id": 1, "is_leader": true, "current_leader": 1, "current_term": term, "event_count": 3 })
    );
    node.shutdown().await;
}

#[tokio::test]
async fn events_can_be_paged_by_position() {
    let (node, app, _data) = single_node().await;
    for player in 0..5 {
        assert_eq!(post_json(&app, "/events", join_event(player)).await.0, StatusCode::OK);
    }
    let (status, page) = call(&app, "GET", "/events?from=1&limit=2", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page,
        json!({ "events": [join_event(1)["event"], join_event(2)["event"]], "count": 2, "from": 1, "next": 3, "total": 5 })
    );
    let (_, tail) = call(&app, "GET", "/events?from=4", None, b"").await;
    assert_eq!((tail["count"].as_u64(), tail["next"].as_u64()), (Some(1), Some(5)));
    let (_, past_end) = call(&app, "GET", "/events?from=99&limit=10", None, b"").await;
    assert_eq!(past_end, json!({ "events": [], "count": 0, "from": 99, "next": 99, "total": 5 }));
    let (status, bad) = call(&app, "GET", "/events?from=minus-one", None, b"").await;
    assert_eq!((status, bad["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    node.shutdown().await;
}

#[tokio::test]
async fn bad_event_bodies_are_refused_with_json_errors_and_commit_nothing() {
    let (node, app, _data) = single_node().await;
    /// (name, content type, body, expected status, expected error code)
    type Case = (&'static str, Option<&'static str>, Vec<u8>, StatusCode, &'static str);
    let cases: [Case; 6] = [
        ("malformed", Some("application/json"), b"{\"event\":".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            "unknown type",
            Some("application/json"),
            br#"{"event":{"Critical":{"Teleport":{"player_id":1}}}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_event_type",
        ),
        (
            "wrong type",
            Some("application/json"),
            br#"{"event":{"Critical":{"PlayerLeave":{"player_id":-1,"timestamp":2}}}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "unknown top-level field",
            Some("application/json"),
            br#"{"event":{"Critical":{"PlayerLeave":{"player_id":1,"timestamp":2}}},"evnt":1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "no content type",
            None,
            br#"{"event":{}}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
        ),
        (
            "oversized",
            Some("application/json"),
            vec![b' '; 65 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (name, content_type, body, status, code) in cases {
        let (got, json) = call(&app, "POST", "/events", content_type, &body).await;
        assert_eq!(got, status, "{name}: {json}");
        assert_eq!((json["success"].as_bool(), json["error"].as_str()), (Some(false), Some(code)), "{name}");
        assert_eq!(json["log_index"], Value::Null, "{name}");
        assert!(!json["message"].as_str().unwrap_or_default().is_empty(), "{name} explains itself");
    }
    assert!(node.state.events.is_empty(), "a refused event was committed");
    let (_, status) = call(&app, "GET", "/status", None, b"").await;
    assert_eq!(status["event_count"], 0);
    node.shutdown().await;
}

#[tokio::test]
async fn ephemeral_events_are_held_by_the_leader_only() {
    let (node, app, _data) = single_node().await;
    let moved = json!({ "event": { "Ephemeral": { "PlayerMove": { "player_id": 4, "x": 1.0, "y": 2.5, "z": 3.0, "timestamp": 9 } } } });
    let (status, body) = post_json(&app, "/events", moved).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "success": true, "message": "Ephemeral event accepted by leader 1", "log_index": null }));
    let (_, held) = call(&app, "GET", "/ephemeral", None, b"").await;
    assert_eq!(held["positions"], json!([{ "player_id": 4, "x": 1.0, "y": 2.5, "z": 3.0, "timestamp": 9 }]));
    let (_, events) = call(&app, "GET", "/events", None, b"").await;
    assert_eq!(events, json!({ "events": [], "count": 0 }));
    node.shutdown().await;
}

#[tokio::test]
async fn health_ready_and_nodes_describe_the_node() {
    let (node, app, _data) = single_node().await;
    assert_eq!(
        call(&app, "GET", "/health", None, b"").await,
        (StatusCode::OK, json!({ "status": "ok", "node_id": 1 }))
    );
    assert_eq!(
        call(&app, "GET", "/ready", None, b"").await,
        (StatusCode::OK, json!({ "ready": true, "node_id": 1, "leader": 1 }))
    );
    let (status, nodes) = call(&app, "GET", "/nodes", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes["leader"], 1);
    assert_eq!(
        nodes["nodes"],
        json!([{ "id": 1, "raft_addr": node.state.addr.raft_addr, "http_addr": node.state.addr.http_addr, "role": "voter", "is_leader": true }])
    );
    let (status, missing) = call(&app, "GET", "/no/such/path", None, b"").await;
    assert_eq!((status, missing["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    node.shutdown().await;
}

#[tokio::test]
async fn membership_requests_are_validated() {
    let (node, app, _data) = single_node().await;
    let (status, body) =
        post_json(&app, "/nodes", json!({ "id": 2, "raft_addr": "nohost", "http_addr": "127.0.0.1:1" })).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_address")));
    assert!(body["message"].as_str().unwrap().contains("raft_addr"));
    let (status, body) = post_json(&app, "/nodes", json!({ "id": "two" })).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")));
    let long = "a".repeat(65);
    let join = json!({ "id": 2, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "incarnation": long });
    let (status, body) = post_json(&app, "/nodes", join).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")));
    assert!(body["message"].as_str().unwrap().contains("incarnation"), "{body}");

    let (status, body) = call(&app, "DELETE", "/nodes/7", None, b"").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_node")));
    let (status, body) = call(&app, "DELETE", "/nodes/1", None, b"").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("last_voter")));
    let (status, body) = call(&app, "DELETE", "/nodes/x", None, b"").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")));
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_with_no_leader_answers_the_designs_503() {
    // A node told to join a cluster that does not exist never learns a leader.
    // In memory: a test must not leave a data directory in the checkout.
    let args = Args::parse_from([
        "serve",
        "--in-memory",
        "--id",
        "5",
        "--http-addr",
        "127.0.0.1:0",
        "--raft-addr",
        "127.0.0.1:0",
        "--join",
        "http://127.0.0.1:1",
        "--leader-wait-ms",
        "200",
    ]);
    let node = RunningNode::start(args.node).await.expect("node starts");
    let app = router(node.state.clone());
    let (status, body) = post_json(&app, "/events", join_event(1)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({ "success": false, "error": "not_leader", "message": "Not the leader. Current leader: None", "log_index": null })
    );
    let (status, body) = call(&app, "GET", "/ready", None, b"").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")));
    node.shutdown().await;
}

/// `POST /events` with extra headers (raw bytes, to send invalid UTF-8).
async fn post_with_headers(app: &Router, body: Value, headers: &[(&str, &[u8])]) -> (StatusCode, Value) {
    let mut request = Request::builder().method("POST").uri("/events").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, axum::http::HeaderValue::from_bytes(value).unwrap());
    }
    let response = app.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("body is not JSON: {bytes:?}")))
}

fn with_id(mut body: Value, id: &str) -> Value {
    body["request_id"] = json!(id);
    body
}

#[tokio::test]
async fn bad_request_ids_are_refused_with_json_400s_and_commit_nothing() {
    let (node, app, _data) = single_node().await;
    let long = "x".repeat(crate::config::MAX_REQUEST_ID_BYTES + 1);
    let action =
        json!({ "event": { "Ephemeral": { "PlayerAction": { "player_id": 1, "action": "x", "timestamp": 1 } } } });
    /// (name, body, headers, expected error code)
    type Case<'a> = (&'static str, Value, Vec<(&'static str, &'a [u8])>, &'static str);
    let cases: Vec<Case> = vec![
        ("empty in the body", with_id(join_event(1), ""), vec![], "invalid_request_id"),
        ("empty header", join_event(1), vec![("idempotency-key", b"")], "invalid_request_id"),
        ("too long", with_id(join_event(1), &long), vec![], "invalid_request_id"),
        ("header too long", join_event(1), vec![("idempotency-key", long.as_bytes())], "invalid_request_id"),
        ("header not UTF-8", join_event(1), vec![("idempotency-key", b"caf\xe9")], "invalid_request_id"),
        (
            "header and body differ",
            with_id(join_event(1), "a"),
            vec![("idempotency-key", b"b")],
            "conflicting_request_id",
        ),
        ("ephemeral, empty", with_id(action, ""), vec![], "invalid_request_id"),
    ];
    for (name, body, headers, code) in cases {
        let (status, json) = post_with_headers(&app, body, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {json}");
        assert_eq!((json["success"].as_bool(), json["error"].as_str()), (Some(false), Some(code)), "{name}");
        assert_eq!(json["log_index"], Value::Null, "{name}");
        assert!(!json["message"].as_str().unwrap_or_default().is_empty(), "{name} explains itself");
    }
    // A request id of any other type is a body error like any other field's.
    let (status, json) = post_json(&app, "/events", json!({ "event": join_event(1)["event"], "request_id": 5 })).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")));
    assert!(node.state.events.is_empty(), "a refused event was committed");
    // The longest id allowed is fine.
    let longest = "y".repeat(crate::config::MAX_REQUEST_ID_BYTES);
    assert_eq!(post_json(&app, "/events", with_id(join_event(1), &longest)).await.0, StatusCode::OK);
    node.shutdown().await;
}

#[tokio::test]
async fn a_repeated_request_id_is_answered_with_the_original_log_index_and_appended_once() {
    let (node, app, _data) = single_node().await;
    let (status, first) = post_json(&app, "/events", with_id(join_event(1), "c1-17")).await;
    assert_eq!(status, StatusCode::OK);
    let index = first["log_index"].as_u64().unwrap();
    assert_eq!(
        first,
        json!({ "success": true, "message": format!("Event committed at log index {index}"), "log_index": index, "duplicate": false, "position": 0 })
    );
    let duplicate_answer = json!({
        "success": true,
        "message": format!("Duplicate of request c1-17: event committed at log index {index}"),
        "log_index": index,
        "duplicate": true,
        "position": 0,
    });
    // Again in the body, then in the header, then in both: the first
    // event's answer each time.
    assert_eq!(
        post_json(&app, "/events", with_id(join_event(1), "c1-17")).await,
        (StatusCode::OK, duplicate_answer.clone())
    );
    assert_eq!(
        post_with_headers(&app, join_event(1), &[("idempotency-key", b"c1-17")]).await,
        (StatusCode::OK, duplicate_answer.clone())
    );
    assert_eq!(
        post_with_headers(&app, with_id(join_event(1), "c1-17"), &[("Idempotency-Key", b"c1-17")]).await,
        (StatusCode::OK, duplicate_answer)
    );
    // Another event under the same id is not a retry: 409, nothing appended.
    for reuse in [
        post_json(&app, "/events", with_id(join_event(2), "c1-17")).await,
        post_with_headers(&app, join_event(3), &[("idempotency-key", b"c1-17")]).await,
    ] {
        assert_eq!(
            reuse,
            (
                StatusCode::CONFLICT,
                json!({
                    "success": false,
                    "error": "request_id_reused",
                    "message": "request id \"c1-17\" was used for another event, committed recently; nothing was \
                                appended (a retry must send the same event, a new write needs a new id)",
                    "log_index": null,
                })
            )
        );
    }
    // A new id through the header alone is a new event.
    let (status, other) = post_with_headers(&app, join_event(5), &[("idempotency-key", b"c1-18")]).await;
    assert_eq!((status, other["duplicate"].as_bool()), (StatusCode::OK, Some(false)));
    assert!(other["log_index"].as_u64().unwrap() > index);

    let (_, events) = call(&app, "GET", "/events", None, b"").await;
    assert_eq!(events, json!({ "events": [join_event(1)["event"], join_event(5)["event"]], "count": 2 }));
    node.shutdown().await;
}

#[tokio::test]
async fn an_assigned_id_sent_again_is_the_same_write_and_the_answer_stays_the_designs() {
    // What a node's own retry looks like to the leader: the same assigned id.
    let (node, app, _data) = single_node().await;
    let assigned: &[(&str, &[u8])] = &[(super::ASSIGNED_ID_HEADER, b"auto-9-0123456789abcdef0123456789abcdef")];
    let (status, first) = post_with_headers(&app, join_event(1), assigned).await;
    assert_eq!(status, StatusCode::OK);
    let index = first["log_index"].as_u64().unwrap();
    let design =
        json!({ "success": true, "message": format!("Event committed at log index {index}"), "log_index": index });
    assert_eq!(first, design);
    assert_eq!(post_with_headers(&app, join_event(1), assigned).await, (StatusCode::OK, design));
    assert_eq!(node.state.events.len(), 1, "the retry appended nothing");
    node.shutdown().await;
}

#[tokio::test]
async fn ephemeral_events_accept_a_request_id_and_ignore_it() {
    let (node, app, _data) = single_node().await;
    let moved = json!({ "event": { "Ephemeral": { "PlayerMove": { "player_id": 4, "x": 1.0, "y": 2.5, "z": 3.0, "timestamp": 9 } } } });
    for _ in 0..2 {
        let answer = post_json(&app, "/events", with_id(moved.clone(), "m-1")).await;
        assert_eq!(
            answer,
            (
                StatusCode::OK,
                json!({ "success": true, "message": "Ephemeral event accepted by leader 1", "log_index": null })
            )
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn the_log_lists_events_with_position_log_index_and_request_id() {
    let (node, app, _data) = single_node().await;
    let (_, with) = post_json(&app, "/events", with_id(join_event(1), "c1-17")).await;
    let (_, without) = post_json(&app, "/events", join_event(2)).await;
    let (with, without) = (with["log_index"].as_u64().unwrap(), without["log_index"].as_u64().unwrap());

    let (status, page) = call(&app, "GET", "/log", None, b"").await;
    assert_eq!(status, StatusCode::OK);
    let assigned = page["entries"][1]["request_id"].as_str().expect("an assigned id").to_string();
    assert!(
        assigned.starts_with("auto-1-") && assigned.len() == "auto-1-".len() + 32,
        "a write without an id shows the id its node assigned: {assigned}"
    );
    assert_eq!(
        page,
        json!({
            "entries": [
                { "position": 0, "log_index": with, "request_id": "c1-17", "event": join_event(1)["event"] },
                { "position": 1, "log_index": without, "request_id": assigned, "event": join_event(2)["event"] },
            ],
            "count": 2, "from": 0, "next": 2, "total": 2,
        })
    );
    let (_, second) = call(&app, "GET", "/log?from=1&limit=5", None, b"").await;
    assert_eq!(
        (second["count"].as_u64(), second["from"].as_u64(), second["next"].as_u64()),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(second["entries"][0]["position"], 1);
    let (_, past_end) = call(&app, "GET", "/log?from=9", None, b"").await;
    assert_eq!(past_end, json!({ "entries": [], "count": 0, "from": 9, "next": 9, "total": 2 }));
    let (status, bad) = call(&app, "GET", "/log?limit=-1", None, b"").await;
    assert_eq!((status, bad["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    assert_eq!(bad["log_index"], Value::Null);
    node.shutdown().await;
}

mod auth;
mod backup;
mod batching;
mod hostile;
mod openapi;
