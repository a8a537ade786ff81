//! Client tokens across a cluster: joining with an admin token, a follower
//! forwarding the caller's token, and the leader checking it itself.

use std::time::Duration;

use gameraft::auth::{hash_hex, new_token};
use gameraft::client::Client;
use nix::sys::signal::{kill, Signal};

use crate::harness::{event, wait_for, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_forwards_the_callers_token_and_the_leader_checks_it_against_its_own_file() {
    let (admin, writer, reader) = (new_token(), new_token(), new_token());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens");
    let admin_line = format!("admin {} ops\n", hash_hex(&admin));
    let reader_line = format!("read {} dashboard\n", hash_hex(&reader));
    let writer_line = |role: &str| format!("{role} {} game-server\n", hash_hex(&writer));
    std::fs::write(&file, format!("{admin_line}{}{reader_line}", writer_line("write"))).expect("write tokens file");
    let tokens_arg = format!("--auth-tokens-file={}", file.display());
    let join_arg = format!("--join-token={admin}");

    // Joining needs the admin token: every node joins with it.
    let mut cluster =
        TestCluster::empty("client_tokens", &["--in-memory", &tokens_arg, &join_arg]).with_client_token(&admin);
    cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    for id in 2..=3 {
        let join = format!("http://{}", cluster.node(1).http_addr);
        cluster.spawn(id, Some(join), "127.0.0.1:0", "127.0.0.1:0").await;
    }
    let leader = cluster.wait_for_voters(3).await;
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let base = format!("http://{}", cluster.node(follower).http_addr);
    let anonymous = Client::new(&base).expect("client");
    let as_writer = Client::with_token(&base, &writer).expect("client");
    let as_reader = Client::with_token(&base, &reader).expect("client");

    // On a follower: no token, 401; a read token reads and cannot write.
    let refused = anonymous.get("/events").await.expect("answered");
    assert_eq!((refused.status, refused.body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(as_reader.get("/events").await.expect("answered").status, 200);
    let forbidden = as_reader.post_event(&event(1)).await.expect("answered");
    assert_eq!((forbidden.status, forbidden.body["error"].as_str()), (403, Some("forbidden")));

    // A write token writes through the follower: the leader accepted the
    // forwarded token, and the event reaches every node.
    let written = as_writer.post_event(&event(2)).await.expect("answered");
    assert_eq!(written.status, 200, "{}", written.body);
    for id in cluster.ids() {
        wait_for(&format!("the event on node {id}"), Duration::from_secs(10), || async {
            (cluster.client(id).events().await.ok()?.count == 1).then_some(())
        })
        .await;
    }

    // Only the leader reads the file again (SIGHUP), with the writer
    // demoted to read and the dashboard's token gone: the follower still
    // lets the write through and forwards it; the leader, checking the same
    // token, refuses it.
    std::fs::write(&file, format!("{admin_line}{}", writer_line("read"))).expect("rewrite tokens file");
    kill(cluster.node(leader).pid(), Signal::SIGHUP).expect("SIGHUP the leader");
    let leader_base = format!("http://{}", cluster.node(leader).http_addr);
    let dashboard_on_leader = Client::with_token(&leader_base, &reader).expect("client");
    wait_for("the leader to read its tokens file again", Duration::from_secs(10), || async {
        (dashboard_on_leader.get("/events").await.ok()?.status == 401).then_some(())
    })
    .await;
    assert_eq!(as_reader.get("/events").await.expect("answered").status, 200, "the follower kept its tokens");
    let through_follower = as_writer.post_event(&event(4)).await.expect("answered");
    assert_eq!(
        (through_follower.status, through_follower.body["error"].as_str()),
        (403, Some("forbidden")),
        "the leader checks the forwarded token: {}",
        through_follower.body
    );
    assert_eq!(cluster.client(leader).events().await.expect("events").count, 1, "nothing refused was committed");
}

#[test]
fn token_new_prints_a_token_then_its_line_and_refuses_a_name_with_spaces() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gameraft")).args(args).output().expect("run gameraft token")
    };
    let made = run(&["token", "new", "--role", "write", "--name", "game-server-1"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = String::from_utf8(made.stdout).expect("utf-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (token, line) = (lines[0], lines[1]);
    assert_eq!(token.len(), 64, "256 bits in hex: {token}");
    assert_eq!(line, format!("write {} game-server-1", hash_hex(token)));
    let tokens = gameraft::auth::Tokens::parse(line).expect("the line parses as a tokens file");
    assert_eq!(tokens.caller(token).map(|c| c.role), Some(gameraft::auth::Role::Write));

    let other = run(&["token", "new", "--role", "write", "--name", "game-server-1"]);
    assert_ne!(String::from_utf8_lossy(&other.stdout).lines().next(), Some(token), "every token is new");
    for bad in [
        &["token", "new", "--role", "write", "--name", "two words"][..],
        &["token", "new", "--role", "root", "--name", "x"],
    ] {
        let refused = run(bad);
        assert!(!refused.status.success() && refused.stdout.is_empty(), "{bad:?} was accepted");
    }
}
