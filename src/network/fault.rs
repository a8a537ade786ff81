//! Injected peer latency, for the nemesis harness (`chaos/`).
//!
//! This kernel has no `netem`, so the harness cannot delay packets; instead
//! each outgoing Raft RPC waits before it is sent. The harness controls it
//! through a file (`--fault-peer-delay-file`, hidden) holding
//! `<delay_ms> [<jitter_ms>]`; the file is polled, so the node needs no
//! control endpoint. Without the flag nothing is polled and nothing waits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

/// How often the delay file is re-read.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The current injected delay, shared by every peer connection.
#[derive(Debug, Clone, Default)]
pub struct PeerDelay {
    delay_ms: Arc<AtomicU64>,
    jitter_ms: Arc<AtomicU64>,
}

impl PeerDelay {
    /// A delay driven by `file`; polled until the process exits.
    pub fn from_file(file: PathBuf) -> Self {
        let delay = Self::default();
        let shared = delay.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let parsed = match tokio::fs::read_to_string(&file).await {
                    Ok(text) => parse(&text),
                    Err(_) => Some((0, 0)),
                };
                let current = parsed.unwrap_or((0, 0));
                if last != Some(current) {
                    tracing::warn!(delay_ms = current.0, jitter_ms = current.1, "injected peer delay changed");
                    if parsed.is_none() {
                        tracing::warn!(file = %file.display(), "peer delay file unreadable; no delay");
                    }
                    last = Some(current);
                }
                shared.set(current.0, current.1);
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
        delay
    }

    fn set(&self, delay_ms: u64, jitter_ms: u64) {
        self.delay_ms.store(delay_ms, Ordering::Relaxed);
        self.jitter_ms.store(jitter_ms, Ordering::Relaxed);
    }

    /// Waits the injected delay, if any.
    pub async fn wait(&self) {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        let jitter = self.jitter_ms.load(Ordering::Relaxed);
        if delay == 0 && jitter == 0 {
            return;
        }
        let extra = if jitter > 0 { rand::thread_rng().gen_range(0..=jitter) } else { 0 };
        tokio::time::sleep(Duration::from_millis(delay + extra)).await;
    }
}

/// `"<delay_ms> [<jitter_ms>]"`; empty means no delay.
fn parse(text: &str) -> Option<(u64, u64)> {
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    let delay = match numbers.next() {
        None => return Some((0, 0)),
        Some(n) => n.ok()?,
    };
    let jitter = match numbers.next() {
        None => 0,
        Some(n) => n.ok()?,
    };
    numbers.next().is_none().then_some((delay, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delay_and_optional_jitter() {
        assert_eq!(parse(""), Some((0, 0)));
        assert_eq!(parse("50\n"), Some((50, 0)));
        assert_eq!(parse("50 20"), Some((50, 20)));
        assert_eq!(parse("fifty"), None);
        assert_eq!(parse("1 2 3"), None);
    }

    #[tokio::test]
    async fn the_file_sets_and_clears_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("delay");
        let delay = PeerDelay::from_file(file.clone());
        std::fs::write(&file, "30 0").expect("write");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while delay.delay_ms.load(Ordering::Relaxed) != 30 {
            assert!(tokio::time::Instant::now() < deadline, "delay never picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = tokio::time::Instant::now();
        delay.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        std::fs::remove_file(&file).expect("remove");
        while delay.delay_ms.load(Ordering::Relaxed) != 0 {
            assert!(tokio::time::Instant::now() < deadline, "delay never cleared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
