//! Every on-disk format of a data directory, in one place.
//!
//! ```text
//! <data-dir>/
//!   gameraft.lock            flock()ed while a node runs; holds its pid
//!   node.json                NodeFile: {"node_id", "format", "incarnation", "cluster_id"}
//!   raft-log/                the Raft log (raft_log::FileLogStore)
//!     vote.json              the vote (OpenRaft's Vote as JSON)
//!     purged.json            the last purged log id (JSON)
//!     <first index>.seg      checksummed records, each a protobuf `Entry` (proto/raft.proto)
//!   state/                   the applied events (state_machine)
//!     CURRENT                name of the live generation
//!     gen-<n>/events.dat     checksummed records, each an AppliedEntry as JSON
//!     gen-<n>/events.idx     event position -> offset of its record (u64 LE)
//!     gen-<n>/snapshot.json  SnapshotRecord
//!     incoming-<n>/          a snapshot being received
//! ```
//!
//! The framing of records is [`super::record`]'s; what a record holds is
//! defined here. A Raft log record holds a protobuf `Entry`, so changing
//! `proto/raft.proto` changes this format as well as the wire.
//!
//! [`FORMAT`] is the version of all of it. A node refuses a directory of any
//! other version, with a message saying so, and reads no other version's
//! records: bump it for any change an existing directory could not be read
//! with.

use std::io;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::event::CriticalEvent;
use crate::proto::pb;
use crate::types::{Entry, LogId, Membership, NodeId, SnapshotMeta, StoredMembership};

/// The version of every format in a data directory.
pub const FORMAT: u32 = 3;

pub const LOCK_FILE: &str = "gameraft.lock";
pub const NODE_FILE: &str = "node.json";
pub const LOG_DIR: &str = "raft-log";
pub const STATE_DIR: &str = "state";

pub const VOTE_FILE: &str = "vote.json";
pub const PURGED_FILE: &str = "purged.json";
pub const SEGMENT_EXT: &str = "seg";

pub const CURRENT_FILE: &str = "CURRENT";
pub const DAT_FILE: &str = "events.dat";
pub const IDX_FILE: &str = "events.idx";
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const INCOMING_PREFIX: &str = "incoming-";
pub const GEN_PREFIX: &str = "gen-";

/// `node.json`: who this directory is. The incarnation is drawn when the
/// directory is created, so a node that lost its directory comes back as a
/// new incarnation of its id; the cluster id is recorded when the node
/// founds a cluster or is first reached by one (see `identity`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub node_id: NodeId,
    pub format: u32,
    pub incarnation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// The only version [`NodeFile::format`] may have: just the version, read
/// before anything else, so a directory of another version is refused with
/// that reason rather than as unparsable.
#[derive(Deserialize)]
pub struct FormatOnly {
    pub format: u32,
}

/// A new random id as incarnations and cluster ids are stored: 128 bits, hex.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The payload of one Raft log record.
pub fn encode_log_entry(entry: Entry) -> Vec<u8> {
    pb::Entry::from(entry).encode_to_vec()
}

/// Reads the payload of one Raft log record.
pub fn decode_log_entry(payload: &[u8]) -> io::Result<Entry> {
    let message = pb::Entry::decode(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Entry::try_from(message).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One applied Raft entry, as `events.dat` stores it. Every applied entry,
/// blank and membership ones included, is one record.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppliedEntry {
    pub log_id: LogId,
    /// Event position of this entry's first event (the event count before it).
    pub first_position: u64,
    pub payload: AppliedPayload,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AppliedPayload {
    Blank,
    Membership(Membership),
    /// The events the entry appended (not its duplicates or reused ids),
    /// the entry's log time and the request-id window it carried.
    Events {
        at_ms: u64,
        request_id_window_ms: u64,
        events: Vec<StoredEvent>,
    },
}

/// One appended event as stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The event's fingerprint, stored with its id (short key: one per
    /// event in the file and in every snapshot).
    #[serde(rename = "fp", default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<u64>,
    pub event: CriticalEvent,
}

impl AppliedPayload {
    /// The stored events, each with its request id.
    pub fn into_events(self) -> Vec<(Option<String>, CriticalEvent)> {
        match self {
            AppliedPayload::Blank | AppliedPayload::Membership(_) => Vec::new(),
            AppliedPayload::Events { events, .. } => events.into_iter().map(|e| (e.request_id, e.event)).collect(),
        }
    }
}

/// An [`AppliedEntry`] read for its request ids only: the events' bodies
/// and membership configs are skipped, not parsed.
#[derive(Deserialize)]
pub struct IdsOfEntry {
    pub log_id: LogId,
    pub first_position: u64,
    pub payload: IdsOfPayload,
}

#[derive(Deserialize)]
pub enum IdsOfPayload {
    Blank,
    Membership(serde::de::IgnoredAny),
    Events { at_ms: u64, events: Vec<IdOfEvent> },
}

#[derive(Deserialize)]
pub struct IdOfEvent {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(rename = "fp", default)]
    pub fingerprint: Option<u64>,
}

impl IdsOfPayload {
    /// The log time and events (0 and none for an entry without events).
    pub fn into_events(self) -> (u64, Vec<IdOfEvent>) {
        match self {
            IdsOfPayload::Blank | IdsOfPayload::Membership(_) => (0, Vec::new()),
            IdsOfPayload::Events { at_ms, events } => (at_ms, events),
        }
    }
}

/// How far the state machine has applied, and what that produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub event_count: u64,
    /// Length of `events.dat` holding exactly the records applied.
    pub dat_len: u64,
    /// The log time of the last entry with events: the largest time any
    /// leader stamped so far (ms since the epoch).
    pub log_time_ms: u64,
    /// How far back from `log_time_ms` the state machine holds request ids:
    /// the window of the last entry that carried one (0 before any did). A
    /// restarted node loads those, so it needs no read at its next write.
    pub request_id_window_ms: u64,
}

/// The content of `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub meta: SnapshotMeta,
    pub state: AppliedState,
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Parses `bytes` as every JSON record and file of a data directory.
    fn parse_as_everything(bytes: &[u8]) {
        let _ = serde_json::from_slice::<AppliedEntry>(bytes);
        let _ = serde_json::from_slice::<IdsOfEntry>(bytes).map(|entry| entry.payload.into_events());
        let _ = serde_json::from_slice::<NodeFile>(bytes);
        let _ = serde_json::from_slice::<FormatOnly>(bytes);
        let _ = serde_json::from_slice::<SnapshotRecord>(bytes);
        let _ = serde_json::from_slice::<AppliedState>(bytes);
    }

    fn an_applied_entry() -> Vec<u8> {
        let event = CriticalEvent::ScoreUpdate { player_id: 7, score: -3, timestamp: 9 };
        let entry = AppliedEntry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), 40),
            first_position: 12,
            payload: AppliedPayload::Events {
                at_ms: 1_700_000_000_000,
                request_id_window_ms: 120_000,
                events: vec![StoredEvent { request_id: Some("c1-17".into()), fingerprint: Some(5), event }],
            },
        };
        serde_json::to_vec(&entry).expect("serializes")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic_a_disk_record_parser(bytes in vec(any::<u8>(), 0..512)) {
            parse_as_everything(&bytes);
            let mut records = Vec::new();
            let _ = super::super::record::scan(&bytes[..], 0, |_, payload| -> Result<(), std::io::Error> {
                records.push(payload.len());
                Ok(())
            });
        }

        #[test]
        fn damaged_event_records_never_panic_a_parser(
            changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = an_applied_entry();
            for (at, value) in changes {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            parse_as_everything(&bytes);
        }
    }
}
