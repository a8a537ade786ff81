//! Requests every phase makes the same way, so that a write counts as
//! acknowledged only when the node answers `success`, not on any 200.

use std::time::{Duration, Instant};

use gameraft::api::{PostEventResponse, StatusResponse};

use crate::node::Node;
use crate::Bench;

/// One `POST /events`; `Ok` only for a 200 with `"success": true`.
pub async fn post_event(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<PostEventResponse, String> {
    let resp = http
        .post(url)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("POST {url}: {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let answer: PostEventResponse =
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {url}: answer does not parse: {e}"))?;
    match answer.success {
        true => Ok(answer),
        false => Err(format!("POST {url}: success=false: {}", answer.message)),
    }
}

impl Bench {
    pub async fn wait_ready(&self, node: &Node, limit: Duration) -> Result<(), String> {
        let url = format!("{}/ready", node.base);
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => format!("{}", resp.status()),
                Err(err) => err.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!("GET {url} not 200 within {limit:?}; last answer: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn status(&self, node: &Node) -> Result<StatusResponse, String> {
        self.get_json(&format!("{}/status", node.base)).await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp =
            self.http.get(url).timeout(Duration::from_secs(10)).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: does not parse: {e}"))
    }
}
