//! `GET /backup`: what it streams, and one at a time.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{post_json, single_node};
use crate::backup::format::copy_events;
use crate::backup::BackupHeader;

async fn get_backup(app: &Router) -> Response {
    let request = Request::builder().uri("/backup").body(Body::empty()).expect("request");
    app.clone().oneshot(request).await.expect("answered")
}

/// The header and events a backup answer holds, checked.
async fn read_backup(response: Response) -> (BackupHeader, Vec<u8>) {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let mut input = &bytes[..];
    let header = BackupHeader::read_from(&mut input).expect("a header");
    let mut events = Vec::new();
    copy_events(&mut input, &header, &mut events).expect("whole events and checksum");
    (header, events)
}

fn score(player_id: u64) -> serde_json::Value {
    serde_json::json!({ "event": { "Critical": { "ScoreUpdate": { "player_id": player_id, "score": 1, "timestamp": 1 } } } })
}

#[tokio::test]
async fn a_backup_holds_the_events_applied_when_it_was_asked_for_while_writes_go_on() {
    let (node, app, _data) = single_node().await;
    for id in 0..3 {
        assert_eq!(post_json(&app, "/events", score(id)).await.0, StatusCode::OK);
    }
    let response = get_backup(&app).await;
    assert_eq!(response.status(), StatusCode::OK);
    let length: u64 = response.headers()["content-length"].to_str().expect("text").parse().expect("a number");
    // Written after the request, before its body is read: not in it.
    for id in 3..5 {
        assert_eq!(post_json(&app, "/events", score(id)).await.0, StatusCode::OK);
    }
    let (header, events) = read_backup(response).await;
    assert_eq!((header.event_count, header.dat_len), (3, events.len() as u64));
    assert_eq!(header.total_len(), length);
    assert_eq!(header.last_log_id.index, node.state.raft.metrics().borrow().last_applied.expect("applied").index - 2);
    let (later, _) = read_backup(get_backup(&app).await).await;
    assert_eq!(later.event_count, 5);
    node.shutdown().await;
}

#[tokio::test]
async fn a_second_backup_is_refused_with_a_503_while_one_is_served() {
    let (node, app, _data) = single_node().await;
    // Enough events that the first backup's body is more than the chunks
    // its stream queues: unread, it holds its slot.
    for id in 0..400 {
        assert_eq!(post_json(&app, "/events", score(id)).await.0, StatusCode::OK);
    }
    let first = get_backup(&app).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = get_backup(&app).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = second.into_body().collect().await.expect("body").to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(body["error"], "not_ready", "{body}");
    // The first one's client goes away: its slot is freed.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = get_backup(&app).await;
        if again.status() == StatusCode::OK {
            assert_eq!(read_backup(again).await.0.event_count, 400);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}
