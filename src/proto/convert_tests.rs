//! Every message survives openraft -> protobuf -> bytes -> protobuf -> openraft
//! unchanged. Values are compared through their serde form, since not every
//! OpenRaft message implements `PartialEq`.

// The results built here carry OpenRaft's own (large) error type, as the wire does.
#![allow(clippy::result_large_err)]

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, SnapshotSegmentId};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use prost::Message;

use super::*;

fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

/// Encodes `message` to wire bytes and decodes it again, as the peer would.
fn over_the_wire<M: Message + Default>(message: M) -> M {
    M::decode(message.encode_to_vec().as_slice()).expect("decodes what was encoded")
}

fn vote() -> impl Strategy<Value = Vote> {
    (any::<u64>(), any::<u64>(), any::<bool>())
        .prop_map(|(term, node, committed)| Vote { leader_id: openraft::LeaderId::new(term, node), committed })
}

fn log_id() -> impl Strategy<Value = LogId> {
    (any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(term, node, index)| LogId::new(CommittedLeaderId::new(term, node), index))
}

fn event() -> impl Strategy<Value = CriticalEvent> {
    prop_oneof![
        (any::<u64>(), ".{0,12}", any::<u64>()).prop_map(|(player_id, name, timestamp)| CriticalEvent::PlayerJoin {
            player_id,
            name,
            timestamp
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(player_id, timestamp)| CriticalEvent::PlayerLeave { player_id, timestamp }),
        (any::<u64>(), any::<i32>(), any::<u64>())
            .prop_map(|(player_id, score, timestamp)| CriticalEvent::ScoreUpdate { player_id, score, timestamp }),
        (".{0,12}", any::<u64>()).prop_map(|(state, timestamp)| CriticalEvent::GameStateChange { state, timestamp }),
    ]
}

fn membership() -> impl Strategy<Value = Membership> {
    (btree_set(0u64..8, 1..4), btree_map(0u64..8, "[a-z0-9.:]{1,12}", 0..4)).prop_map(|(voters, learners)| {
        let mut nodes: BTreeMap<NodeId, PeerAddr> = voters
            .iter()
            .map(|id| {
                (
                    *id,
                    PeerAddr {
                        raft_addr: format!("r{id}"),
                        http_addr: format!("h{id}"),
                        incarnation: format!("i{id}"),
                    },
                )
            })
            .collect();
        for (id, addr) in learners {
            nodes.entry(id).or_insert(PeerAddr {
                raft_addr: addr.clone(),
                http_addr: addr,
                incarnation: String::new(),
            });
        }
        Membership::new(vec![voters], nodes)
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Blank),
        (vec((proptest::option::of("[a-z0-9-]{1,12}"), event()), 0..4), any::<u64>(), any::<u64>()).prop_map(
            |(events, proposed_at_ms, request_id_window_ms)| {
                let events =
                    events.into_iter().map(|(request_id, event)| ProposedEvent { request_id, event }).collect();
                EntryPayload::Normal(EventBatch { events, proposed_at_ms, request_id_window_ms })
            }
        ),
        membership().prop_map(EntryPayload::Membership),
    ];
    (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
}

fn snapshot_meta() -> impl Strategy<Value = SnapshotMeta> {
    (proptest::option::of(log_id()), proptest::option::of(log_id()), membership(), "[a-z0-9-]{0,16}").prop_map(
        |(last_log_id, membership_log_id, membership, snapshot_id)| SnapshotMeta {
            last_log_id,
            last_membership: StoredMembership::new(membership_log_id, membership),
            snapshot_id,
        },
    )
}

fn fatal() -> impl Strategy<Value = Fatal<NodeId>> {
    prop_oneof![Just(Fatal::Stopped), Just(Fatal::Panicked)]
}

proptest! {
    #[test]
    fn append_entries_request_round_trips(
        vote in vote(),
        prev_log_id in proptest::option::of(log_id()),
        leader_commit in proptest::option::of(log_id()),
        entries in vec(entry(), 0..5),
    ) {
        let req = AppendEntriesRequest::<TypeConfig> { vote, prev_log_id, leader_commit, entries };
        let back = AppendEntriesRequest::<TypeConfig>::try_from(over_the_wire(pb::AppendEntriesRequest::from(req.clone()))).unwrap();
        prop_assert!(same(&req, &back));
    }

    #[test]
    fn append_entries_reply_round_trips(choice in 0..5u8, vote in vote(), matching in proptest::option::of(log_id()), fatal in fatal()) {
        // Not every variant is `Clone`: build the value twice instead.
        let make = || -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
            match choice {
                0 => Ok(AppendEntriesResponse::Success),
                1 => Ok(AppendEntriesResponse::PartialSuccess(matching)),
                2 => Ok(AppendEntriesResponse::Conflict),
                3 => Ok(AppendEntriesResponse::HigherVote(vote)),
                _ => Err(RaftError::Fatal(fatal.clone())),
            }
        };
        let back: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            over_the_wire(pb::AppendEntriesReply::from(make())).try_into().unwrap();
        prop_assert_eq!(back, make());
    }

    #[test]
    fn vote_request_and_reply_round_trip(
        vote in vote(),
        last_log_id in proptest::option::of(log_id()),
        granted in any::<bool>(),
        fail in any::<bool>(),
        fatal in fatal(),
    ) {
        let req = VoteRequest { vote, last_log_id };
        prop_assert_eq!(VoteRequest::try_from(over_the_wire(pb::VoteRequest::from(req.clone()))).unwrap(), req);

        let result = if fail {
            Err(RaftError::Fatal(fatal))
        } else {
            Ok(VoteResponse { vote, vote_granted: granted, last_log_id })
        };
        let back: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            over_the_wire(pb::VoteReply::from(result.clone())).try_into().unwrap();
        prop_assert_eq!(back, result);
    }

    #[test]
    fn install_snapshot_request_and_reply_round_trip(
        vote in vote(),
        meta in snapshot_meta(),
        offset in any::<u64>(),
        data in vec(any::<u8>(), 0..64),
        done in any::<bool>(),
        choice in 0..3u8,
        fatal in fatal(),
    ) {
        let req = InstallSnapshotRequest::<TypeConfig> { vote, meta, offset, data, done };
        let back = InstallSnapshotRequest::<TypeConfig>::try_from(over_the_wire(pb::InstallSnapshotRequest::from(req.clone()))).unwrap();
        prop_assert_eq!(back, req);

        let make = || -> Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
            match choice {
                0 => Ok(InstallSnapshotResponse { vote }),
                1 => Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect: SnapshotSegmentId { id: "a".into(), offset },
                    got: SnapshotSegmentId { id: "b".into(), offset: 3 },
                }))),
                _ => Err(RaftError::Fatal(fatal.clone())),
            }
        };
        let back: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
            over_the_wire(pb::InstallSnapshotReply::from(make())).try_into().unwrap();
        prop_assert_eq!(back, make());
    }
}

#[test]
fn storage_failure_keeps_its_message() {
    let err =
        StorageError::from(StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Write, AnyError::error("disk full")));
    let reply = pb::VoteReply::from(Err(RaftError::Fatal(Fatal::StorageError(err))));
    let back: Result<VoteResponse<NodeId>, RaftError<NodeId>> = reply.try_into().unwrap();
    let message = back.unwrap_err().to_string();
    assert!(message.contains("disk full"), "{message}");
}

#[test]
fn missing_required_fields_are_errors_not_panics() {
    assert_eq!(
        AppendEntriesRequest::<TypeConfig>::try_from(pb::AppendEntriesRequest::default()).unwrap_err(),
        ConvertError::Missing("append_entries.vote")
    );
    let no_payload = pb::Entry { log_id: Some(pb::LogId::default()), payload: None };
    assert!(matches!(Entry::try_from(no_payload), Err(ConvertError::Missing(_))));
    let no_kind = pb::Command { events: vec![pb::CriticalEvent { kind: None }], ..Default::default() };
    assert_eq!(EventBatch::try_from(no_kind).unwrap_err(), ConvertError::Missing("critical_event.kind"));
    let leave = pb::CriticalEvent::from(CriticalEvent::PlayerLeave { player_id: 1, timestamp: 2 });
    let short_ids = pb::Command {
        events: vec![leave.clone(), leave.clone()],
        request_ids: vec!["a".into()],
        request_id_window_ms: 5,
        ..Default::default()
    };
    assert_eq!(
        EventBatch::try_from(short_ids).unwrap_err(),
        ConvertError::Length { field: "command.request_ids", expected: 2, got: 1 }
    );
    let bad_kind = pb::VoteReply {
        result: Some(pb::vote_reply::Result::Failure(pb::RaftFailure { kind: 42, message: String::new() })),
    };
    let converted: Result<Result<VoteResponse<NodeId>, RaftError<NodeId>>, _> = bad_kind.try_into();
    assert_eq!(converted.unwrap_err(), ConvertError::UnknownEnumValue { field: "raft_failure.kind", value: 42 });
    assert_eq!(tonic::Status::from(ConvertError::Missing("x")).code(), tonic::Code::InvalidArgument);
}

/// Decodes `bytes` as every message a peer sends or the Raft log stores,
/// and converts whatever decodes: each gives a value or an error, never a
/// panic.
fn decode_as_everything(bytes: &[u8]) {
    if let Ok(message) = pb::Entry::decode(bytes) {
        let _ = Entry::try_from(message);
    }
    let _ = crate::disk::format::decode_log_entry(bytes);
    if let Ok(message) = pb::AppendEntriesRequest::decode(bytes) {
        let _ = AppendEntriesRequest::<TypeConfig>::try_from(message);
    }
    if let Ok(message) = pb::AppendEntriesReply::decode(bytes) {
        let _: Result<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>, _> = message.try_into();
    }
    if let Ok(message) = pb::VoteRequest::decode(bytes) {
        let _ = VoteRequest::<NodeId>::try_from(message);
    }
    if let Ok(message) = pb::VoteReply::decode(bytes) {
        let _: Result<Result<VoteResponse<NodeId>, RaftError<NodeId>>, _> = message.try_into();
    }
    if let Ok(message) = pb::InstallSnapshotRequest::decode(bytes) {
        let _ = InstallSnapshotRequest::<TypeConfig>::try_from(message);
    }
    if let Ok(message) = pb::InstallSnapshotReply::decode(bytes) {
        let _ = InstallSnapshotResult::try_from(message);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_a_peer_or_log_decoder(bytes in vec(any::<u8>(), 0..512)) {
        decode_as_everything(&bytes);
    }

    /// A valid entry with bytes changed and its end cut: what a damaged
    /// record or a hostile peer sends looks like this more than like noise.
    #[test]
    fn damaged_entries_never_panic_a_peer_or_log_decoder(
        entry in entry(),
        changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = pb::Entry::from(entry).encode_to_vec();
        if !bytes.is_empty() {
            for (at, value) in changes {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_as_everything(&bytes);
    }
}
