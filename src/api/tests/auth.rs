//! Client tokens: every endpoint answers 401, 403 or goes on, by role.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{in_memory_founder, join_event};
use crate::api::router;
use crate::auth::{hash_hex, new_token, Role};
use crate::node::RunningNode;

/// (method, path, body): every endpoint, with a body it accepts.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/events", None),
        ("GET", "/events?from=0&limit=1", None),
        ("GET", "/log", None),
        ("GET", "/ephemeral", None),
        ("GET", "/status", None),
        ("GET", "/nodes", None),
        ("POST", "/events", Some(join_event(1))),
        (
            "POST",
            "/nodes",
            Some(serde_json::json!({ "id": 1, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2" })),
        ),
        ("DELETE", "/nodes/7", None),
        ("GET", "/backup", None),
        ("GET", "/no-such-endpoint", None),
    ]
}

#[tokio::test]
async fn every_endpoint_answers_401_without_a_known_token_403_below_its_role_and_goes_on_at_or_above_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let tokens: Vec<(Role, String)> = [Role::Read, Role::Write, Role::Admin].map(|role| (role, new_token())).into();
    let file = data.path().join("tokens");
    let lines: String =
        tokens.iter().map(|(role, token)| format!("{role} {} {role}-client\n", hash_hex(token))).collect();
    std::fs::write(&file, lines).expect("write tokens file");
    let tokens_arg = format!("--auth-tokens-file={}", file.display());
    let node = RunningNode::start(in_memory_founder(&[&tokens_arg])).await.expect("node starts");
    node.state.raft.wait(Some(std::time::Duration::from_secs(10))).current_leader(1, "leads").await.expect("leader");
    let app = router(node.state.clone());

    let call = |method: &str, path: &str, body: &Option<Value>, token: Option<&str>| {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        let response = app.clone().oneshot(request.body(Body::from(body)).expect("request"));
        async move {
            let response = response.await.expect("answered");
            let status = response.status();
            let bytes = response.into_body().collect().await.expect("body").to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };

    let stranger = new_token();
    for (method, path, body) in endpoints() {
        let needed = super::super::authorize::required_role(
            &method.parse().expect("method"),
            path.split('?').next().unwrap_or(path),
        );
        for token in [None, Some(stranger.as_str())] {
            let (status, answer) = call(method, path, &body, token).await;
            match needed {
                None => assert_eq!(status, StatusCode::OK, "{method} {path} is open"),
                Some(_) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
                    assert_eq!(
                        (answer["success"].as_bool(), answer["error"].as_str()),
                        (Some(false), Some("unauthorized"))
                    );
                }
            }
        }
        for (role, token) in &tokens {
            let (status, answer) = call(method, path, &body, Some(token)).await;
            match needed {
                Some(needed) if *role < needed => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as {role}");
                    assert_eq!(answer["error"], "forbidden");
                    assert!(answer["message"].as_str().is_some_and(|m| m.contains(needed.as_str())), "{answer}");
                }
                _ => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {status} {answer}"
                ),
            }
        }
    }
    // What each role may do, as the README states it.
    let role = |m: &str, p: &str| super::super::authorize::required_role(&m.parse().expect("method"), p);
    assert_eq!(role("GET", "/events"), Some(Role::Read));
    assert_eq!(role("POST", "/events"), Some(Role::Write));
    assert_eq!(role("POST", "/nodes"), Some(Role::Admin));
    assert_eq!(role("DELETE", "/nodes/3"), Some(Role::Admin));
    assert_eq!(role("GET", "/backup"), Some(Role::Admin));
    assert_eq!(role("HEAD", "/backup"), Some(Role::Admin));
    assert_eq!(role("GET", "/ready"), None);
    // Writes by the write and admin tokens committed; nothing else did.
    assert_eq!(node.state.events.len(), 2);
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_with_an_unreadable_or_bad_tokens_file_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad-tokens");
    std::fs::write(&bad, "admin not-a-hash ops\n").expect("write tokens file");
    for file in [dir.path().join("missing"), bad] {
        let tokens_arg = format!("--auth-tokens-file={}", file.display());
        let refused = RunningNode::start(in_memory_founder(&[&tokens_arg])).await.err().expect("refuses to start");
        assert!(
            matches!(refused, crate::node::NodeError::Tokens(_))
                && refused.to_string().contains(&*file.to_string_lossy()),
            "{refused}"
        );
    }
}
