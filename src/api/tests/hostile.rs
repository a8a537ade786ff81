//! Clients that hold what they can: the node keeps committing.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use super::{join_event, post_json, single_node, single_node_with};

/// More `GET /events` readers that never read than the runtime has
/// blocking threads (512): a write still commits, which needs the Raft
/// log's fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_readers_that_never_read_do_not_stall_a_write() {
    let (node, app, _data) = single_node().await;
    // Enough events for many chunks: a stream whose reader stops fills its
    // buffer and waits.
    for player in 0..40 {
        assert_eq!(post_json(&app, "/events", join_event(player)).await.0, StatusCode::OK);
    }
    let mut held = Vec::new();
    for _ in 0..600 {
        let request = Request::builder().method("GET").uri("/events").body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response); // its body is never read
    }
    let write = tokio::time::timeout(Duration::from_secs(8), post_json(&app, "/events", join_event(999))).await;
    assert!(matches!(write, Ok((StatusCode::OK, _))), "the write did not commit within 8 s: {write:?}");
    drop(held);
    node.shutdown().await;
}

/// Opens `GET /events`, reads nothing for well past a 200 ms
/// `--stalled-reader-timeout-ms`, then reads what the node had sent before
/// it cut the body off. The stall is the input under test, not a wait for
/// something to happen.
async fn read_after_stalling(app: &axum::Router) -> axum::body::Bytes {
    use http_body_util::BodyExt;

    let request = Request::builder().method("GET").uri("/events").body(Body::empty()).expect("request");
    let stalled = app.clone().oneshot(request).await.expect("answered");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::time::timeout(Duration::from_secs(5), stalled.into_body().collect())
        .await
        .expect("the body ends instead of waiting")
        .expect("the chunks it had")
        .to_bytes()
}

/// A streamed `GET /events` whose reader stops is cut off after
/// `--stalled-reader-timeout-ms`: what it had buffered arrives, then the
/// body ends, short of the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_after_the_stall_timeout() {
    let (node, app, _data) = single_node_with(&["--stalled-reader-timeout-ms", "200"]).await;
    for player in 0..40 {
        assert_eq!(post_json(&app, "/events", join_event(player)).await.0, StatusCode::OK);
    }
    let full = super::call_raw(&app, "GET", "/events", None, b"").await.1;
    assert!(serde_json::from_slice::<serde_json::Value>(&full).is_ok_and(|v| v["count"] == 40), "read at once: all");

    let cut = read_after_stalling(&app).await;
    assert!(cut.len() < full.len(), "a stalled reader got the whole list: {} bytes", cut.len());
    assert!(cut.starts_with(b"{\"events\":["), "{:?}", String::from_utf8_lossy(&cut));
    node.shutdown().await;
}

/// A `PlayerJoin` whose name is `bytes` long: events large enough that a
/// few of them outweigh what the node may buffer for one reader.
fn big_join(player_id: u64, bytes: usize) -> serde_json::Value {
    json!({ "event": { "Critical": { "PlayerJoin": { "player_id": player_id, "name": "n".repeat(bytes), "timestamp": 1 } } } })
}

/// What a reader that stops reading makes the node hold is a few chunks of
/// bounded size, not a number of events: with 40 KB events, all it had
/// buffered when it was cut off is under 128 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_holds_a_bounded_number_of_bytes_whatever_the_events_size() {
    let (node, app, _data) = single_node_with(&["--stalled-reader-timeout-ms", "200"]).await;
    for player in 0..40 {
        assert_eq!(post_json(&app, "/events", big_join(player, 40_000)).await.0, StatusCode::OK);
    }
    let cut = read_after_stalling(&app).await;
    assert!(cut.starts_with(b"{\"events\":["), "{:?}", String::from_utf8_lossy(&cut[..cut.len().min(40)]));
    assert!(cut.len() <= 128 * 1024, "a stalled reader held {} bytes", cut.len());
    node.shutdown().await;
}

/// A client that stops reading a response on a real connection: once
/// nothing could be written to it for `--stalled-reader-timeout-ms`, the
/// node closes the connection, freeing its slot (here the only one) and
/// what it had buffered for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_client_stops_reading_is_closed_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let flags = ["--max-connections", "1", "--stalled-reader-timeout-ms", "300", "--read-timeout-ms", "60000"];
    let (node, app, _data) = single_node_with(&flags).await;
    // 9.6 MB of events: more than the two sockets' buffers take in (the
    // kernel lets a send buffer grow to 4 MiB).
    for player in 0..160 {
        assert_eq!(post_json(&app, "/events", big_join(player, 60_000)).await.0, StatusCode::OK);
    }
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut stalled = socket.connect(node.http_addr).await.expect("connect");
    stalled.write_all(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("request sent");
    // Never read from `stalled`: until the node cuts it off, it holds the
    // only connection slot, and a new client waits unaccepted.
    let health = reqwest::Client::new().get(format!("http://{}/health", node.http_addr)).send();
    let health = tokio::time::timeout(Duration::from_secs(20), health).await;
    assert!(
        matches!(&health, Ok(Ok(answer)) if answer.status() == 200),
        "the stalled connection kept the only slot: {health:?}"
    );
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the stalled connection is still open after {} bytes", got.len());
    node.shutdown().await;
}

/// Every thread of the runtime's blocking pool busy (as many clients'
/// reads could make it): a write still commits, its log append and fsync
/// running on the node's own I/O threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_commits_while_every_blocking_thread_is_busy() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (node, app, _data) = single_node().await;
    let released = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    for _ in 0..600 {
        let released = released.clone();
        busy.push(tokio::task::spawn_blocking(move || {
            while !released.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }));
    }
    let write = tokio::time::timeout(Duration::from_secs(8), post_json(&app, "/events", join_event(7))).await;
    released.store(true, Ordering::Release);
    for task in busy {
        task.await.expect("busy task");
    }
    assert!(matches!(write, Ok((StatusCode::OK, _))), "the write did not commit within 8 s: {write:?}");
    node.shutdown().await;
}

/// Connections that never send a byte, past `--max-connections`: each is
/// closed after `--read-timeout-ms`, so the ones waiting behind them, and
/// a real client's, get their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_read_timeout_and_a_client_behind_them_is_served() {
    use tokio::io::AsyncReadExt;

    let (node, _app, _data) = single_node_with(&["--max-connections", "8", "--read-timeout-ms", "300"]).await;
    let addr = node.http_addr;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let client = reqwest::Client::new();
    let answer = tokio::time::timeout(Duration::from_secs(30), client.get(format!("http://{addr}/health")).send())
        .await
        .expect("served within 30 s")
        .expect("answered");
    assert_eq!(answer.status(), 200);
    for (n, stream) in silent.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "silent connection {n} is still open: {closed:?}");
    }
    node.shutdown().await;
}

/// `--max-connections` must leave the node the descriptors its own files
/// need, within the process's open-file limit.
#[tokio::test]
async fn a_connection_cap_beyond_the_open_file_limit_is_refused_at_start() {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("limit");
    let too_many = hard.to_string();
    let config = super::in_memory_founder(&["--max-connections", &too_many]);
    let refused = crate::node::RunningNode::start(config).await.err().expect("refused");
    assert!(matches!(refused, crate::node::NodeError::TooFewOpenFiles { .. }), "{refused}");
    assert!(refused.to_string().contains("--max-connections"), "{refused}");
}

/// A join naming an address no node could listen on is refused before it
/// reaches the leader: 400 `invalid_address`, saying which field and what
/// is wrong with it. Nothing joins.
#[tokio::test]
async fn join_addresses_must_be_host_port_with_a_valid_host_and_port() {
    let (node, app, _data) = single_node().await;
    let too_long = format!("{}.example:5000", "a".repeat(250));
    let cases: [(&str, &str, &str); 13] = [
        ("raft_addr", "nohost", "no port"),
        ("raft_addr", "127.0.0.1:0", "port"),
        ("raft_addr", "127.0.0.1:65536", "port"),
        ("raft_addr", "127.0.0.1:+80", "port"),
        ("raft_addr", "127.0.0.1:", "port"),
        ("http_addr", ":8080", "host"),
        ("http_addr", "bad_host:8080", "host"),
        ("http_addr", "-lead.example:8080", "host"),
        ("http_addr", "10.0.0.300:8080", "host"),
        ("http_addr", "::1:8080", "brackets"),
        ("http_addr", "[::g]:8080", "host"),
        ("http_addr", "host name:8080", "host"),
        ("raft_addr", &too_long, "255"),
    ];
    for (field, addr, says) in cases {
        let mut join = json!({ "id": 2, "raft_addr": "127.0.0.1:5002", "http_addr": "127.0.0.1:8082" });
        join[field] = json!(addr);
        let (status, body) = post_json(&app, "/nodes", join).await;
        assert_eq!(
            (status, body["error"].as_str(), body["success"].as_bool()),
            (StatusCode::BAD_REQUEST, Some("invalid_address"), Some(false)),
            "{addr:?}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(field) && message.contains(says), "{addr:?}: {message}");
    }
    let members = node.state.raft.metrics().borrow().membership_config.membership().nodes().count();
    assert_eq!(members, 1, "a refused join added a member");
    node.shutdown().await;
}

/// `POST /nodes` for node `id` at addresses where nothing listens: as a
/// learner it never catches up, so its join times out and it stays a learner.
fn join_of(id: u64) -> serde_json::Value {
    json!({ "id": id, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:1" })
}

/// A join by a node that never answers the leader leaves a learner, never
/// a voter: the quorum stays what it was and writes still commit. (OpenRaft
/// counts a learner within `replication_lag_threshold` entries of the
/// leader as caught up, even one that never replied; in a young cluster
/// that was any learner, and the next step made it a voter.)
#[tokio::test]
async fn a_node_that_never_answers_is_not_promoted_and_writes_still_commit() {
    let (node, app, _data) = single_node_with(&["--join-timeout-ms", "1000"]).await;
    let (status, body) = post_json(&app, "/nodes", join_of(2)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let voters: Vec<u64> = node.state.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    assert_eq!(voters, [1], "an unreachable node became a voter");
    let write = tokio::time::timeout(Duration::from_secs(10), post_json(&app, "/events", join_event(1))).await;
    assert!(matches!(write, Ok((StatusCode::OK, _))), "the write did not commit within 10 s: {write:?}");
    node.shutdown().await;
}

/// Joins that never finish still leave their learners in the membership:
/// past `--max-members` members (voters and learners), a new node's join is
/// 409 `too_many_members`; a member's own join is not a new member and is
/// not refused.
#[tokio::test]
async fn a_join_past_max_members_is_refused_with_a_409_naming_the_flag() {
    let (node, app, _data) = single_node_with(&["--max-members", "3", "--join-timeout-ms", "1000"]).await;
    let members = || node.state.raft.metrics().borrow().membership_config.membership().nodes().count();
    for id in [2, 3] {
        let (status, body) = post_json(&app, "/nodes", join_of(id)).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "learner {id} never catches up: {body}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while members() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the two learners are not members: {}", members());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = post_json(&app, "/nodes", join_of(4)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("too_many_members")), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("--max-members") && message.contains('3'), "{message}");
    let (status, body) = post_json(&app, "/nodes", join_of(2)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "a member's join is not refused by the cap: {body}");
    assert_eq!(members(), 3);
    node.shutdown().await;
}
