//! Changing who is in the cluster, run on the leader.
//!
//! Joining follows Raft's safe path: the node is added as a learner, the
//! leader waits for it to catch up, and only then promotes it to voter with a
//! membership change. A node that lost its state (restarted with a fresh
//! store) but kept its id is first removed and then added anew, as etcd
//! requires: a wiped voter must never vote under its old identity, or it
//! could help elect a leader that lacks committed entries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::types::{NodeId, PeerAddr, Raft};

/// Body of `POST /nodes`: a node asking to become a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
    /// The node holds no Raft state: if its id is already a member, that
    /// member's old state is gone and it must be replaced, not resumed.
    #[serde(default)]
    pub fresh: bool,
}

impl JoinRequest {
    pub fn addr(&self) -> PeerAddr {
        PeerAddr { raft_addr: self.raft_addr.clone(), http_addr: self.http_addr.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Same id, same addresses, already a voter: nothing to do.
    AlreadyMember,
    /// Added as learner, caught up, promoted to voter.
    Joined,
    /// An old member with this id was removed first, then the node was added.
    Replaced,
}

impl JoinOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinOutcome::AlreadyMember => "already_member",
            JoinOutcome::Joined => "joined",
            JoinOutcome::Replaced => "replaced",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("node {id} is already a member at {existing}; a node with state cannot change its addresses")]
    AddressConflict { id: NodeId, existing: PeerAddr },
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    #[error("node {0} is the last voter and cannot be removed")]
    LastVoter(NodeId),
    #[error("membership change did not finish within {0:?}; it may still complete")]
    Timeout(Duration),
    #[error("this node stopped being the leader")]
    NotLeader(ForwardToLeader<NodeId, PeerAddr>),
    #[error("raft refused the membership change: {0}")]
    Raft(String),
}

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, PeerAddr>>;

/// Adds (or re-adds) a node. Must be called on the leader, one call at a time.
pub async fn join(raft: &Raft, request: &JoinRequest, timeout: Duration) -> Result<JoinOutcome, MembershipError> {
    let deadline = Instant::now() + timeout;
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let addr = request.addr();
    let id = request.id;
    let is_voter = membership.voter_ids().any(|v| v == id);

    let mut outcome = JoinOutcome::Joined;
    if let Some(existing) = membership.get_node(&id) {
        match (existing == &addr, request.fresh) {
            (true, false) if is_voter => return Ok(JoinOutcome::AlreadyMember),
            (true, false) => {} // a learner whose promotion was interrupted: finish it
            (false, false) => return Err(MembershipError::AddressConflict { id, existing: existing.clone() }),
            (_, true) => {
                tracing::info!(node = id, "node rejoins with a fresh store: removing its old membership first");
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                retry_until(deadline, timeout, || raft.change_membership(change.clone(), false)).await?;
                outcome = JoinOutcome::Replaced;
            }
        }
    }

    tracing::info!(node = id, %addr, "adding learner and waiting for it to catch up");
    retry_until(deadline, timeout, || raft.add_learner(id, addr.clone(), true)).await?;
    tracing::info!(node = id, "promoting learner to voter");
    retry_until(deadline, timeout, || raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false))
        .await?;
    Ok(outcome)
}

/// Removes a voter or learner. Must be called on the leader.
pub async fn remove(raft: &Raft, id: NodeId, timeout: Duration) -> Result<(), MembershipError> {
    let deadline = Instant::now() + timeout;
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    if membership.get_node(&id).is_none() {
        return Err(MembershipError::UnknownNode(id));
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(MembershipError::LastVoter(id));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    retry_until(deadline, timeout, || raft.change_membership(change.clone(), false)).await?;
    Ok(())
}

/// Runs a membership write until it succeeds, retrying while a previous
/// change is still being committed (`InProgress`), up to `deadline`.
async fn retry_until<T, F, Fut>(deadline: Instant, timeout: Duration, mut op: F) -> Result<T, MembershipError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, WriteError>>,
{
    loop {
        let result = match tokio::time::timeout_at(deadline, op()).await {
            Err(_elapsed) => return Err(MembershipError::Timeout(timeout)),
            Ok(result) => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)))) => {
                if Instant::now() + Duration::from_millis(50) >= deadline {
                    return Err(MembershipError::Timeout(timeout));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                return Err(MembershipError::NotLeader(forward))
            }
            Err(err) => return Err(MembershipError::Raft(err.to_string())),
        }
    }
}

/// The membership a fresh node bootstraps with: itself alone.
pub fn bootstrap_members(id: NodeId, addr: PeerAddr) -> BTreeMap<NodeId, PeerAddr> {
    BTreeMap::from([(id, addr)])
}
