//! Fast failover when the leader's process is gone.
//!
//! A follower campaigns an election timeout after the last heartbeat it heard
//! (2-3 s with the design's timers, see `RaftTimings::to_openraft`). When the
//! leader's process is certainly dead (its Raft port refuses connections: the
//! kernel answers for a process that no longer exists, and its AppendEntries
//! have stopped) there is nothing to wait for, so a voter that sees this
//! starts an election at once.
//!
//! After a death, while no leader is known, a node asks again each interval
//! (after a random pause, so that two nodes do not keep tying):
//! - A *candidate* re-campaigns only twice. Its first request may have met a
//!   voter still honouring its lease on the dead leader, which notices within
//!   one interval; a candidate still refused after that is most likely
//!   behind in the log (the others refuse it on that ground for good), and
//!   each of its higher-term requests would only knock the node that can win
//!   back to follower.
//! - A *follower without a leader* was knocked back by a higher term (a
//!   candidate that did not win): it campaigns again, up to
//!   `MAX_ELECTIONS_PER_DEATH` times, each time above the term it saw, which
//!   the lagging candidate grants once it has stopped raising its own.
//!
//! Only a refused connection counts, and only while the leader's
//! AppendEntries have stopped too (nothing for one and a half heartbeat
//! intervals). A timeout (partition, paused process, slow network) proves
//! nothing and leaves the normal Raft timers in charge. A refusal while
//! heartbeats still arrive is a one-way fault (a firewall rejecting new
//! connections only, a full accept queue) on a leader that works: acting on
//! it would depose a healthy leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::net::TcpStream;

use crate::registry::NodeRegistry;
use crate::types::{NodeId, Raft};

/// Elections one leader death may start before the normal timers take over.
const MAX_ELECTIONS_PER_DEATH: u32 = 10;

/// Elections a node that stays a candidate may start for one leader death.
const MAX_ELECTIONS_AS_CANDIDATE: u32 = 3;

/// How long without an AppendEntries, in halves of the heartbeat interval,
/// before a leader that refuses connections counts as gone: one interval
/// plus half of one, so a heartbeat sent a little late does not count as
/// missing while a killed leader is still noticed within about a second
/// with the design's 500 ms heartbeat.
pub const SILENT_HALF_HEARTBEATS: u32 = 3;

/// When this node last received AppendEntries from a leader it accepts (any
/// answer but "higher vote"). The gRPC server records each one; the leader
/// probe reads it. Cloning shares the clock.
#[derive(Debug, Clone)]
pub struct AppendEntriesClock {
    origin: Instant,
    /// Milliseconds after `origin` of the last AppendEntries, plus one; 0
    /// while none has arrived.
    last_ms: Arc<AtomicU64>,
}

impl Default for AppendEntriesClock {
    fn default() -> Self {
        Self { origin: Instant::now(), last_ms: Arc::default() }
    }
}

impl AppendEntriesClock {
    /// Records that AppendEntries arrived now.
    pub fn record(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.fetch_max(ms + 1, Ordering::Relaxed);
    }

    /// How long ago the last AppendEntries arrived; `None` if none has.
    pub fn since_last(&self) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.origin.elapsed().saturating_sub(Duration::from_millis(ms - 1))),
        }
    }

    /// Whether no AppendEntries arrived within `silence`.
    fn silent_for(&self, silence: Duration) -> bool {
        self.since_last().is_none_or(|since| since >= silence)
    }
}

/// What the probe needs to judge a leader gone: how often to probe, and the
/// AppendEntries silence that must come with a refused connection.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub heartbeat: Duration,
    pub appends: AppendEntriesClock,
}

impl ProbeSettings {
    fn silence(&self) -> Duration {
        self.heartbeat * SILENT_HALF_HEARTBEATS / 2
    }
}

/// Probes the known leader every `probe.interval` while this node is a
/// voting follower, until Raft shuts down.
pub async fn watch_leader(raft: Raft, registry: NodeRegistry, own_id: NodeId, probe: ProbeSettings) {
    let interval = probe.interval;
    // Elections started since the last leader death was seen; `None` while
    // no death is being handled.
    let mut elections: Option<u32> = None;
    // The last leader this node followed, to check on when none is known.
    let mut last_leader: Option<NodeId> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (state, term, leader, voter, stopped) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let voter = m.membership_config.membership().voter_ids().any(|id| id == own_id);
            (m.state, m.current_term, m.current_leader, voter, m.running_state.is_err())
        };
        if stopped || state == ServerState::Shutdown {
            return;
        }
        let elect = match (state, leader) {
            (ServerState::Follower, Some(leader)) if voter && leader != own_id => {
                last_leader = Some(leader);
                let dead = leader_is_gone(&registry, leader, &probe).await;
                if dead {
                    tracing::warn!(
                        leader,
                        term,
                        "leader refuses connections (its process is gone): starting an election"
                    );
                    elections = Some(0);
                } else {
                    elections = None;
                }
                dead
            }
            (ServerState::Candidate, _) => match elections {
                Some(n) if voter && n < MAX_ELECTIONS_AS_CANDIDATE => {
                    tracing::info!(term, "still no leader after the leader died: campaigning again");
                    true
                }
                _ => false,
            },
            (ServerState::Follower, None) if voter => match (elections, last_leader) {
                (Some(n), _) if n < MAX_ELECTIONS_PER_DEATH => {
                    tracing::info!(term, "a candidate outbid this node but no leader emerged: campaigning again");
                    true
                }
                // Another node's campaign reached us before our own probe
                // saw the death: if the old leader is gone, take part.
                (None, Some(last)) if last != own_id && leader_is_gone(&registry, last, &probe).await => {
                    tracing::warn!(leader = last, term, "no leader, and the last one is gone: starting an election");
                    elections = Some(0);
                    true
                }
                _ => false,
            },
            _ => {
                elections = None;
                false
            }
        };
        if elect {
            if elections.is_some_and(|n| n > 0) {
                tokio::time::sleep(jitter(interval)).await;
            }
            elections = elections.map(|n| n + 1);
            if raft.trigger().elect().await.is_err() {
                return; // Raft stopped.
            }
        }
    }
}

/// A leader is gone when its Raft port refuses connections *and* its
/// AppendEntries have stopped. If the silence would be long enough before
/// the next probe, this waits for that moment rather than a whole interval.
async fn leader_is_gone(registry: &NodeRegistry, leader: NodeId, probe: &ProbeSettings) -> bool {
    let Some(addr) = registry.get(leader) else {
        return false;
    };
    if !refuses_connections(&addr.raft_addr, probe.interval).await {
        return false;
    }
    let silence = probe.silence();
    match probe.appends.since_last() {
        Some(since) if since < silence => {
            let rest = silence - since;
            if rest > probe.interval {
                return false;
            }
            tokio::time::sleep(rest).await;
            probe.appends.silent_for(silence)
        }
        _ => true,
    }
}

/// A random pause of up to half an interval.
fn jitter(interval: Duration) -> Duration {
    use rand::Rng;
    interval.mul_f64(rand::thread_rng().gen_range(0.0..0.5))
}

async fn refuses_connections(addr: &str, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, TcpStream::connect(addr)).await,
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_without_append_entries_is_silent() {
        let clock = AppendEntriesClock::default();
        assert_eq!(clock.since_last(), None);
        assert!(clock.silent_for(Duration::from_secs(3600)));
    }

    #[test]
    fn a_recent_append_entries_breaks_the_silence_for_every_clone() {
        let clock = AppendEntriesClock::default();
        let server_side = clock.clone();
        server_side.record();
        assert!(clock.since_last().is_some_and(|since| since < Duration::from_secs(60)));
        assert!(!clock.silent_for(Duration::from_secs(60)));
        assert!(clock.silent_for(Duration::ZERO));
    }
}
