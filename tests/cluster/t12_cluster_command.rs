//! The binary's commands as processes: `gameraft cluster` (the README's run
//! command) and `gameraft serve`, stopped by a signal.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use gameraft::launcher::ServeCommand;

use crate::harness::{free_bases, wait_for};

/// `gameraft cluster` of 3 in-memory nodes on the given base ports, with
/// `extra` flags; stdout piped, stderr dropped (a test may pipe it).
fn cluster_command(dir: &std::path::Path, http: u16, raft: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gameraft"));
    command
        .args(["cluster", "--nodes", "3", "--in-memory"])
        .args(extra)
        .arg(format!("--base-http-port={http}"))
        .arg(format!("--base-raft-port={raft}"))
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Whoever reads the command's output may go away (a closed terminal, `|
/// head`): the command keeps its cluster, and on SIGTERM still stops every
/// node gracefully and exits 0, without a panic.
/// What the command printed, up to and including the first line that
/// contains `needle`, read within 2 minutes;
/// `None` if its output ends or the time runs out first.
async fn printed_through(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> Option<String> {
    let read = async {
        let mut output = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
            if line.contains(needle) {
                return Some(output);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(120), read).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_whose_output_is_closed_still_stops_its_nodes_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http, raft) = free_bases(3);
    let mut command = cluster_command(dir.path(), http, raft, &[]);
    command.stderr(Stdio::piped());
    let mut cluster = command.spawn().expect("start gameraft cluster");
    let pid = Pid::from_raw(cluster.id().expect("running") as i32);
    let mut stderr = cluster.stderr.take().expect("stderr piped");
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let mut lines = BufReader::new(cluster.stdout.take().expect("stdout piped")).lines();
    let ready = printed_through(&mut lines, "Press Ctrl-C").await;
    assert!(ready.is_some(), "the cluster formed and said so");
    drop(lines); // the reader goes away

    kill(pid, Signal::SIGTERM).expect("SIGTERM the command");
    let status = tokio::time::timeout(Duration::from_secs(60), cluster.wait())
        .await
        .expect("the command exits within 60 s of SIGTERM")
        .expect("wait for the command");
    let stderr = stderr_text.await.expect("stderr reader");
    assert!(!stderr.contains("panicked"), "the command panicked:\n{stderr}");
    assert!(status.success(), "the command exited {status}:\n{stderr}");
    for port in http..http + 3 {
        wait_for(&format!("the node on port {port} to be gone"), Duration::from_secs(10), || async move {
            TcpListener::bind(("127.0.0.1", port)).is_ok().then_some(())
        })
        .await;
    }
}

/// A SIGTERM the moment a node says it listens stops it gracefully (exit 0),
/// as at any later moment: the node listens for the signal before it starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_sigtermed_as_soon_as_it_listens_stops_gracefully() {
    for _ in 0..5 {
        let mut node = ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
            .id(1)
            .http_addr(([127, 0, 0, 1], 0).into())
            .raft_addr(([127, 0, 0, 1], 0).into())
            .in_memory()
            .bootstrap()
            .stderr(Stdio::null())
            .spawn()
            .expect("start gameraft serve");
        node.listening(Duration::from_secs(20)).await.expect("listens");
        let pid = Pid::from_raw(node.pid().expect("running") as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM the node");
        let status = tokio::time::timeout(Duration::from_secs(30), node.process.wait())
            .await
            .expect("the node exits within 30 s of SIGTERM")
            .expect("wait for the node");
        assert!(status.success(), "the node exited {status}, not gracefully");
    }
}

/// `gameraft cluster --secure`: the nodes check tokens and talk mutual TLS
/// with no set-up by hand, and the command says where the admin token is.
#[tokio::test(flavor = "multi_thread")]
async fn a_secure_cluster_needs_the_printed_token_and_its_peers_use_their_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http, raft) = free_bases(3);
    let mut cluster =
        cluster_command(dir.path(), http, raft, &["--secure"]).spawn().expect("start gameraft cluster --secure");
    let mut lines = BufReader::new(cluster.stdout.take().expect("stdout piped")).lines();
    let output = printed_through(&mut lines, "Press Ctrl-C").await.expect("the cluster formed");
    let token_path = dir.path().join("secure").join("admin-token");
    assert!(output.contains(&format!("export GAMERAFT_TOKEN=$(cat {})", token_path.display())), "{output}");
    let token = std::fs::read_to_string(&token_path).expect("admin token").trim().to_string();

    let follower = format!("http://127.0.0.1:{}", http + 1);
    let anonymous = gameraft::client::Client::new(&follower).expect("client");
    assert_eq!(anonymous.get("/status").await.expect("answered").status, 401);
    let admin = gameraft::client::Client::with_token(&follower, &token).expect("client");
    let written = admin.post_event(&crate::harness::event(1)).await.expect("answered");
    assert_eq!(written.status, 200, "a write forwarded over peer TLS: {}", written.body);

    // A peer without a certificate cannot even connect to the Raft port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{raft}")).expect("endpoint");
    let mut rogue = gameraft::proto::pb::raft_service_client::RaftServiceClient::new(plain.connect_lazy());
    let vote = gameraft::proto::pb::VoteRequest::from(openraft::raft::VoteRequest {
        vote: gameraft::types::Vote::new(1000, 9),
        last_log_id: None,
    });
    assert!(rogue.vote(vote).await.is_err(), "a plaintext vote request was answered");

    kill(Pid::from_raw(cluster.id().expect("running") as i32), Signal::SIGTERM).expect("SIGTERM the command");
    let status = tokio::time::timeout(Duration::from_secs(60), cluster.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "the command exited {status}");
}

/// `gameraft cluster` given a tokens file and a join token (an admin token)
/// watches its nodes with that token: it reports the cluster formed.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_given_a_tokens_file_and_a_join_token_forms_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = gameraft::auth::new_token();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("admin {} ops\n", gameraft::auth::hash_hex(&token))).expect("tokens file");
    let (http, raft) = free_bases(3);
    let tokens_arg = format!("--auth-tokens-file={}", tokens.display());
    let mut command = cluster_command(dir.path(), http, raft, &[&tokens_arg]);
    command.env("GAMERAFT_JOIN_TOKEN", &token);
    let mut cluster = command.spawn().expect("start gameraft cluster");
    let mut lines = BufReader::new(cluster.stdout.take().expect("stdout piped")).lines();
    let formed = printed_through(&mut lines, "leader is node").await;
    assert!(formed.is_some(), "the cluster formed and said so");
    kill(Pid::from_raw(cluster.id().expect("running") as i32), Signal::SIGTERM).expect("SIGTERM the command");
    let status = tokio::time::timeout(Duration::from_secs(60), cluster.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "the command exited {status}");
}
