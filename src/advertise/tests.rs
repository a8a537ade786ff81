use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::*;

/// A v4 task metadata document as Fargate serves it (awsvpc), trimmed of
/// nothing the parser must skip.
const FARGATE_TASK: &str = r#"{
  "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
  "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c",
  "Family": "gameraft",
  "Revision": "3",
  "DesiredStatus": "RUNNING",
  "KnownStatus": "RUNNING",
  "Limits": {"CPU": 0.25, "Memory": 512},
  "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
  "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
  "AvailabilityZone": "us-west-2d",
  "LaunchType": "FARGATE",
  "Containers": [
    {
      "DockerId": "e9028f8d5d8e4f258373e7b93ce9a3c3-2495160603",
      "Name": "gameraft",
      "DockerName": "gameraft",
      "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/gameraft:latest",
      "Labels": {"com.amazonaws.ecs.container-name": "gameraft"},
      "DesiredStatus": "RUNNING",
      "KnownStatus": "RUNNING",
      "Limits": {"CPU": 2},
      "CreatedAt": "2020-10-02T00:43:06.326590752Z",
      "StartedAt": "2020-10-02T00:43:06.767535449Z",
      "Type": "NORMAL",
      "Networks": [
        {
          "NetworkMode": "awsvpc",
          "IPv4Addresses": ["10.0.2.106"],
          "AttachmentIndex": 0,
          "MACAddress": "0a:62:17:7a:36:68",
          "IPv4SubnetCIDRBlock": "10.0.2.0/24",
          "DomainNameServers": ["10.0.0.2"],
          "PrivateDNSName": "ip-10-0-2-106.us-west-2.compute.internal",
          "SubnetGatewayIpv4Address": "10.0.2.1/24"
        }
      ],
      "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1",
      "LogOptions": {"awslogs-group": "/ecs/gameraft", "awslogs-region": "us-west-2"},
      "LogDriver": "awslogs"
    }
  ],
  "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTimestamp": "2021-09-07T16:57:44Z", "ClockSynchronizationStatus": "SYNCHRONIZED"},
  "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496}
}"#;

/// Serves `body` with `status` at `/v4/abc/task`; returns the URI ECS would
/// put in `ECS_CONTAINER_METADATA_URI_V4`.
async fn metadata_stub(status: StatusCode, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stub");
    let addr = listener.local_addr().expect("the stub's address");
    let app = Router::new().route("/v4/abc/task", get(move || async move { (status, body) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v4/abc")
}

#[tokio::test]
async fn the_ecs_task_metadata_gives_the_task_private_ip() {
    let uri = metadata_stub(StatusCode::OK, FARGATE_TASK).await;
    assert_eq!(ecs_task_ip(&uri).await.unwrap(), Some(Ipv4Addr::new(10, 0, 2, 106)));
    let inputs =
        Inputs { listen_ip: Some(Ipv4Addr::UNSPECIFIED.into()), ecs_metadata_uri: Some(&uri), ..Inputs::default() };
    let advertised = detect(inputs).await.unwrap();
    assert_eq!(advertised, Advertised { host: "10.0.2.106".into(), source: Source::EcsMetadata });
}

#[tokio::test]
async fn the_flag_and_a_specific_listen_ip_come_before_the_ecs_metadata() {
    let uri = metadata_stub(StatusCode::OK, FARGATE_TASK).await;
    let flagged = Inputs { flag: Some("worker-2"), ecs_metadata_uri: Some(&uri), ..Inputs::default() };
    assert_eq!(detect(flagged).await.unwrap(), Advertised { host: "worker-2".into(), source: Source::Flag });
    let bound = Inputs { listen_ip: Some([10, 1, 2, 3].into()), ecs_metadata_uri: Some(&uri), ..Inputs::default() };
    assert_eq!(detect(bound).await.unwrap(), Advertised { host: "10.1.2.3".into(), source: Source::ListenAddress });
}

#[tokio::test]
async fn ecs_metadata_that_makes_no_sense_is_a_clear_error() {
    let cases: [(StatusCode, &'static str, &str); 4] = [
        (StatusCode::OK, "<html>hello</html>", "not a v4 task document"),
        (
            StatusCode::OK,
            r#"{"Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": []}]}]}"#,
            "no IPv4Addresses",
        ),
        (
            StatusCode::OK,
            r#"{"Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["ten"]}]}]}"#,
            "not an IPv4 address",
        ),
        (StatusCode::INTERNAL_SERVER_ERROR, "", "answered 500"),
    ];
    for (status, body, expected) in cases {
        let uri = metadata_stub(status, body).await;
        let err = ecs_task_ip(&uri).await.expect_err(body).to_string();
        assert!(err.contains(expected) && err.contains("ADVERTISE_HOST"), "{body}: {err}");
    }
}

#[tokio::test]
async fn a_task_without_awsvpc_falls_through_to_the_route() {
    let bridge = r#"{"Containers": [{"Networks": [{"NetworkMode": "bridge", "IPv4Addresses": ["172.17.0.2"]}]}]}"#;
    let uri = metadata_stub(StatusCode::OK, bridge).await;
    assert_eq!(ecs_task_ip(&uri).await.unwrap(), None);
    let peers = ["127.0.0.1:5000".to_string()];
    let inputs = Inputs { ecs_metadata_uri: Some(&uri), peers: &peers, ..Inputs::default() };
    let advertised = detect(inputs).await.unwrap();
    assert_eq!(advertised, Advertised { host: "127.0.0.1".into(), source: Source::RouteToPeers });
}

#[tokio::test]
async fn an_unreachable_metadata_endpoint_is_an_error() {
    // Nothing listens on port 9 of loopback: the connection is refused.
    let err = ecs_task_ip("http://127.0.0.1:9/v4/abc").await.expect_err("nothing listens there");
    assert!(matches!(err, AdvertiseError::EcsUnreachable { .. }), "{err}");
}

#[tokio::test]
async fn the_route_to_a_loopback_peer_is_loopback() {
    let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    assert_eq!(local_ip_towards(local), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(route_to_peer("http://127.0.0.1:8080").await, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(route_to_peer("localhost:8080").await.map(|ip| ip.is_loopback()), Some(true));
    let peers = ["http://127.0.0.1:8080/".to_string()];
    let inputs = Inputs { listen_ip: Some(Ipv4Addr::UNSPECIFIED.into()), peers: &peers, ..Inputs::default() };
    assert_eq!(detect(inputs).await.unwrap(), Advertised { host: "127.0.0.1".into(), source: Source::RouteToPeers });
}

#[tokio::test]
async fn the_route_to_an_outside_peer_is_not_loopback() {
    let Some(ip) = local_ip_towards(OFF_MACHINE) else {
        eprintln!("skipped: this machine has no route off loopback");
        return;
    };
    assert!(!ip.is_loopback(), "the route off the machine goes through {ip}");
    let peers = ["198.51.100.7:5000".to_string()];
    let inputs = Inputs { listen_ip: Some(Ipv4Addr::UNSPECIFIED.into()), peers: &peers, ..Inputs::default() };
    let advertised = detect(inputs).await.unwrap();
    assert_eq!(advertised.source, Source::RouteToPeers);
    assert_ne!(advertised.host, "127.0.0.1");
    // With no peer known, the default route's interface, never loopback.
    let alone = Inputs { listen_ip: Some(Ipv4Addr::UNSPECIFIED.into()), ..Inputs::default() };
    assert_eq!(detect(alone).await.unwrap().source, Source::DefaultRoute);
}

#[test]
fn advertised_address_prefers_the_advertise_host() {
    let found = |host: &str, source| Advertised { host: host.into(), source };
    let bound: SocketAddr = "0.0.0.0:5000".parse().expect("an address");
    let specific: SocketAddr = "10.1.2.3:8080".parse().expect("an address");
    assert_eq!(advertised(bound, &found("worker-2", Source::Flag)), "worker-2:5000");
    assert_eq!(advertised(specific, &found("worker-2", Source::Flag)), "worker-2:8080");
    assert_eq!(advertised(bound, &found("10.0.2.106", Source::EcsMetadata)), "10.0.2.106:5000");
    assert_eq!(advertised(specific, &found("10.9.9.9", Source::RouteToPeers)), "10.1.2.3:8080");
    assert_eq!(advertised(bound, &found("::1", Source::Flag)), "[::1]:5000");
    assert_eq!(advertised_host(bound, &found("::1", Source::Flag)), "::1");
}
