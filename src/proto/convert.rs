//! Conversions between OpenRaft's messages and their protobuf form.
//!
//! Towards protobuf nothing can fail. From protobuf a message may lack a field
//! that proto3 cannot mark required, or name an unknown enum value; that is a
//! [`ConvertError`], answered with `InvalidArgument`, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, CommittedLeaderId, EntryPayload, ErrorSubject, ErrorVerb, SnapshotSegmentId, StorageIOError};

use super::pb;
use crate::event::CriticalEvent;
use crate::types::{
    Entry, EventBatch, LogId, Membership, NodeId, PeerAddr, ProposedEvent, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig, Vote,
};

/// A protobuf message that does not describe a valid OpenRaft message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` has unknown value {value}")]
    UnknownEnumValue { field: &'static str, value: i32 },
    #[error("field `{field}` has {got} values where {expected} are expected")]
    Length { field: &'static str, expected: usize, got: usize },
}

impl From<ConvertError> for tonic::Status {
    fn from(err: ConvertError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ConvertError> {
    value.ok_or(ConvertError::Missing(field))
}

// ---- ids and votes ----

impl From<CommittedLeaderId<NodeId>> for pb::LeaderId {
    fn from(id: CommittedLeaderId<NodeId>) -> Self {
        pb::LeaderId { term: id.term, node_id: id.node_id }
    }
}

impl From<pb::LeaderId> for CommittedLeaderId<NodeId> {
    fn from(id: pb::LeaderId) -> Self {
        CommittedLeaderId::new(id.term, id.node_id)
    }
}

impl From<Vote> for pb::Vote {
    fn from(vote: Vote) -> Self {
        pb::Vote { leader_id: Some(vote.leader_id.into()), committed: vote.committed }
    }
}

impl TryFrom<pb::Vote> for Vote {
    type Error = ConvertError;
    fn try_from(vote: pb::Vote) -> Result<Self, ConvertError> {
        let leader_id = required(vote.leader_id, "vote.leader_id")?.into();
        Ok(Vote { leader_id, committed: vote.committed })
    }
}

impl From<LogId> for pb::LogId {
    fn from(id: LogId) -> Self {
        pb::LogId { leader_id: Some(id.leader_id.into()), index: id.index }
    }
}

impl TryFrom<pb::LogId> for LogId {
    type Error = ConvertError;
    fn try_from(id: pb::LogId) -> Result<Self, ConvertError> {
        Ok(LogId::new(required(id.leader_id, "log_id.leader_id")?.into(), id.index))
    }
}

fn log_id_from_pb(id: Option<pb::LogId>) -> Result<Option<LogId>, ConvertError> {
    id.map(LogId::try_from).transpose()
}

// ---- membership ----

impl From<PeerAddr> for pb::Node {
    fn from(addr: PeerAddr) -> Self {
        pb::Node { raft_addr: addr.raft_addr, http_addr: addr.http_addr, incarnation: addr.incarnation }
    }
}

impl From<pb::Node> for PeerAddr {
    fn from(node: pb::Node) -> Self {
        PeerAddr { raft_addr: node.raft_addr, http_addr: node.http_addr, incarnation: node.incarnation }
    }
}

impl From<&Membership> for pb::Membership {
    fn from(membership: &Membership) -> Self {
        pb::Membership {
            configs: membership
                .get_joint_config()
                .iter()
                .map(|ids| pb::NodeIdSet { ids: ids.iter().copied().collect() })
                .collect(),
            nodes: membership.nodes().map(|(id, addr)| (*id, addr.clone().into())).collect(),
        }
    }
}

impl From<pb::Membership> for Membership {
    fn from(membership: pb::Membership) -> Self {
        let configs: Vec<BTreeSet<NodeId>> =
            membership.configs.into_iter().map(|set| set.ids.into_iter().collect()).collect();
        let nodes: BTreeMap<NodeId, PeerAddr> =
            membership.nodes.into_iter().map(|(id, node)| (id, node.into())).collect();
        Membership::new(configs, nodes)
    }
}

impl From<&StoredMembership> for pb::StoredMembership {
    fn from(stored: &StoredMembership) -> Self {
        pb::StoredMembership { log_id: stored.log_id().map(Into::into), membership: Some(stored.membership().into()) }
    }
}

impl TryFrom<pb::StoredMembership> for StoredMembership {
    type Error = ConvertError;
    fn try_from(stored: pb::StoredMembership) -> Result<Self, ConvertError> {
        let membership = required(stored.membership, "stored_membership.membership")?.into();
        Ok(StoredMembership::new(log_id_from_pb(stored.log_id)?, membership))
    }
}

// ---- events and entries ----

impl From<CriticalEvent> for pb::CriticalEvent {
    fn from(event: CriticalEvent) -> Self {
        use pb::critical_event::Kind;
        let kind = match event {
            CriticalEvent::PlayerJoin { player_id, name, timestamp } => {
                Kind::PlayerJoin(pb::PlayerJoin { player_id, name, timestamp })
            }
            CriticalEvent::PlayerLeave { player_id, timestamp } => {
                Kind::PlayerLeave(pb::PlayerLeave { player_id, timestamp })
            }
            CriticalEvent::ScoreUpdate { player_id, score, timestamp } => {
                Kind::ScoreUpdate(pb::ScoreUpdate { player_id, score, timestamp })
            }
            CriticalEvent::GameStateChange { state, timestamp } => {
                Kind::GameStateChange(pb::GameStateChange { state, timestamp })
            }
        };
        pb::CriticalEvent { kind: Some(kind) }
    }
}

impl TryFrom<pb::CriticalEvent> for CriticalEvent {
    type Error = ConvertError;
    fn try_from(event: pb::CriticalEvent) -> Result<Self, ConvertError> {
        use pb::critical_event::Kind;
        Ok(match required(event.kind, "critical_event.kind")? {
            Kind::PlayerJoin(pb::PlayerJoin { player_id, name, timestamp }) => {
                CriticalEvent::PlayerJoin { player_id, name, timestamp }
            }
            Kind::PlayerLeave(pb::PlayerLeave { player_id, timestamp }) => {
                CriticalEvent::PlayerLeave { player_id, timestamp }
            }
            Kind::ScoreUpdate(pb::ScoreUpdate { player_id, score, timestamp }) => {
                CriticalEvent::ScoreUpdate { player_id, score, timestamp }
            }
            Kind::GameStateChange(pb::GameStateChange { state, timestamp }) => {
                CriticalEvent::GameStateChange { state, timestamp }
            }
        })
    }
}

impl From<EventBatch> for pb::Command {
    fn from(command: EventBatch) -> Self {
        let (request_ids, events) = command
            .events
            .into_iter()
            .map(|proposed| (proposed.request_id.unwrap_or_default(), proposed.event.into()))
            .unzip();
        pb::Command {
            events,
            request_ids,
            proposed_at_ms: command.proposed_at_ms,
            request_id_window_ms: command.request_id_window_ms,
        }
    }
}

impl TryFrom<pb::Command> for EventBatch {
    type Error = ConvertError;
    fn try_from(command: pb::Command) -> Result<Self, ConvertError> {
        // No ids at all: an entry without request ids (tests, benchmarks).
        let mut request_ids = match command.request_ids.len() {
            0 => vec![String::new(); command.events.len()],
            n if n == command.events.len() => command.request_ids,
            n => {
                return Err(ConvertError::Length {
                    field: "command.request_ids",
                    expected: command.events.len(),
                    got: n,
                })
            }
        }
        .into_iter();
        let events = command
            .events
            .into_iter()
            .map(|event| {
                let request_id = request_ids.next().filter(|id| !id.is_empty());
                Ok(ProposedEvent { request_id, event: CriticalEvent::try_from(event)? })
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(EventBatch {
            events,
            proposed_at_ms: command.proposed_at_ms,
            request_id_window_ms: command.request_id_window_ms,
        })
    }
}

impl From<Entry> for pb::Entry {
    fn from(entry: Entry) -> Self {
        use pb::entry::Payload;
        let payload = match entry.payload {
            EntryPayload::Blank => Payload::Blank(pb::Empty {}),
            EntryPayload::Normal(command) => Payload::Normal(command.into()),
            EntryPayload::Membership(membership) => Payload::Membership((&membership).into()),
        };
        pb::Entry { log_id: Some(entry.log_id.into()), payload: Some(payload) }
    }
}

impl TryFrom<pb::Entry> for Entry {
    type Error = ConvertError;
    fn try_from(entry: pb::Entry) -> Result<Self, ConvertError> {
        use pb::entry::Payload;
        let log_id = required(entry.log_id, "entry.log_id")?.try_into()?;
        let payload = match required(entry.payload, "entry.payload")? {
            Payload::Blank(_) => EntryPayload::Blank,
            Payload::Normal(command) => EntryPayload::Normal(command.try_into()?),
            Payload::Membership(membership) => EntryPayload::Membership(membership.into()),
        };
        Ok(Entry { log_id, payload })
    }
}

// ---- AppendEntries ----

impl From<AppendEntriesRequest<TypeConfig>> for pb::AppendEntriesRequest {
    fn from(req: AppendEntriesRequest<TypeConfig>) -> Self {
        pb::AppendEntriesRequest {
            vote: Some(req.vote.into()),
            prev_log_id: req.prev_log_id.map(Into::into),
            leader_commit: req.leader_commit.map(Into::into),
            entries: req.entries.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::AppendEntriesRequest> for AppendEntriesRequest<TypeConfig> {
    type Error = ConvertError;
    fn try_from(req: pb::AppendEntriesRequest) -> Result<Self, ConvertError> {
        Ok(AppendEntriesRequest {
            vote: required(req.vote, "append_entries.vote")?.try_into()?,
            prev_log_id: log_id_from_pb(req.prev_log_id)?,
            leader_commit: log_id_from_pb(req.leader_commit)?,
            entries: req.entries.into_iter().map(Entry::try_from).collect::<Result<_, _>>()?,
        })
    }
}

impl From<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> for pb::AppendEntriesReply {
    fn from(result: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>) -> Self {
        use pb::append_entries_reply::Result as R;
        let result = match result {
            Ok(AppendEntriesResponse::Success) => R::Success(pb::Empty {}),
            Ok(AppendEntriesResponse::PartialSuccess(matching)) => {
                R::PartialSuccess(pb::PartialSuccess { matching: matching.map(Into::into) })
            }
            Ok(AppendEntriesResponse::Conflict) => R::Conflict(pb::Empty {}),
            Ok(AppendEntriesResponse::HigherVote(vote)) => R::HigherVote(vote.into()),
            Err(err) => R::Failure(failure_from_raft_error(err)),
        };
        pb::AppendEntriesReply { result: Some(result) }
    }
}

impl TryFrom<pb::AppendEntriesReply> for Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
    type Error = ConvertError;
    fn try_from(reply: pb::AppendEntriesReply) -> Result<Self, ConvertError> {
        use pb::append_entries_reply::Result as R;
        Ok(match required(reply.result, "append_entries_reply.result")? {
            R::Success(_) => Ok(AppendEntriesResponse::Success),
            R::PartialSuccess(partial) => Ok(AppendEntriesResponse::PartialSuccess(log_id_from_pb(partial.matching)?)),
            R::Conflict(_) => Ok(AppendEntriesResponse::Conflict),
            R::HigherVote(vote) => Ok(AppendEntriesResponse::HigherVote(vote.try_into()?)),
            R::Failure(failure) => Err(RaftError::Fatal(fatal_from_failure(failure)?)),
        })
    }
}

// ---- Vote ----

impl From<VoteRequest<NodeId>> for pb::VoteRequest {
    fn from(req: VoteRequest<NodeId>) -> Self {
        pb::VoteRequest { vote: Some(req.vote.into()), last_log_id: req.last_log_id.map(Into::into) }
    }
}

impl TryFrom<pb::VoteRequest> for VoteRequest<NodeId> {
    type Error = ConvertError;
    fn try_from(req: pb::VoteRequest) -> Result<Self, ConvertError> {
        Ok(VoteRequest {
            vote: required(req.vote, "vote_request.vote")?.try_into()?,
            last_log_id: log_id_from_pb(req.last_log_id)?,
        })
    }
}

impl From<Result<VoteResponse<NodeId>, RaftError<NodeId>>> for pb::VoteReply {
    fn from(result: Result<VoteResponse<NodeId>, RaftError<NodeId>>) -> Self {
        use pb::vote_reply::Result as R;
        let result = match result {
            Ok(resp) => R::Ok(pb::VoteResponse {
                vote: Some(resp.vote.into()),
                vote_granted: resp.vote_granted,
                last_log_id: resp.last_log_id.map(Into::into),
            }),
            Err(err) => R::Failure(failure_from_raft_error(err)),
        };
        pb::VoteReply { result: Some(result) }
    }
}

impl TryFrom<pb::VoteReply> for Result<VoteResponse<NodeId>, RaftError<NodeId>> {
    type Error = ConvertError;
    fn try_from(reply: pb::VoteReply) -> Result<Self, ConvertError> {
        use pb::vote_reply::Result as R;
        Ok(match required(reply.result, "vote_reply.result")? {
            R::Ok(resp) => Ok(VoteResponse {
                vote: required(resp.vote, "vote_response.vote")?.try_into()?,
                vote_granted: resp.vote_granted,
                last_log_id: log_id_from_pb(resp.last_log_id)?,
            }),
            R::Failure(failure) => Err(RaftError::Fatal(fatal_from_failure(failure)?)),
        })
    }
}

// ---- InstallSnapshot ----

impl From<&SnapshotMeta> for pb::SnapshotMeta {
    fn from(meta: &SnapshotMeta) -> Self {
        pb::SnapshotMeta {
            last_log_id: meta.last_log_id.map(Into::into),
            last_membership: Some((&meta.last_membership).into()),
            snapshot_id: meta.snapshot_id.clone(),
        }
    }
}

impl TryFrom<pb::SnapshotMeta> for SnapshotMeta {
    type Error = ConvertError;
    fn try_from(meta: pb::SnapshotMeta) -> Result<Self, ConvertError> {
        Ok(SnapshotMeta {
            last_log_id: log_id_from_pb(meta.last_log_id)?,
            last_membership: required(meta.last_membership, "snapshot_meta.last_membership")?.try_into()?,
            snapshot_id: meta.snapshot_id,
        })
    }
}

impl From<InstallSnapshotRequest<TypeConfig>> for pb::InstallSnapshotRequest {
    fn from(req: InstallSnapshotRequest<TypeConfig>) -> Self {
        pb::InstallSnapshotRequest {
            vote: Some(req.vote.into()),
            meta: Some((&req.meta).into()),
            offset: req.offset,
            data: req.data,
            done: req.done,
        }
    }
}

impl TryFrom<pb::InstallSnapshotRequest> for InstallSnapshotRequest<TypeConfig> {
    type Error = ConvertError;
    fn try_from(req: pb::InstallSnapshotRequest) -> Result<Self, ConvertError> {
        Ok(InstallSnapshotRequest {
            vote: required(req.vote, "install_snapshot.vote")?.try_into()?,
            meta: required(req.meta, "install_snapshot.meta")?.try_into()?,
            offset: req.offset,
            data: req.data,
            done: req.done,
        })
    }
}

type InstallSnapshotResult = Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

fn segment_to_pb(segment: SnapshotSegmentId) -> pb::SnapshotSegmentId {
    pb::SnapshotSegmentId { id: segment.id, offset: segment.offset }
}

fn segment_from_pb(
    segment: Option<pb::SnapshotSegmentId>,
    field: &'static str,
) -> Result<SnapshotSegmentId, ConvertError> {
    let segment = required(segment, field)?;
    Ok(SnapshotSegmentId { id: segment.id, offset: segment.offset })
}

impl From<InstallSnapshotResult> for pb::InstallSnapshotReply {
    fn from(result: InstallSnapshotResult) -> Self {
        use pb::install_snapshot_reply::Result as R;
        let result = match result {
            Ok(resp) => R::Vote(resp.vote.into()),
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch))) => {
                R::Mismatch(pb::SnapshotMismatch {
                    expect: Some(segment_to_pb(mismatch.expect)),
                    got: Some(segment_to_pb(mismatch.got)),
                })
            }
            Err(RaftError::Fatal(fatal)) => R::Failure(failure_from_fatal(fatal)),
        };
        pb::InstallSnapshotReply { result: Some(result) }
    }
}

impl TryFrom<pb::InstallSnapshotReply> for InstallSnapshotResult {
    type Error = ConvertError;
    fn try_from(reply: pb::InstallSnapshotReply) -> Result<Self, ConvertError> {
        use pb::install_snapshot_reply::Result as R;
        Ok(match required(reply.result, "install_snapshot_reply.result")? {
            R::Vote(vote) => Ok(InstallSnapshotResponse { vote: vote.try_into()? }),
            R::Mismatch(mismatch) => {
                Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect: segment_from_pb(mismatch.expect, "snapshot_mismatch.expect")?,
                    got: segment_from_pb(mismatch.got, "snapshot_mismatch.got")?,
                })))
            }
            R::Failure(failure) => Err(RaftError::Fatal(fatal_from_failure(failure)?)),
        })
    }
}

// ---- a peer's fatal error ----

fn failure_from_raft_error(err: RaftError<NodeId>) -> pb::RaftFailure {
    match err {
        RaftError::Fatal(fatal) => failure_from_fatal(fatal),
        RaftError::APIError(never) => match never {},
    }
}

fn failure_from_fatal(fatal: Fatal<NodeId>) -> pb::RaftFailure {
    use pb::raft_failure::Kind;
    let kind = match &fatal {
        Fatal::StorageError(_) => Kind::Storage,
        Fatal::Panicked => Kind::Panicked,
        Fatal::Stopped => Kind::Stopped,
    };
    pb::RaftFailure { kind: kind.into(), message: fatal.to_string() }
}

/// The peer's storage error cannot be rebuilt in full; its message is kept.
fn fatal_from_failure(failure: pb::RaftFailure) -> Result<Fatal<NodeId>, ConvertError> {
    use pb::raft_failure::Kind;
    let kind = Kind::try_from(failure.kind)
        .map_err(|_| ConvertError::UnknownEnumValue { field: "raft_failure.kind", value: failure.kind })?;
    Ok(match kind {
        Kind::Stopped => Fatal::Stopped,
        Kind::Panicked => Fatal::Panicked,
        Kind::Storage => Fatal::StorageError(StorageError::from(StorageIOError::new(
            ErrorSubject::Store,
            ErrorVerb::Write,
            AnyError::error(failure.message),
        ))),
    })
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
