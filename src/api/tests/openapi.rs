//! The OpenAPI document (`GET /openapi.json`) against what the router and
//! the handlers really do: the same routes, the same roles, and every real
//! answer valid against the document's schema for it.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{in_memory_founder, join_event};
use crate::api::openapi::{document, named_codes};
use crate::api::{router, ErrorCode};
use crate::auth::{hash_hex, new_token, Role};
use crate::node::RunningNode;

/// The methods an OpenAPI path item may document.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A one-node cluster in memory (`extra` flags added), leading, and its router.
async fn founder(extra: &[&str]) -> (RunningNode, Router) {
    let node = RunningNode::start(in_memory_founder(extra)).await.expect("node starts");
    node.state.raft.wait(Some(Duration::from_secs(10))).current_leader(1, "node 1 leads").await.expect("leader");
    let app = router(node.state.clone());
    (node, app)
}

/// Every documented (method, path template), methods in upper case.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect()
}

/// The documented path template `path` matches (`/nodes/7` is `/nodes/{id}`).
fn template_of(doc: &Value, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| part == segment || part.starts_with('{'));
        matches.then(|| template.clone())
    })
}

/// A template with each `{parameter}` filled in with 0.
fn concrete(template: &str) -> String {
    template.split('/').map(|part| if part.starts_with('{') { "0" } else { part }).collect::<Vec<_>>().join("/")
}

/// One answer of the router.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

async fn send(app: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    let response = app.clone().oneshot(request.body(Body::from(body)).expect("request")).await.expect("answered");
    let header_text = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (content_type, www_authenticate) = (header_text(header::CONTENT_TYPE), header_text(header::WWW_AUTHENTICATE));
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body = match content_type.as_deref() {
        _ if bytes.is_empty() => Value::Null,
        // Bytes (`GET /backup`): a string, as the document describes them.
        Some("application/octet-stream") => Value::String(format!("<{} bytes>", bytes.len())),
        _ => serde_json::from_slice(&bytes).expect("a JSON body"),
    };
    Answer { status, content_type, www_authenticate, body }
}

/// `schema` as a standalone JSON Schema whose `$ref`s resolve into the
/// document's components.
fn standalone(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&root).unwrap_or_else(|err| panic!("{schema} is not a valid schema: {err}"))
}

/// Panics unless `answer` is one the document gives `method` on `uri`:
/// its status is listed, with a JSON body valid against that status's
/// schema.
fn assert_documented(doc: &Value, method: &str, uri: &str, answer: &Answer) {
    let template = template_of(doc, uri).unwrap_or_else(|| panic!("{uri} is not documented"));
    let operation = &doc["paths"][&template][method.to_ascii_lowercase()];
    let response = &operation["responses"][answer.status.as_str()];
    assert!(response.is_object(), "{method} {uri}: {} is not documented: {}", answer.status, answer.body);
    let content = response["content"].as_object().expect("documented content");
    let content_type = answer.content_type.as_deref().unwrap_or_default();
    assert!(
        content.contains_key(content_type),
        "{method} {uri}: content type {content_type:?}, documented {content:?}"
    );
    let validator = standalone(doc, &content[content_type]["schema"]);
    let errors: Vec<String> =
        validator.iter_errors(&answer.body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(
        errors.is_empty(),
        "{method} {uri} {}: {} does not fit the document: {errors:?}",
        answer.status,
        answer.body
    );
}

/// Sends the request and checks its answer is documented; returns it.
async fn documented(
    doc: &Value,
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let answer = send(app, method, uri, token, body.as_ref()).await;
    assert_documented(doc, method, uri, &answer);
    answer
}

/// The paths the router itself serves. axum 0.7 has no accessor for them,
/// but its `Debug` form prints each route's path (`RouteId(n): "/path"`, in
/// its own `:param` syntax), before those of its fallback router.
fn router_paths(app: &Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let routes = debug.split_once("fallback_router").map_or(debug.as_str(), |(routes, _)| routes);
    let paths: BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|rest| rest.split_once("): \"").and_then(|(_, rest)| rest.split_once('"')).map(|(path, _)| path))
        .filter(|path| !path.contains("__private__"))
        .map(|path| path.split('/').map(|s| s.strip_prefix(':').map_or(s.into(), |p| format!("{{{p}}}"))).collect())
        .map(|segments: Vec<String>| segments.join("/"))
        .collect();
    assert!(!paths.is_empty(), "no route paths found in the router's Debug form: {debug}");
    paths
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let (node, app) = founder(&[]).await;
    let doc = document();
    let operations = operations(&doc);
    let paths: BTreeSet<String> = operations.iter().map(|(_, path)| path.clone()).collect();
    assert_eq!(router_paths(&app), paths, "the router's paths vs the document's");

    // Per path, each documented method reaches a handler (not the fallback's
    // 404, nor 405), and each other method is 405.
    for path in &paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let answer = send(&app, method, &concrete(path), None, None).await;
            if operations.contains(&(method.to_string(), path.clone())) {
                assert_ne!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(answer.body["error"], "not_found", "{method} {path} reached the fallback");
            } else {
                assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is not documented");
            }
        }
    }
    // Undocumented paths are the fallback's.
    for path in ["/", "/event", "/events/0", "/nodes/0/x", "/openapi", "/OPENAPI.JSON", "/log/"] {
        let answer = send(&app, "GET", path, None, None).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    // What the router serves at /openapi.json is this document.
    let served = send(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!((served.status, served.content_type.as_deref()), (StatusCode::OK, Some("application/json")));
    // Compared as a client reads both (serde_json's float parsing may round
    // the bounds' last digit).
    let expected: Value = serde_json::from_str(&doc.to_string()).expect("the document reads back");
    assert!(served.body == expected, "GET /openapi.json serves another document than `document()`");
    node.shutdown().await;
}

#[test]
fn every_error_answer_names_codes_of_its_status() {
    let doc = document();
    for (method, path) in operations(&doc) {
        let responses = doc["paths"][&path][method.to_ascii_lowercase()]["responses"].as_object().expect("responses");
        assert!(responses.contains_key("200"), "{method} {path} documents its success");
        for (status, response) in responses {
            let status: u16 = status.parse().expect("a numeric status");
            if status < 400 {
                continue;
            }
            let description = response["description"].as_str().unwrap_or_default();
            let (codes, unknown) = named_codes(description);
            assert!(unknown.is_empty(), "{method} {path} {status}: no such codes {unknown:?}");
            assert!(!codes.is_empty(), "{method} {path} {status}: the description names no code");
            for code in codes {
                assert_eq!(code.status().as_u16(), status, "{method} {path}: {} is not a {status}", code.as_str());
            }
        }
    }
    // And every code is some answer's.
    let text = doc.to_string();
    for code in ErrorCode::ALL {
        assert!(text.contains(&format!("`{}`", code.as_str())) || *code == ErrorCode::NotFound, "{code:?}");
    }
}

#[tokio::test]
async fn real_answers_fit_the_document() {
    let (node, app) = founder(&[]).await;
    let doc = document();
    let answer = |method: &'static str, uri: &'static str, body: Option<Value>| {
        let (doc, app) = (&doc, &app);
        async move { documented(doc, app, method, uri, None, body).await }
    };
    // Writes: critical without and with a request id, again (a duplicate),
    // the id reused for another event, and both ephemeral events.
    assert_eq!(answer("POST", "/events", Some(join_event(1))).await.status, StatusCode::OK);
    let mut named = join_event(2);
    named["request_id"] = json!("c-1");
    for _ in 0..2 {
        assert_eq!(answer("POST", "/events", Some(named.clone())).await.status, StatusCode::OK);
    }
    let mut reused = join_event(3);
    reused["request_id"] = json!("c-1");
    assert_eq!(answer("POST", "/events", Some(reused)).await.status, StatusCode::CONFLICT);
    let moved = json!({ "event": { "Ephemeral": { "PlayerMove": { "player_id": 4, "x": 1.5, "y": -2.0, "z": 0.0, "timestamp": 9 } } } });
    let acted =
        json!({ "event": { "Ephemeral": { "PlayerAction": { "player_id": 4, "action": "jump", "timestamp": 9 } } } });
    for event in [moved, acted] {
        assert_eq!(answer("POST", "/events", Some(event)).await.status, StatusCode::OK);
    }
    // Refused writes.
    let refused = [
        (json!({ "event": { "Critical": { "Teleport": { "player_id": 1 } } } }), "unknown_event_type"),
        (json!({ "event": { "Critical": { "PlayerLeave": { "player_id": -1, "timestamp": 2 } } } }), "invalid_field"),
        (json!({ "event": join_event(1)["event"], "request_id": "" }), "invalid_request_id"),
        (json!("not an object"), "invalid_field"),
    ];
    for (body, code) in refused {
        let refused = answer("POST", "/events", Some(body)).await;
        assert_eq!(refused.body["error"], code);
    }
    let malformed = send(&app, "POST", "/events", None, None).await;
    assert_eq!(malformed.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_documented(&doc, "POST", "/events", &malformed);

    // Reads, on every shape.
    for uri in ["/events", "/events?from=1&limit=1", "/log", "/log?from=1", "/ephemeral", "/status", "/nodes"] {
        assert_eq!(answer("GET", uri, None).await.status, StatusCode::OK, "{uri}");
    }
    let backup = answer("GET", "/backup", None).await;
    assert_eq!(backup.status, StatusCode::OK, "{backup:?}");
    for uri in ["/health", "/ready", "/openapi.json"] {
        assert_eq!(answer("GET", uri, None).await.status, StatusCode::OK, "{uri}");
    }
    for (uri, status) in [("/events?from=x", StatusCode::BAD_REQUEST), ("/log?limit=-1", StatusCode::BAD_REQUEST)] {
        assert_eq!(answer("GET", uri, None).await.status, status, "{uri}");
    }

    // Membership: refused joins and removals (a one-node cluster keeps its node).
    let bad_join = json!({ "id": 2, "raft_addr": "nohost", "http_addr": "127.0.0.1:1" });
    let refused = answer("POST", "/nodes", Some(bad_join)).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_address")));
    for (uri, status) in
        [("/nodes/7", StatusCode::NOT_FOUND), ("/nodes/1", StatusCode::CONFLICT), ("/nodes/x", StatusCode::BAD_REQUEST)]
    {
        assert_eq!(answer("DELETE", uri, None).await.status, status, "{uri}");
    }
    assert_eq!(node.state.events.len(), 2, "only the two critical writes committed");
    node.shutdown().await;

    // A node that knows no leader: 503s.
    let lost = super::Args::parse_from([
        "serve",
        "--in-memory",
        "--id=5",
        "--http-addr=127.0.0.1:0",
        "--raft-addr=127.0.0.1:0",
        "--join=http://127.0.0.1:1",
        "--leader-wait-ms=200",
    ]);
    let lost = RunningNode::start(lost.node).await.expect("node starts");
    let app = router(lost.state.clone());
    for (method, uri, body) in
        [("POST", "/events", Some(join_event(1))), ("GET", "/ready", None), ("GET", "/ephemeral", None)]
    {
        let answer = documented(&doc, &app, method, uri, None, body).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
    }
    lost.shutdown().await;
}

#[tokio::test]
async fn the_documented_roles_are_the_enforced_ones() {
    let data = tempfile::tempdir().expect("temp dir");
    let read_token = new_token();
    let file = data.path().join("tokens");
    std::fs::write(&file, format!("read {} reader\n", hash_hex(&read_token))).expect("write tokens file");
    let (node, app) = founder(&[&format!("--auth-tokens-file={}", file.display())]).await;
    let doc = document();
    for (method, path) in operations(&doc) {
        let uri = concrete(&path);
        let security = &doc["paths"][&path][method.to_ascii_lowercase()]["security"];
        let role: Option<Role> = security[0]["bearer"][0].as_str().map(|role| role.parse().expect("a role"));
        let anonymous = send(&app, &method, &uri, None, None).await;
        match role {
            None => {
                assert_eq!(security, &json!([]), "{method} {path}: open, and says so");
                assert_ne!(anonymous.status, StatusCode::UNAUTHORIZED, "{method} {path} is documented open");
            }
            Some(role) => {
                assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{method} {path} needs {role}");
                assert_eq!(anonymous.www_authenticate.as_deref(), Some("Bearer"));
                assert_documented(&doc, &method, &uri, &anonymous);
                let as_reader = send(&app, &method, &uri, Some(&read_token), None).await;
                if role > Role::Read {
                    assert_eq!(as_reader.status, StatusCode::FORBIDDEN, "{method} {path} needs {role}");
                    assert_documented(&doc, &method, &uri, &as_reader);
                } else {
                    assert!(as_reader.status.is_success(), "{method} {path} as reader: {as_reader:?}");
                }
            }
        }
    }
    node.shutdown().await;
}

/// The request body schema of `POST /events` accepts exactly the bodies
/// the handler commits or accepts: the schema and the handler are asked
/// about the same bodies, valid and not.
#[tokio::test]
async fn the_event_schema_accepts_exactly_what_the_handler_does() {
    let (node, app) = founder(&[]).await;
    let doc = document();
    let schema =
        standalone(&doc, &doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]);
    let critical = |kind: &str, fields: Value| json!({ "event": { "Critical": { kind: fields } } });
    let ephemeral = |kind: &str, fields: Value| json!({ "event": { "Ephemeral": { kind: fields } } });
    let leave = json!({ "player_id": 7, "timestamp": 9 });
    let move_to = |x: Value| json!({ "player_id": 7, "x": x, "y": 0.0, "z": -1.0, "timestamp": 9 });
    let bodies = [
        critical("PlayerJoin", json!({ "player_id": 7, "name": "Alice", "timestamp": 9 })),
        critical("PlayerLeave", leave.clone()),
        critical("ScoreUpdate", json!({ "player_id": 7, "score": -3, "timestamp": 9 })),
        critical("ScoreUpdate", json!({ "player_id": 7, "score": 2147483647, "timestamp": 9 })),
        critical("ScoreUpdate", json!({ "player_id": 7, "score": 2147483648_u64, "timestamp": 9 })),
        critical("GameStateChange", json!({ "state": "lobby", "timestamp": 9 })),
        ephemeral("PlayerMove", move_to(json!(1.5))),
        ephemeral("PlayerAction", json!({ "player_id": 7, "action": "jump", "timestamp": 9 })),
        json!({ "event": { "Critical": { "PlayerLeave": leave }, "Ephemeral": { "PlayerAction": leave } } }),
        json!({ "event": { "Critical": { "PlayerLeave": leave, "PlayerJoin": leave } } }),
        json!({ "event": { "Persistent": { "PlayerLeave": leave } } }),
        critical("PlayerTeleport", leave.clone()),
        critical("PlayerLeave", json!({ "player_id": 7 })),
        critical("PlayerLeave", json!({ "player_id": "7", "timestamp": 9 })),
        critical("PlayerLeave", json!({ "player_id": -7, "timestamp": 9 })),
        critical("PlayerLeave", json!({ "player_id": 7, "timestamp": 9, "extra": true })),
        critical("PlayerLeave", json!({ "player_id": 7.5, "timestamp": 9 })),
        ephemeral("PlayerMove", move_to(json!("1.5"))),
        ephemeral("PlayerMove", move_to(json!(f32::MAX))),
        ephemeral("PlayerMove", move_to(json!(-f32::MAX))),
        ephemeral("PlayerMove", move_to(json!(3.4028235e38))),
        ephemeral("PlayerMove", move_to(json!(3.4028236e38))),
        ephemeral("PlayerMove", move_to(json!(1e39))),
        ephemeral("PlayerMove", move_to(json!(-3.5e38))),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": "r-1" }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": null }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": "" }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": "x".repeat(128) }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": "x".repeat(129) }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "request_id": 5 }),
        json!({ "event": critical("PlayerLeave", leave.clone())["event"], "evnt": 1 }),
        json!({ "request_id": "r-2" }),
        json!([]),
    ];
    for body in bodies {
        let answer = send(&app, "POST", "/events", None, Some(&body)).await;
        assert_documented(&doc, "POST", "/events", &answer);
        assert_eq!(schema.is_valid(&body), answer.status.is_success(), "{body}: {} {}", answer.status, answer.body);
    }
    node.shutdown().await;
}

/// A coordinate beyond `f32`'s range was accepted as infinity, which
/// `GET /ephemeral` then served as `null`: an answer of another shape than
/// the documented (and the design's) number. It is refused instead.
#[tokio::test]
async fn a_coordinate_beyond_f32_is_refused_and_never_served_as_null() {
    let (node, app) = founder(&[]).await;
    let doc = document();
    for x in [1e39, -1e39, f64::MAX] {
        let moved = json!({ "event": { "Ephemeral": { "PlayerMove": { "player_id": 4, "x": x, "y": 0.0, "z": 0.0, "timestamp": 9 } } } });
        let answer = documented(&doc, &app, "POST", "/events", None, Some(moved)).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")),
            "{x}"
        );
    }
    let held = documented(&doc, &app, "GET", "/ephemeral", None, None).await;
    assert_eq!(held.body["positions"], json!([]));
    node.shutdown().await;
}

/// `±f32::MAX` is accepted, and served back as JSON writers print it,
/// `3.4028235e38`: the shortest decimal that reads as that `f32`, a little
/// beyond `f32::MAX` read as an `f64`. The document's bounds allow it.
#[tokio::test]
async fn the_largest_coordinates_are_served_within_the_documented_bounds() {
    let (node, app) = founder(&[]).await;
    let doc = document();
    for (player, x) in
        [(1, json!(f32::MAX)), (2, json!(-f32::MAX)), (3, json!(3.4028235e38)), (4, json!(-3.4028235e38))]
    {
        let moved = json!({ "event": { "Ephemeral": { "PlayerMove": { "player_id": player, "x": x, "y": 0.0, "z": 0.0, "timestamp": 9 } } } });
        assert_eq!(documented(&doc, &app, "POST", "/events", None, Some(moved)).await.status, StatusCode::OK, "{x}");
    }
    let held = documented(&doc, &app, "GET", "/ephemeral", None, None).await;
    assert_eq!(held.body["positions"].as_array().map(Vec::len), Some(4), "{}", held.body);
    node.shutdown().await;
}
