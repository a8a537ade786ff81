//! Leadership handoff when the leader is stopped (SIGTERM/SIGINT): Raft's
//! TimeoutNow (Raft thesis §3.10), which OpenRaft 0.9 lacks.
//!
//! ```text
//!  leader (stopping)                         chosen follower
//!  1. wait out its own lease (see below)
//!  2. stop proposing: new writes answer NotLeader and are retried on the
//!     next leader (api/forward.rs), under their request ids
//!  3. wait until a follower's matched index is the last log index
//!  4. TimeoutNow{term, leader, last index} ───────▶ honoured only from the
//!                                                   leader it follows, in
//!                                                   that term, with the log
//!                                                   caught up: elect() now
//!  5. grants the vote (its log is no longer) ◀───── VoteRequest(term + 1)
//!  6. sees the new leader, then shuts down
//! ```
//!
//! **The lease.** OpenRaft 0.9 refuses a vote request while the voter's
//! committed vote was refreshed less than a lease ago
//! (`Engine::handle_vote_req`). A follower refreshes it on every
//! AppendEntries, so the third node of a 3-node cluster refuses the
//! campaigning follower until the old leader has been silent for a lease.
//! The old leader, however, refreshes its own vote only when it becomes
//! leader (`establish_leader`): a lease after that, it grants a higher-term
//! vote whose log is at least its own, and that vote plus the candidate's
//! own is a majority of three (or two). So the leader waits until it has
//! led for a lease (at once in a rolling restart, where leaders have led for
//! longer) and needs no change to OpenRaft. With four or more voters the
//! candidate would need a follower's vote too, refused for the lease: the
//! leader does not try, and stops as it would without a handoff.
//!
//! Any step that fails or runs out of time ends the handoff; the node then
//! shuts down as it would without it, and the followers elect a leader when
//! their timers expire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;

use crate::network::PeerNetwork;
use crate::proposer::Proposer;
use crate::registry::NodeRegistry;
use crate::types::{NodeId, Raft};

/// Why a handoff did not happen; the node shuts down anyway.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("this node does not lead")]
    NotLeader,
    #[error("no other voter to hand leadership to")]
    NoFollower,
    /// The candidate would need a follower's vote, refused during the
    /// lease (module doc).
    #[error("{voters} voters: a handoff needs the old leader's vote to be a majority (at most 3 voters)")]
    TooManyVoters { voters: usize },
    #[error("no follower caught up with log index {last} within {waited:?}")]
    CatchUpTimedOut { last: u64, waited: Duration },
    #[error("node {target} has no known address")]
    NoAddress { target: NodeId },
    #[error("node {target} refused TimeoutNow: {status}")]
    Refused { target: NodeId, status: tonic::Status },
    #[error("no other node led within {waited:?} of TimeoutNow to node {target}")]
    NoNewLeader { target: NodeId, waited: Duration },
    #[error("raft stopped")]
    RaftStopped,
}

/// How long each step may take.
#[derive(Debug, Clone, Copy)]
pub struct HandoffLimits {
    /// OpenRaft's leader lease (its `election_timeout_max`).
    pub lease: Duration,
    /// For a follower to match the leader's last log index.
    pub catch_up: Duration,
    /// For another node to lead after TimeoutNow.
    pub new_leader: Duration,
}

impl HandoffLimits {
    /// From OpenRaft's config: a lease as it has it, a second to catch up
    /// (the followers are usually a heartbeat or less behind), and an
    /// election timeout for the new leader.
    pub fn from_openraft(config: &openraft::Config) -> Self {
        Self {
            lease: Duration::from_millis(config.election_timeout_max),
            catch_up: Duration::from_secs(1),
            new_leader: Duration::from_millis(config.election_timeout_max),
        }
    }

    /// The longest a handoff can take.
    pub fn total(&self) -> Duration {
        self.lease + self.catch_up + self.new_leader
    }
}

/// When this node last became leader (its term and the instant), from
/// Raft's metrics; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LeadershipClock {
    since: Arc<Mutex<Option<(u64, Instant)>>>,
}

impl LeadershipClock {
    /// How long this node has led in `term`; `None` if it was not seen to
    /// become leader in it.
    fn led_for(&self, term: u64) -> Option<Duration> {
        match *crate::locks::lock(&self.since) {
            Some((since_term, at)) if since_term == term => Some(at.elapsed()),
            _ => None,
        }
    }
}

/// Keeps `clock` up to date until Raft shuts down.
pub async fn watch_leadership(raft: Raft, own_id: NodeId, clock: LeadershipClock) {
    let mut metrics = raft.metrics();
    loop {
        let (leads, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader && m.current_leader == Some(own_id), m.current_term)
        };
        {
            let mut since = crate::locks::lock(&clock.since);
            match (leads, *since) {
                (true, Some((t, _))) if t == term => {}
                (true, _) => *since = Some((term, Instant::now())),
                (false, _) => *since = None,
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// What a handoff needs of the node.
pub struct Handoff<'a> {
    pub raft: &'a Raft,
    pub own_id: NodeId,
    pub peers: &'a PeerNetwork,
    pub registry: &'a NodeRegistry,
    pub proposer: &'a Proposer,
    pub clock: &'a LeadershipClock,
    pub limits: HandoffLimits,
}

impl Handoff<'_> {
    /// Hands leadership to the most caught-up voter; returns the node that
    /// leads afterwards.
    pub async fn run(&self) -> Result<NodeId, HandoffError> {
        let term = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            if m.state != ServerState::Leader || m.current_leader != Some(self.own_id) {
                return Err(HandoffError::NotLeader);
            }
            let voters = m.membership_config.membership().voter_ids().count();
            if voters < 2 {
                return Err(HandoffError::NoFollower);
            }
            if voters > 3 {
                return Err(HandoffError::TooManyVoters { voters });
            }
            m.current_term
        };

        // 1. A vote request from the follower is refused while our own lease
        //    runs (module doc). Writes keep flowing meanwhile.
        let led_for = self.clock.led_for(term).unwrap_or(Duration::ZERO);
        if let Some(rest) = self.limits.lease.checked_sub(led_for) {
            let rest = rest + Duration::from_millis(20);
            tracing::info!(node_id = self.own_id, ?rest, "waiting out the leader lease before handing over");
            tokio::time::sleep(rest).await;
        }

        // 2. No new entries from here on. Batches proposed before have
        //    reached Raft's queue; a request through that queue returns once
        //    Raft has appended them. Raft publishes its metrics at the top of
        //    each turn of its loop (every publication notifies), so the first
        //    one after that answer shows them.
        self.proposer.hand_over().await;
        self.raft.with_raft_state(|_| ()).await.map_err(|_| HandoffError::RaftStopped)?;
        let mut metrics = self.raft.metrics();
        metrics.borrow_and_update();
        match tokio::time::timeout(self.limits.catch_up, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(HandoffError::RaftStopped),
            Err(_) => return Err(HandoffError::CatchUpTimedOut { last: 0, waited: self.limits.catch_up }),
        }

        // 3. A voter whose matched index is the last log index.
        let (target, last) = self.caught_up_follower(term, metrics).await?;

        // 4. TimeoutNow.
        let addr = self.registry.get(target).ok_or(HandoffError::NoAddress { target })?;
        tracing::info!(node_id = self.own_id, target, last, "sending TimeoutNow");
        self.peers
            .timeout_now(target, &addr, term, last, self.limits.new_leader)
            .await
            .map_err(|status| HandoffError::Refused { target, status })?;

        // 5. Another node leads.
        let waited = self.limits.new_leader;
        let own_id = self.own_id;
        let led = self
            .raft
            .wait(Some(waited))
            .metrics(|m| m.current_leader.is_some_and(|l| l != own_id) && m.current_term > term, "a new leader")
            .await;
        match led {
            Ok(m) => Ok(m.current_leader.unwrap_or(target)),
            Err(openraft::metrics::WaitError::Timeout(..)) => Err(HandoffError::NoNewLeader { target, waited }),
            Err(_) => Err(HandoffError::RaftStopped),
        }
    }

    /// Waits until a voter's matched log index equals the leader's last log
    /// index; returns it and that index. Of several, the lowest id.
    async fn caught_up_follower(
        &self,
        term: u64,
        mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, crate::types::PeerAddr>>,
    ) -> Result<(NodeId, u64), HandoffError> {
        let deadline = Instant::now() + self.limits.catch_up;
        loop {
            let found = {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader || m.current_term != term {
                    return Err(HandoffError::NotLeader);
                }
                let last = m.last_log_index.unwrap_or(0);
                let voters: Vec<NodeId> =
                    m.membership_config.membership().voter_ids().filter(|id| *id != self.own_id).collect();
                let matched = |id: &NodeId| {
                    m.replication.as_ref().and_then(|r| r.get(id)).and_then(|l| l.as_ref()).map(|l| l.index)
                };
                let found = voters.iter().find(|id| matched(id) == Some(last)).map(|id| (*id, last));
                match found {
                    Some(found) => Ok(found),
                    None => Err(last),
                }
            };
            let last = match found {
                Ok(found) => return Ok(found),
                Err(last) => last,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(HandoffError::CatchUpTimedOut { last, waited: self.limits.catch_up });
            }
            if tokio::time::timeout(deadline - now, metrics.changed()).await.is_ok_and(|r| r.is_err()) {
                return Err(HandoffError::RaftStopped);
            }
        }
    }
}
