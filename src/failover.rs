//! Fast failover when the leader's process is gone.
//!
//! OpenRaft 0.9 has a follower wait for its leader lease (`election_timeout_max`)
//! *plus* a randomized election timeout after the last heartbeat before it
//! campaigns: 4.5-6 s with the design's 1.5-3 s timeouts. When the leader's
//! process is certainly dead (its Raft port refuses connections: the kernel
//! answers for a process that no longer exists) there is nothing to wait
//! for, so a voter that sees this starts an election at once.
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
//! Only a refused connection counts. A timeout (partition, paused process,
//! slow network) proves nothing and leaves the normal Raft timers in charge,
//! so this never makes a live, reachable leader lose its leadership.

use std::time::Duration;

use openraft::ServerState;
use tokio::net::TcpStream;

use crate::registry::NodeRegistry;
use crate::types::{NodeId, Raft};

/// Elections one leader death may start before the normal timers take over.
const MAX_ELECTIONS_PER_DEATH: u32 = 10;

/// Elections a node that stays a candidate may start for one leader death.
const MAX_ELECTIONS_AS_CANDIDATE: u32 = 3;

/// Probes the known leader every `interval` while this node is a voting
/// follower, until Raft shuts down.
pub async fn watch_leader(raft: Raft, registry: NodeRegistry, own_id: NodeId, interval: Duration) {
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
                let dead = leader_is_dead(&registry, leader, interval).await;
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
                (None, Some(last)) if last != own_id && leader_is_dead(&registry, last, interval).await => {
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

async fn leader_is_dead(registry: &NodeRegistry, leader: NodeId, interval: Duration) -> bool {
    match registry.get(leader) {
        Some(addr) => refuses_connections(&addr.raft_addr, interval).await,
        None => false,
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
