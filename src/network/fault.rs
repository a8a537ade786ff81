//! Injected peer latency, for the nemesis harness (`chaos/`).
//!
//! This kernel has no `netem`, so the harness cannot delay packets; instead
//! each outgoing Raft RPC waits before it is sent. The harness controls it
//! through a file (`--fault-peer-delay-file`, hidden) holding
//! `<delay_ms> [<jitter_ms> [<node_id>...]]`: with node ids, only RPCs to
//! those peers wait (a one-way cut, when the delay outlasts the RPC
//! timeout). The file is polled, so the node needs no control endpoint.
//! Without the flag nothing is polled and nothing waits.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;

use crate::types::NodeId;

/// How often the delay file is re-read.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The current injected delay, shared by every peer connection.
#[derive(Debug, Clone, Default)]
pub struct PeerDelay {
    spec: Arc<RwLock<DelaySpec>>,
}

/// What the delay file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DelaySpec {
    delay_ms: u64,
    jitter_ms: u64,
    /// The peers whose RPCs wait; empty means every peer.
    targets: Vec<NodeId>,
}

impl DelaySpec {
    /// How long an RPC to `target` waits, if at all.
    fn pause_for(&self, target: NodeId) -> Option<Duration> {
        if self.delay_ms == 0 && self.jitter_ms == 0 {
            return None;
        }
        if !self.targets.is_empty() && !self.targets.contains(&target) {
            return None;
        }
        let extra = if self.jitter_ms > 0 { rand::thread_rng().gen_range(0..=self.jitter_ms) } else { 0 };
        Some(Duration::from_millis(self.delay_ms + extra))
    }
}

impl PeerDelay {
    /// A delay driven by `file`; polled until the process exits.
    pub fn from_file(file: PathBuf) -> Self {
        let delay = Self::default();
        let shared = delay.clone();
        tokio::spawn(async move {
            // The first reading is logged even when it is "no delay".
            let mut read_once = false;
            loop {
                let parsed = match tokio::fs::read_to_string(&file).await {
                    Ok(text) => parse(&text),
                    Err(_) => Some(DelaySpec::default()),
                };
                let current = parsed.clone().unwrap_or_default();
                let changed = !read_once || *crate::locks::read(&shared.spec) != current;
                if changed {
                    tracing::warn!(
                        delay_ms = current.delay_ms,
                        jitter_ms = current.jitter_ms,
                        targets = ?current.targets,
                        "injected peer delay changed"
                    );
                    if parsed.is_none() {
                        tracing::warn!(file = %file.display(), "peer delay file unreadable; no delay");
                    }
                    *crate::locks::write(&shared.spec) = current;
                    read_once = true;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
        delay
    }

    /// Waits the injected delay, if any applies to RPCs to `target`.
    pub async fn wait(&self, target: NodeId) {
        let pause = crate::locks::read(&self.spec).pause_for(target);
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

/// `"<delay_ms> [<jitter_ms> [<node_id>...]]"`; empty means no delay.
fn parse(text: &str) -> Option<DelaySpec> {
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    let delay_ms = match numbers.next() {
        None => return Some(DelaySpec::default()),
        Some(n) => n.ok()?,
    };
    let jitter_ms = match numbers.next() {
        None => 0,
        Some(n) => n.ok()?,
    };
    let targets = numbers.collect::<Result<Vec<NodeId>, _>>().ok()?;
    Some(DelaySpec { delay_ms, jitter_ms, targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delay_and_optional_jitter_and_targets() {
        let spec = |delay_ms, jitter_ms, targets: &[NodeId]| {
            Some(DelaySpec { delay_ms, jitter_ms, targets: targets.to_vec() })
        };
        assert_eq!(parse(""), spec(0, 0, &[]));
        assert_eq!(parse("50\n"), spec(50, 0, &[]));
        assert_eq!(parse("50 20"), spec(50, 20, &[]));
        assert_eq!(parse("50 0 1 3"), spec(50, 0, &[1, 3]));
        assert_eq!(parse("fifty"), None);
        assert_eq!(parse("1 2 three"), None);
    }

    #[tokio::test]
    async fn the_file_sets_and_clears_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("delay");
        let delay = PeerDelay::from_file(file.clone());
        std::fs::write(&file, "30 0").expect("write");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while crate::locks::read(&delay.spec).delay_ms != 30 {
            assert!(tokio::time::Instant::now() < deadline, "delay never picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = tokio::time::Instant::now();
        delay.wait(7).await;
        assert!(started.elapsed() >= Duration::from_millis(30));

        // Only RPCs to node 2: one to node 7 leaves at once.
        std::fs::write(&file, "30000 0 2").expect("write");
        while crate::locks::read(&delay.spec).targets.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "targets never picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let to_other = tokio::time::timeout(Duration::from_secs(1), delay.wait(7)).await;
        assert!(to_other.is_ok(), "an RPC to a peer not named waited");
        let to_target = tokio::time::timeout(Duration::from_millis(200), delay.wait(2)).await;
        assert!(to_target.is_err(), "an RPC to the named peer did not wait");

        std::fs::remove_file(&file).expect("remove");
        while crate::locks::read(&delay.spec).delay_ms != 0 {
            assert!(tokio::time::Instant::now() < deadline, "delay never cleared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
