//! Changing who is in the cluster, run on the leader.
//!
//! Joining follows Raft's safe path: the node is added as a learner, the
//! leader waits for it to catch up, and only then promotes it to voter with a
//! membership change. A node that lost its state but kept its id comes back
//! as a new incarnation (see `identity`): the member of the old incarnation is
//! first removed and the node then added anew, as etcd requires. Until then
//! the wiped node refuses RPCs for its old incarnation, so it never votes as
//! the member it was. A join retried by the same incarnation (say, while its
//! snapshot is still streaming) goes on where it was and replaces nothing.
//!
//! A member restarted on its data directory at new addresses (a task moved
//! to another IP) sends a join with its own incarnation and the new
//! addresses: the leader rewrites that member's addresses in the membership
//! (OpenRaft's `ChangeMembers::SetNodes`), which changes no voter set. Only
//! the incarnation recorded for the member may move it (the incarnation is
//! the proof of holding that member's state), and never onto addresses
//! another member holds: Raft would then send one member's traffic to
//! another.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::types::{NodeId, PeerAddr, Raft};

/// Body of `POST /nodes`: a node asking to become a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    #[schema(value_type = u64)]
    pub id: NodeId,
    /// `host:port` of the node's Raft (gRPC) listener, as its peers dial it.
    pub raft_addr: String,
    /// `host:port` of the node's HTTP API.
    pub http_addr: String,
    /// The joining node's incarnation. A member of the same id with another
    /// incarnation lost its state and is replaced. At most 64 hex digits.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{0,64}$")]
    pub incarnation: String,
    /// For a request without an incarnation: the node holds no Raft state,
    /// so a member of the same id must be replaced, not resumed.
    #[serde(default)]
    pub fresh: bool,
}

impl JoinRequest {
    pub fn addr(&self) -> PeerAddr {
        PeerAddr {
            raft_addr: self.raft_addr.clone(),
            http_addr: self.http_addr.clone(),
            incarnation: self.incarnation.clone(),
        }
    }
}

/// Longest `raft_addr` or `http_addr` a join may give (a DNS name is at
/// most 253 bytes): the addresses travel in every membership entry.
pub const MAX_ADDR_BYTES: usize = 255;

/// What is wrong with an address a joining node gave. Each message follows
/// the address, quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("is {len} bytes, over the limit of {MAX_ADDR_BYTES}")]
    TooLong { len: usize },
    #[error("has no port: an address is host:port")]
    NoPort,
    #[error("has port {0:?}: a port is a number from 1 to 65535")]
    BadPort(String),
    #[error("has an IPv6 host without brackets: write [address]:port")]
    UnbracketedIpv6,
    #[error(
        "has host {0:?}, which is neither an IP address nor a host name (labels of 1 to 63 letters, digits \
         and inner '-', joined by '.')"
    )]
    BadHost(String),
}

/// Checks that `addr` is `host:port` as a node advertises it: a host name,
/// an IPv4 address or a bracketed IPv6 address, and a port from 1 to 65535,
/// at most [`MAX_ADDR_BYTES`] in all.
pub fn check_addr(addr: &str) -> Result<(), AddrError> {
    if addr.len() > MAX_ADDR_BYTES {
        return Err(AddrError::TooLong { len: addr.len() });
    }
    let (host, port) = match addr.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, port) = bracketed.split_once("]:").ok_or(AddrError::NoPort)?;
            if ip.parse::<Ipv6Addr>().is_err() {
                return Err(AddrError::BadHost(format!("[{ip}]")));
            }
            (None, port)
        }
        None => {
            let (host, port) = addr.rsplit_once(':').ok_or(AddrError::NoPort)?;
            if host.contains(':') {
                return Err(AddrError::UnbracketedIpv6);
            }
            (Some(host), port)
        }
    };
    // Digits only: `u16::from_str` would take a sign.
    let port_ok =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok {
        return Err(AddrError::BadPort(port.to_string()));
    }
    match host {
        Some(host) if host.parse::<Ipv4Addr>().is_err() && !is_host_name(host) => Err(AddrError::BadHost(host.into())),
        _ => Ok(()),
    }
}

/// A DNS host name (RFC 1123): labels of letters, digits and inner hyphens,
/// the last one not all digits (so `10.0.0.300` is not taken for a name).
fn is_host_name(host: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.len() <= 253
        && host.split('.').all(label_ok)
        && host.rsplit('.').next().is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

/// What the leader does with a join request, given the member of the same
/// id, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPlan {
    /// Already a voter as this very node: nothing to do.
    Nothing,
    /// Add as learner and promote (or finish an interrupted promotion).
    Add,
    /// Remove the old member of this id first, then add.
    Replace,
    /// The same incarnation at new addresses: rewrite its addresses (then
    /// promote it, if it is still a learner).
    UpdateAddresses,
}

/// Decides a join. `existing` is the member with the request's id and
/// whether it is a voter.
pub fn plan_join(existing: Option<(&PeerAddr, bool)>, request: &JoinRequest) -> Result<JoinPlan, MembershipError> {
    let Some((existing, is_voter)) = existing else {
        return Ok(JoinPlan::Add);
    };
    let same_addresses = existing.raft_addr == request.raft_addr && existing.http_addr == request.http_addr;
    let same_node = match (existing.incarnation.is_empty(), request.incarnation.is_empty()) {
        (false, false) => existing.incarnation == request.incarnation,
        // A member or a request from before incarnations: the joiner says
        // whether it lost its state.
        _ => !request.fresh,
    };
    match (same_node, same_addresses) {
        (true, true) if is_voter => Ok(JoinPlan::Nothing),
        (true, true) => Ok(JoinPlan::Add),
        // Only the recorded incarnation, given again, proves the request
        // comes from the member's own state: a member from before
        // incarnations, or a request that names none, cannot move it.
        (true, false) if !existing.incarnation.is_empty() && existing.incarnation == request.incarnation => {
            Ok(JoinPlan::UpdateAddresses)
        }
        (true, false) => Err(MembershipError::AddressConflict { id: request.id, existing: existing.clone() }),
        (false, _) => Ok(JoinPlan::Replace),
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
    /// The member (same incarnation) moved: its addresses were rewritten.
    AddressUpdated,
}

impl JoinOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinOutcome::AlreadyMember => "already_member",
            JoinOutcome::Joined => "joined",
            JoinOutcome::Replaced => "replaced",
            JoinOutcome::AddressUpdated => "address_updated",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(
        "node {id} is already a member at {existing}: only its recorded incarnation may move it; a member \
         without one is removed (DELETE /nodes/{id}) and joined anew"
    )]
    AddressConflict { id: NodeId, existing: PeerAddr },
    #[error("node {id} cannot move to {addr}: member {holder} is there")]
    AddressInUse { id: NodeId, addr: String, holder: NodeId },
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    #[error("node {0} is the last voter and cannot be removed")]
    LastVoter(NodeId),
    #[error(
        "the cluster has {members} members (voters and learners), the most --max-members ({max}) allows: \
         remove one (DELETE /nodes/{{id}}) before another joins, or raise --max-members"
    )]
    TooManyMembers { members: usize, max: usize },
    #[error("membership change did not finish within {0:?}; it may still complete")]
    Timeout(Duration),
    #[error("this node stopped being the leader")]
    NotLeader(ForwardToLeader<NodeId, PeerAddr>),
    /// Boxed: OpenRaft's error is large and this one travels in `Result`s.
    #[error("raft refused the membership change: {0}")]
    Raft(#[source] Box<RaftWriteError>),
}

/// OpenRaft's error for a membership write.
type RaftWriteError = RaftError<NodeId, ClientWriteError<NodeId, PeerAddr>>;

/// Adds (or re-adds) a node. Must be called on the leader, one call at a
/// time. A node that is not a member yet is refused once the cluster has
/// `max_members` members; a member's own join (a retry, a replacement)
/// adds none.
pub async fn join(
    raft: &Raft,
    request: &JoinRequest,
    timeout: Duration,
    max_members: usize,
) -> Result<JoinOutcome, MembershipError> {
    let deadline = Instant::now() + timeout;
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let addr = request.addr();
    let id = request.id;
    let is_voter = membership.voter_ids().any(|v| v == id);
    let members = membership.nodes().count();
    if membership.get_node(&id).is_none() && members >= max_members {
        return Err(MembershipError::TooManyMembers { members, max: max_members });
    }

    let mut outcome = JoinOutcome::Joined;
    match plan_join(membership.get_node(&id).map(|existing| (existing, is_voter)), request)? {
        JoinPlan::Nothing => return Ok(JoinOutcome::AlreadyMember),
        JoinPlan::Add => {}
        JoinPlan::UpdateAddresses => {
            let taken = membership.nodes().find(|(other, held)| {
                **other != id && (held.raft_addr == addr.raft_addr || held.http_addr == addr.http_addr)
            });
            if let Some((holder, held)) = taken {
                let addr = if held.raft_addr == addr.raft_addr { &addr.raft_addr } else { &addr.http_addr };
                return Err(MembershipError::AddressInUse { id, addr: addr.clone(), holder: *holder });
            }
            tracing::info!(node = id, %addr, "member moved: rewriting its addresses");
            let change = ChangeMembers::SetNodes(BTreeMap::from([(id, addr.clone())]));
            retry_until(deadline, timeout, || raft.change_membership(change.clone(), false)).await?;
            if is_voter {
                return Ok(JoinOutcome::AddressUpdated);
            }
        }
        JoinPlan::Replace => {
            tracing::info!(node = id, "node rejoins as a new incarnation: removing its old membership first");
            let change = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            retry_until(deadline, timeout, || raft.change_membership(change.clone(), false)).await?;
            outcome = JoinOutcome::Replaced;
        }
    }

    tracing::info!(node = id, %addr, "adding learner and waiting for it to catch up");
    let added = retry_until(deadline, timeout, || raft.add_learner(id, addr.clone(), true)).await?;
    wait_for_learner(raft, id, added.log_id.index, deadline, timeout).await?;
    tracing::info!(node = id, "promoting learner to voter");
    retry_until(deadline, timeout, || raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false))
        .await?;
    Ok(outcome)
}

/// Waits until learner `id` holds the log up to `index` (the entry that
/// added it), as the leader's replication metrics report it.
///
/// OpenRaft's blocking `add_learner` is not enough before a promotion: it
/// counts a learner within `replication_lag_threshold` (5000) entries of
/// the leader as caught up, even one that never replied. In a young
/// cluster that was any learner, and promoting one that cannot be reached
/// took the quorum away.
async fn wait_for_learner(
    raft: &Raft,
    id: NodeId,
    index: u64,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), MembershipError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let holds = |metrics: &crate::types::RaftMetrics| {
        let matched = metrics.replication.as_ref().and_then(|progress| progress.get(&id).cloned().flatten());
        matched.is_some_and(|log_id| log_id.index >= index)
    };
    match raft.wait(Some(left)).metrics(holds, "the learner holds the entry that added it").await {
        Ok(_) => Ok(()),
        // Timed out, or Raft stopped: the learner stays a learner, which
        // changes no quorum, and a retry of the join goes on from here.
        Err(_) => Err(MembershipError::Timeout(timeout)),
    }
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
    Fut: std::future::Future<Output = Result<T, RaftWriteError>>,
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
            Err(err) => return Err(MembershipError::Raft(Box::new(err))),
        }
    }
}

/// The membership a fresh node bootstraps with: itself alone.
pub fn bootstrap_members(id: NodeId, addr: PeerAddr) -> BTreeMap<NodeId, PeerAddr> {
    BTreeMap::from([(id, addr)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(incarnation: &str, fresh: bool) -> JoinRequest {
        JoinRequest {
            id: 3,
            raft_addr: "10.0.0.3:5000".into(),
            http_addr: "10.0.0.3:8080".into(),
            incarnation: incarnation.into(),
            fresh,
        }
    }

    #[test]
    fn a_join_retried_by_the_same_incarnation_replaces_nothing() {
        // A joiner whose snapshot is still streaming has no log and no
        // membership yet, so it once sent `fresh: true` on every retry, and
        // each retry removed it and restarted the transfer.
        let learner = request("aa", true).addr();
        assert_eq!(plan_join(Some((&learner, false)), &request("aa", true)).unwrap(), JoinPlan::Add);
        assert_eq!(plan_join(Some((&learner, true)), &request("aa", true)).unwrap(), JoinPlan::Nothing);
    }

    #[test]
    fn another_incarnation_of_a_member_replaces_it_wherever_it_is() {
        let old = request("aa", false).addr();
        assert_eq!(plan_join(Some((&old, true)), &request("bb", false)).unwrap(), JoinPlan::Replace);
        let mut moved = request("bb", false);
        moved.raft_addr = "10.0.0.9:5000".into();
        assert_eq!(plan_join(Some((&old, true)), &moved).unwrap(), JoinPlan::Replace);
    }

    #[test]
    fn the_same_incarnation_moves_its_own_addresses() {
        let old = request("aa", false).addr();
        let mut moved = request("aa", false);
        moved.http_addr = "10.0.0.9:8080".into();
        assert_eq!(plan_join(Some((&old, true)), &moved).unwrap(), JoinPlan::UpdateAddresses);
        assert_eq!(plan_join(Some((&old, false)), &moved).unwrap(), JoinPlan::UpdateAddresses);
    }

    #[test]
    fn only_the_recorded_incarnation_moves_a_member() {
        let old = request("", false).addr();
        let mut moved = request("", false);
        moved.raft_addr = "10.0.0.9:5000".into();
        assert!(matches!(plan_join(Some((&old, true)), &moved), Err(MembershipError::AddressConflict { id: 3, .. })));
        let recorded = request("aa", false).addr();
        assert!(matches!(
            plan_join(Some((&recorded, true)), &moved),
            Err(MembershipError::AddressConflict { id: 3, .. })
        ));
        let mut with_incarnation = moved.clone();
        with_incarnation.incarnation = "aa".into();
        assert!(matches!(
            plan_join(Some((&old, true)), &with_incarnation),
            Err(MembershipError::AddressConflict { id: 3, .. })
        ));
    }

    #[test]
    fn addresses_are_host_names_or_ips_with_a_port() {
        let longest = format!("{}.{}.{}.{}:65535", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(57));
        assert_eq!(longest.len(), MAX_ADDR_BYTES);
        for good in
            ["10.0.0.3:5000", "[::1]:8080", "[fe80::1]:1", "worker-2:5000", "db.example.com:443", "x1:9", &longest]
        {
            assert_eq!(check_addr(good), Ok(()), "{good}");
        }
        let refused = [
            ("host", AddrError::NoPort),
            ("[::1]", AddrError::NoPort),
            ("host:", AddrError::BadPort(String::new())),
            ("host:0", AddrError::BadPort("0".into())),
            ("host:65536", AddrError::BadPort("65536".into())),
            ("host:+80", AddrError::BadPort("+80".into())),
            ("host:8o", AddrError::BadPort("8o".into())),
            ("fe80::1:80", AddrError::UnbracketedIpv6),
            ("[fe80::zz]:80", AddrError::BadHost("[fe80::zz]".into())),
            (":80", AddrError::BadHost(String::new())),
            ("a_b:80", AddrError::BadHost("a_b".into())),
            ("-a.b:80", AddrError::BadHost("-a.b".into())),
            ("a-.b:80", AddrError::BadHost("a-.b".into())),
            ("a..b:80", AddrError::BadHost("a..b".into())),
            ("a.b.:80", AddrError::BadHost("a.b.".into())),
            ("1.2.3.256:80", AddrError::BadHost("1.2.3.256".into())),
            ("h\u{e9}te:80", AddrError::BadHost("h\u{e9}te".into())),
        ];
        for (addr, err) in refused {
            assert_eq!(check_addr(addr), Err(err), "{addr}");
        }
        let label64 = format!("{}:80", "a".repeat(64));
        assert!(matches!(check_addr(&label64), Err(AddrError::BadHost(_))));
        let too_long = format!("{longest}0");
        assert_eq!(check_addr(&too_long), Err(AddrError::TooLong { len: MAX_ADDR_BYTES + 1 }));
    }

    #[test]
    fn a_new_id_is_added() {
        assert_eq!(plan_join(None, &request("aa", false)).unwrap(), JoinPlan::Add);
    }
}
