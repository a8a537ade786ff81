//! Fast failover when the leader's process is gone.
//!
//! OpenRaft 0.9 has a follower wait for its leader lease (`election_timeout_max`)
//! *plus* a randomized election timeout after the last heartbeat before it
//! campaigns: 4.5-6 s with the design's 1.5-3 s timeouts. When the leader's
//! process is certainly dead (its Raft port refuses connections: the kernel
//! answers for a process that no longer exists) there is nothing to wait
//! for, so each voter that sees this starts an election at once.
//!
//! Only a refused connection counts. A timeout (partition, paused process,
//! slow network) proves nothing and leaves the normal Raft timers in charge,
//! so this never makes a live, reachable leader lose its leadership.

use std::time::Duration;

use openraft::ServerState;
use tokio::net::TcpStream;

use crate::registry::NodeRegistry;
use crate::types::{NodeId, Raft};

/// Probes the known leader every `interval` while this node is a follower,
/// until Raft shuts down.
pub async fn watch_leader(raft: Raft, registry: NodeRegistry, own_id: NodeId, interval: Duration) {
    let mut triggered_for: Option<(u64, NodeId)> = None;
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
        let Some(leader) = leader else { continue };
        if state != ServerState::Follower || !voter || leader == own_id || triggered_for == Some((term, leader)) {
            continue;
        }
        let Some(addr) = registry.get(leader) else { continue };
        let refused = matches!(
            tokio::time::timeout(interval, TcpStream::connect(&addr.raft_addr)).await,
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused
        );
        if refused {
            tracing::warn!(leader, term, raft_addr = %addr.raft_addr, "leader refuses connections (its process is gone): starting an election");
            if raft.trigger().elect().await.is_err() {
                return; // Raft stopped.
            }
            triggered_for = Some((term, leader));
        }
    }
}
