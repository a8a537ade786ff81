//! A typed HTTP client for one gameraft node, used by `gameraft cluster` and
//! by the tests.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::{EventsPage, EventsResponse, NodesResponse, PostEventRequest, StatusResponse};
use crate::event::GameEvent;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} answered a body that does not parse: {source}")]
    Decode { url: String, source: serde_json::Error },
    #[error("the token for {url} cannot be sent in a header")]
    BadToken { url: String },
}

/// The answer to a request, whatever its status: tests look at both.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `base` is the node's URL, e.g. `http://127.0.0.1:8081`.
    pub fn new(base: impl Into<String>) -> Result<Self, ClientError> {
        Self::build(base.into(), None)
    }

    /// A client that presents `token` (`Authorization: Bearer`) on every
    /// request, for nodes that check client tokens.
    pub fn with_token(base: impl Into<String>, token: &str) -> Result<Self, ClientError> {
        Self::build(base.into(), Some(token))
    }

    fn build(base: String, token: Option<&str>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| ClientError::BadToken { url: base.clone() })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .map_err(|source| ClientError::Http { url: base.clone(), source })?;
        Ok(Self { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get_ok("/status").await
    }

    pub async fn nodes(&self) -> Result<NodesResponse, ClientError> {
        self.get_ok("/nodes").await
    }

    pub async fn events(&self) -> Result<EventsResponse, ClientError> {
        self.get_ok("/events").await
    }

    pub async fn events_page(&self, from: u64, limit: u64) -> Result<EventsPage, ClientError> {
        self.get_ok(&format!("/events?from={from}&limit={limit}")).await
    }

    /// `GET path`, with the status and JSON body whatever the status.
    pub async fn get(&self, path: &str) -> Result<RawResponse, ClientError> {
        self.send(self.http.get(self.url(path)), path).await
    }

    /// `POST /events` with `event`; the answer whatever its status.
    pub async fn post_event(&self, event: &GameEvent) -> Result<RawResponse, ClientError> {
        let body = PostEventRequest { event: event.clone(), request_id: None };
        self.send(self.http.post(self.url("/events")).json(&body), "/events").await
    }

    /// `POST path` with a raw body and content type, for malformed input.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<RawResponse, ClientError> {
        let request = self.http.post(self.url(path)).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(request, path).await
    }

    pub async fn delete(&self, path: &str) -> Result<RawResponse, ClientError> {
        self.send(self.http.delete(self.url(path)), path).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> Result<RawResponse, ClientError> {
        let url = self.url(path);
        let resp = request.send().await.map_err(|source| ClientError::Http { url: url.clone(), source })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|source| ClientError::Http { url: url.clone(), source })?;
        let body = serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode { url, source })?;
        Ok(RawResponse { status, body })
    }

    async fn get_ok<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let raw = self.get(path).await?;
        let url = self.url(path);
        if raw.status != 200 {
            return Err(ClientError::Status { url, status: raw.status, body: raw.body.to_string() });
        }
        serde_json::from_value(raw.body).map_err(|source| ClientError::Decode { url, source })
    }
}
