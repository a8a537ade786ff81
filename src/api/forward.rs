//! Getting a request to the leader, wherever it arrived.
//!
//! Writes, joins, removals and ephemeral events must run on the leader. A
//! follower forwards the request to the leader's Raft port, which serves
//! the API routes beside the peer RPCs (HTTP/2; with peer TLS, over the
//! same mutual TLS as the RPCs), and relays the leader's answer unchanged
//! (same status, same body, same log index). The leader checks the
//! caller's token as if the request had come to it directly.
//!
//! A request is retried against a (new) leader in two cases. The connection
//! to the old leader was refused: the request never left. Or the local Raft
//! answered `ForwardToLeader` ([`LocalError::NotLeader`]): that may come
//! after the entry was appended here and then truncated, while a copy on
//! another node still commits, so it is safe only for requests that are
//! idempotent. Writes are: each carries a request id (the client's, or one
//! the first node assigned, `request_id.rs`) and the state machine appends
//! an id at most once within its window. A request sent whose answer was
//! lost is not re-sent; the client gets 504 `outcome_unknown` and may send
//! it again with the same request id, to any node.

use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::{ApiError, LeaderHint};
use super::AppState;
use crate::tls::PeerTls;
use crate::types::NodeId;

/// Header counting how many times a request was forwarded, so that nodes
/// with briefly different views of the leader cannot bounce it forever.
pub const HOPS_HEADER: &str = "x-gameraft-hops";
const MAX_HOPS: u32 = crate::config::FORWARD_MAX_HOPS;

/// How long a leader that refused a forward is passed over. A refusal is
/// instant and the request never left, so it is cheap to try again; the
/// leader may be a process restarting on its data directory, which resumes
/// as the same leader without any election for the followers to see.
const REFUSED_LEADER_RETRY: Duration = Duration::from_millis(100);

/// A request as it will be re-sent to the leader.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub method: Method,
    pub path_and_query: String,
    pub json_body: Option<Vec<u8>>,
    /// Sent along besides the hop count (e.g. an assigned request id).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why running a request on this node did not produce an answer.
#[derive(Debug)]
pub enum LocalError {
    /// This node is not (or no longer) the leader. It may have appended the
    /// request's entry and truncated it again, and a copy elsewhere may still
    /// commit: [`AppState::on_leader`] retries it on the new leader, which
    /// only idempotent requests may answer with.
    NotLeader,
    Failed(ApiError),
}

impl From<ApiError> for LocalError {
    fn from(err: ApiError) -> Self {
        LocalError::Failed(err)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The leader could not be connected to; the request never left.
    #[error("could not connect to the leader: {0}")]
    NotSent(reqwest::Error),
    /// The request may have reached the leader but no answer came back.
    #[error("no answer from the leader: {0}")]
    NoAnswer(reqwest::Error),
}

/// HTTP/2 client for node-to-leader forwarding; its connections are its
/// own, not the Raft RPCs' channels, so that client traffic cannot delay
/// heartbeats.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    scheme: &'static str,
}

impl Forwarder {
    /// With `tls`, requests go over TLS, presenting this node's certificate
    /// and trusting only the cluster CA.
    pub fn new(timeout: Duration, tls: Option<&PeerTls>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(crate::config::FORWARD_CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_prior_knowledge();
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls.client_config());
        }
        Ok(Self { client: builder.build()?, scheme: if tls.is_some() { "https" } else { "http" } })
    }

    /// The node id a peer's `GET /health` on its Raft port names, if it
    /// answers within `within`: its gameraft process serves (`reaper.rs`).
    pub async fn peer_health(&self, raft_addr: &str, within: Duration) -> Option<NodeId> {
        let url = format!("{}://{raft_addr}/health", self.scheme);
        let answer = self.client.get(url).timeout(within).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let health: super::status::HealthResponse = answer.json().await.ok()?;
        Some(health.node_id)
    }

    async fn send(
        &self,
        raft_addr: &str,
        req: &ForwardRequest,
        hops: u32,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response, ForwardError> {
        let url = format!("{}://{raft_addr}{}", self.scheme, req.path_and_query);
        let mut builder = self.client.request(req.method.clone(), url).header(HOPS_HEADER, hops);
        if let Some(authorization) = authorization {
            builder = builder.header(axum::http::header::AUTHORIZATION, authorization);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.json_body {
            builder = builder.header(axum::http::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let classify =
            |e: reqwest::Error| if e.is_connect() { ForwardError::NotSent(e) } else { ForwardError::NoAnswer(e) };
        let resp = builder.send().await.map_err(classify)?;
        let status = resp.status();
        let content_type = resp.headers().get(axum::http::header::CONTENT_TYPE).cloned();
        let body = resp.bytes().await.map_err(ForwardError::NoAnswer)?;
        let mut response = (status, body).into_response();
        let content_type = content_type.unwrap_or(HeaderValue::from_static("application/json"));
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, content_type);
        Ok(response)
    }
}

fn hops(headers: &HeaderMap) -> u32 {
    headers.get(HOPS_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl AppState {
    /// Runs `local` if this node leads, otherwise forwards `request` to the
    /// leader; waits up to `leader_wait` for a leader to be known or elected.
    pub async fn on_leader<F, Fut>(&self, headers: &HeaderMap, request: ForwardRequest, mut local: F) -> Response
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, LocalError>>,
    {
        let deadline = Instant::now() + self.settings.api.leader_wait();
        let hops = hops(headers);
        // A leader not to use until the instant given: one whose port
        // refused (briefly), or this node once it lost leadership.
        let mut passed_over: Option<(NodeId, Instant)> = None;
        loop {
            let Some(leader) = self.wait_for_leader(passed_over, deadline).await else {
                return ApiError::not_leader(self.leader_hint(self.current_leader())).into_response();
            };
            if leader == self.node_id {
                match local().await {
                    Ok(response) => return response,
                    Err(LocalError::Failed(err)) => return err.into_response(),
                    Err(LocalError::NotLeader) => {
                        tracing::debug!("lost leadership before the request was applied; retrying on the new leader");
                        passed_over = Some((self.node_id, deadline));
                        continue;
                    }
                }
            }
            let Some(addr) = self.registry.get(leader) else {
                return ApiError::not_leader(self.leader_hint(Some(leader))).into_response();
            };
            if hops >= MAX_HOPS {
                return ApiError::not_leader(self.leader_hint(Some(leader))).into_response();
            }
            // The caller's token goes along: the leader checks it too.
            let authorization = headers.get(axum::http::header::AUTHORIZATION);
            match self.forwarder.send(&addr.raft_addr, &request, hops + 1, authorization).await {
                Ok(response) => return response,
                Err(ForwardError::NotSent(err)) => {
                    tracing::debug!(leader, %err, "leader unreachable; trying it again shortly or another leader");
                    passed_over = Some((leader, Instant::now() + REFUSED_LEADER_RETRY));
                }
                Err(err @ ForwardError::NoAnswer(_)) => {
                    return ApiError::no_answer_from_leader(&err, self.settings.retry_horizon()).into_response();
                }
            }
        }
    }

    /// The current leader, once one is known that is not passed over: the
    /// node in `passed_over` only from its instant on (a leader that refused,
    /// or this node after it lost leadership, until `deadline`). `None` if
    /// there is none by `deadline`.
    async fn wait_for_leader(&self, passed_over: Option<(NodeId, Instant)>, deadline: Instant) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            let wake = match (leader, passed_over) {
                (None, _) => deadline,
                (Some(leader), Some((skipped, until))) if leader == skipped && Instant::now() < until => {
                    until.min(deadline)
                }
                (Some(leader), _) => return Some(leader),
            };
            match tokio::time::timeout_at(wake, metrics.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return None, // Raft shut down and dropped the sender.
                Err(_) if wake < deadline => continue,
                Err(_) => return None,
            }
        }
    }

    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn leader_hint(&self, leader: Option<NodeId>) -> Option<LeaderHint> {
        leader.map(|id| LeaderHint { leader_id: id, leader_http_addr: self.registry.get(id).map(|a| a.http_addr) })
    }
}
