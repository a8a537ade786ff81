//! Fast failover when the leader's process is gone.
//!
//! OpenRaft 0.9 has a follower wait for its leader lease (`election_timeout_max`)
//! *plus* a randomized election timeout after the last heartbeat before it
//! campaigns: 4.5-6 s with the design's 1.5-3 s timeouts. When the leader's
//! process is certainly dead (its Raft port refuses connections: the kernel
//! answers for a process that no longer exists) there is nothing to wait
//! for, so a voter that sees this starts an election at once.
//!
//! A voter that has not noticed yet still honours its lease on the dead
//! leader and refuses that first election; it notices within one probe
//! interval and campaigns itself, which drops its lease. So while this node
//! is a candidate after a leader death it asks again each interval (a few
//! times, then the normal timers take over): a later, higher-term request
//! finds the other voters free to grant it.
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
const MAX_ELECTIONS_PER_DEATH: u32 = 8;

/// Probes the known leader every `interval` while this node is a voting
/// follower, until Raft shuts down.
pub async fn watch_leader(raft: Raft, registry: NodeRegistry, own_id: NodeId, interval: Duration) {
    // Elections started since the last leader death was seen; `None` while
    // no death is being handled.
    let mut elections: Option<u32> = None;
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
                let dead = match registry.get(leader) {
                    Some(addr) => refuses_connections(&addr.raft_addr, interval).await,
                    None => false,
                };
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
                Some(n) if voter && n < MAX_ELECTIONS_PER_DEATH => {
                    tracing::info!(term, "still no leader after the leader died: campaigning again");
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
            elections = elections.map(|n| n + 1);
            if raft.trigger().elect().await.is_err() {
                return; // Raft stopped.
            }
        }
    }
}

async fn refuses_connections(addr: &str, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, TcpStream::connect(addr)).await,
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
