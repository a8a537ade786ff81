//! Mutual TLS on the Raft port: a caller without a certificate of this
//! cluster cannot even connect, and one node's certificate cannot speak as
//! another node, whatever the RPC.

use std::path::Path;
use std::time::Duration;

use gameraft::proto::pb;
use gameraft::proto::pb::raft_service_client::RaftServiceClient;
use gameraft::tls::certs;
use gameraft::types::{Entry, LogId, NodeId, SnapshotMeta, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::harness::{event, wait_for, TestCluster};

/// A caller of a node's Raft port, as the test builds it.
enum Caller<'a> {
    Plaintext,
    /// TLS that trusts the cluster CA but shows no certificate.
    NoCertificate,
    /// TLS showing node `id`'s certificate from the CA in `dir`.
    Certificate {
        dir: &'a Path,
        id: NodeId,
    },
}

async fn connect(raft_addr: &str, ca_dir: &Path, caller: &Caller<'_>) -> RaftServiceClient<Channel> {
    let endpoint = match caller {
        Caller::Plaintext => Endpoint::from_shared(format!("http://{raft_addr}")).expect("endpoint"),
        Caller::NoCertificate | Caller::Certificate { .. } => {
            let ca = std::fs::read_to_string(certs::ca_cert_path(ca_dir)).expect("CA");
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Caller::Certificate { dir, id } = caller {
                let cert = std::fs::read_to_string(certs::node_cert_path(dir, *id)).expect("cert");
                let key = std::fs::read_to_string(certs::node_key_path(dir, *id)).expect("key");
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            Endpoint::from_shared(format!("https://{raft_addr}")).expect("endpoint").tls_config(tls).expect("tls")
        }
    };
    RaftServiceClient::new(endpoint.timeout(Duration::from_secs(5)).connect_lazy())
}

/// The metadata a genuine peer sends: the target's cluster and incarnation,
/// read from its data directory, so that only the certificate stands
/// between a forged RPC and the target's Raft.
fn addressed<T>(message: T, target: NodeId, node_json: &serde_json::Value) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    let field = |name: &str| node_json[name].as_str().expect(name).parse().expect("metadata value");
    metadata.insert("gameraft-cluster-id", field("cluster_id"));
    metadata.insert("gameraft-to-node", target.to_string().parse().expect("metadata value"));
    metadata.insert("gameraft-to-incarnation", field("incarnation"));
    request
}

/// AppendEntries, Vote and InstallSnapshot in the name of `claimed`, one
/// term ahead of the target, and TimeoutNow in its name at `term`: each
/// would change the target's state if accepted.
async fn forge_all(
    client: &mut RaftServiceClient<Channel>,
    target: NodeId,
    node_json: &serde_json::Value,
    claimed: NodeId,
    term: u64,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let vote = Vote::new_committed(term + 1, claimed);
    let log_id = |index| LogId::new(CommittedLeaderId::new(term + 1, claimed), index);
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: None,
        leader_commit: Some(log_id(1)),
        entries: vec![Entry { log_id: log_id(1), payload: EntryPayload::Blank }],
    };
    let ballot = VoteRequest { vote: Vote::new(term + 1, claimed), last_log_id: Some(log_id(1_000_000)) };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta { last_log_id: Some(log_id(1_000_000)), snapshot_id: "forged".into(), ..Default::default() },
        offset: 0,
        data: b"forged".to_vec(),
        done: false,
    };
    vec![
        (
            "append_entries",
            client.append_entries(addressed(pb::AppendEntriesRequest::from(append), target, node_json)).await.map(drop),
        ),
        ("vote", client.vote(addressed(pb::VoteRequest::from(ballot), target, node_json)).await.map(drop)),
        (
            "install_snapshot",
            client
                .install_snapshot(addressed(pb::InstallSnapshotRequest::from(snapshot), target, node_json))
                .await
                .map(drop),
        ),
        (
            "timeout_now",
            client
                .timeout_now(addressed(
                    pb::TimeoutNowRequest { leader: Some(pb::LeaderId { term, node_id: claimed }), last_log_index: 0 },
                    target,
                    node_json,
                ))
                .await
                .map(drop),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_node_with_its_own_certificate_of_this_cluster_can_append_vote_install_a_snapshot_or_time_out() {
    let ca = tempfile::tempdir().expect("temp dir");
    certs::init_ca(ca.path()).expect("CA");
    for id in 1..=3 {
        certs::issue_node(ca.path(), id, "127.0.0.1").expect("node certificate");
    }
    let other_ca = tempfile::tempdir().expect("temp dir");
    certs::init_ca(other_ca.path()).expect("other CA");
    for id in 1..=3 {
        certs::issue_node(other_ca.path(), id, "127.0.0.1").expect("node certificate of the other CA");
    }

    let tls_arg = format!("--peer-tls-dir={}", ca.path().display());
    let mut cluster = TestCluster::empty("peer_tls", &[&tls_arg]);
    cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    for id in 2..=3 {
        let join = format!("http://{}", cluster.node(1).http_addr);
        cluster.spawn(id, Some(join), "127.0.0.1:0", "127.0.0.1:0").await;
    }
    // Replication, votes and forwarded writes all run over mutual TLS.
    let leader = cluster.wait_for_voters(3).await;
    let target = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let holder = cluster.ids().into_iter().find(|&id| id != leader && id != target).expect("another follower");
    let written = cluster.client(target).post_event(&event(1)).await.expect("answered");
    assert_eq!(written.status, 200, "a write forwarded by a follower: {}", written.body);
    cluster.converged_events(1).await;

    let node_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cluster.data_dir_of(target).join("node.json")).expect("the target's node.json"),
    )
    .expect("node.json");
    let status_before = cluster.client(target).status().await.expect("status");
    let term = status_before.current_term;
    let raft_addr = cluster.node(target).raft_addr.clone();

    // No TLS, TLS with no certificate, a certificate from another CA: the
    // connection itself is refused, so no RPC arrives.
    let rogues = [
        ("plaintext", Caller::Plaintext),
        ("no certificate", Caller::NoCertificate),
        ("another CA's certificate", Caller::Certificate { dir: other_ca.path(), id: holder }),
    ];
    for (rogue, caller) in &rogues {
        let mut client = connect(&raft_addr, ca.path(), caller).await;
        for (rpc, outcome) in forge_all(&mut client, target, &node_json, leader, term).await {
            // A transport error (the connection was closed in the
            // handshake; tonic reports it as one of these codes), never an
            // answer of the node's gRPC service.
            let status = outcome.expect_err(&format!("{rogue}: {rpc} was answered"));
            let transport = [tonic::Code::Unavailable, tonic::Code::Unknown, tonic::Code::Cancelled];
            assert!(transport.contains(&status.code()) && status.metadata().is_empty(), "{rogue}: {rpc}: {status:?}");
        }
    }

    // A genuine certificate, node `holder`'s, speaking as the leader: the
    // connection is accepted, every RPC refused for the mismatch.
    let mut impostor = connect(&raft_addr, ca.path(), &Caller::Certificate { dir: ca.path(), id: holder }).await;
    for (rpc, outcome) in forge_all(&mut impostor, target, &node_json, leader, term).await {
        let status = outcome.expect_err(&format!("node {holder}'s certificate spoke as node {leader}: {rpc}"));
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{rpc}: {status}");
        assert!(status.message().contains(&format!("certificate is node {holder}'s")), "{rpc}: {status}");
    }
    // The same certificate speaking as its own node is heard (a vote
    // request at the current term, which changes nothing).
    let own = VoteRequest { vote: Vote::new(term, holder), last_log_id: None };
    impostor
        .vote(addressed(pb::VoteRequest::from(own), target, &node_json))
        .await
        .expect("a node's own certificate is accepted for its own RPCs");

    // Nothing reached the target's Raft: same term, same events; and the
    // cluster still writes.
    let status_after = cluster.client(target).status().await.expect("status");
    assert_eq!((status_after.current_term, status_after.event_count), (term, status_before.event_count));
    let written = cluster.client(leader).post_event(&event(2)).await.expect("answered");
    assert_eq!(written.status, 200, "{}", written.body);
    for id in cluster.ids() {
        wait_for(&format!("both events on node {id}"), Duration::from_secs(10), || async {
            (cluster.client(id).events().await.ok()?.count == 2).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_https_clients_and_joining_nodes_reach_the_api_over_tls_only() {
    let ca = tempfile::tempdir().expect("temp dir");
    certs::init_ca(ca.path()).expect("CA");
    for id in 1..=2 {
        certs::issue_node(ca.path(), id, "127.0.0.1").expect("node certificate");
    }
    // The HTTPS certificate names the host only; one serves both nodes.
    let https_cert = certs::issue_node(ca.path(), 100, "127.0.0.1").expect("HTTPS certificate");
    let args = [
        format!("--peer-tls-dir={}", ca.path().display()),
        format!("--http-tls-cert={}", https_cert.display()),
        format!("--http-tls-key={}", certs::node_key_path(ca.path(), 100).display()),
    ];
    let mut cluster = TestCluster::empty("https", &args.iter().map(String::as_str).collect::<Vec<_>>());
    cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    let first = cluster.node(1).http_addr.clone();
    cluster.spawn(2, Some(format!("https://{first}")), "127.0.0.1:0", "127.0.0.1:0").await;

    let ca_pem = std::fs::read(certs::ca_cert_path(ca.path())).expect("CA");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("CA certificate"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    // Node 2 joined node 1 over HTTPS, trusting the cluster CA.
    wait_for("two voters, seen over HTTPS", Duration::from_secs(20), || async {
        let nodes: serde_json::Value =
            https.get(format!("https://{first}/nodes")).send().await.ok()?.json().await.ok()?;
        let voters = nodes["nodes"].as_array()?.iter().filter(|n| n["role"] == "voter").count();
        (voters == 2).then_some(())
    })
    .await;
    let written = https
        .post(format!("https://{}/events", cluster.node(2).http_addr))
        .json(&serde_json::json!({ "event": event(1) }))
        .send()
        .await
        .expect("a write over HTTPS, forwarded over peer TLS");
    assert_eq!(written.status(), 200);

    // Plain HTTP gets no answer from an HTTPS port.
    let plain = reqwest::Client::new().get(format!("http://{first}/health")).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}
