//! A million events over HTTP would take minutes at a few thousand writes
//! a second, so the large data directories are built with the node's own
//! storage code instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use gameraft::disk::DataDir;
use gameraft::event::CriticalEvent;
use gameraft::raft_log::FileLogStore;
use gameraft::state_machine::GameStateMachine;
use gameraft::types::{Entry, EventBatch, LogId, Membership, PeerAddr, Vote};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use crate::APPLY_BATCH;

pub fn event(tag: u64) -> CriticalEvent {
    CriticalEvent::ScoreUpdate { player_id: tag, score: (tag % 1000) as i32, timestamp: 1_700_000_000_000 + tag }
}

pub struct Generated {
    pub elapsed: Duration,
    /// Bytes of the event file, which is also the snapshot a joiner receives.
    pub dat_bytes: u64,
}

/// Builds the data directory of node 1, a one-voter cluster at `addr`, holding
/// `events` committed events, snapshotted, with its log purged up to the
/// snapshot: what a node that ran for a long time looks like.
pub async fn generate(path: &Path, events: u64, addr: PeerAddr) -> Generated {
    let started = Instant::now();
    let data_dir = DataDir::open(path, Some(1), || 1).expect("open the data directory to generate");
    let mut state_machine =
        GameStateMachine::open(&data_dir.state_dir()).expect("open the state machine of the generated directory");
    let leader = CommittedLeaderId::new(1, 1);
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, addr)]));
    let head = vec![
        Entry { log_id: LogId::new(leader, 0), payload: EntryPayload::Membership(membership) },
        Entry { log_id: LogId::new(leader, 1), payload: EntryPayload::Blank },
    ];
    state_machine.apply(head).await.expect("apply the membership and blank entries");
    // Event i travels in the entry at log index i + 2.
    let last_index = events + 1;
    let mut next = 2;
    while next <= last_index {
        let end = (next + APPLY_BATCH).min(last_index + 1);
        let batch: Vec<Entry> = (next..end)
            .map(|index| Entry {
                log_id: LogId::new(leader, index),
                payload: EntryPayload::Normal(EventBatch::single(event(index - 2))),
            })
            .collect();
        state_machine.apply(batch).await.expect("apply a batch of generated events");
        next = end;
    }
    let applied = state_machine.applied();
    assert_eq!(applied.event_count, events, "generated state machine holds the wrong event count");
    let snapshot = state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build the snapshot of the generated state");
    let last = snapshot.meta.last_log_id.expect("the snapshot covers the generated entries");
    assert_eq!(last.index, last_index, "snapshot ends at the last generated entry");
    drop(snapshot);

    let mut log = FileLogStore::open(&data_dir.log_dir()).expect("open the log store of the generated directory");
    log.save_vote(&Vote::new_committed(1, 1)).await.expect("save the generated vote");
    log.purge(last).await.expect("purge the generated log up to the snapshot");
    drop(log);
    drop(state_machine);
    drop(data_dir); // releases the directory lock before the node opens it
    Generated { elapsed: started.elapsed(), dat_bytes: applied.dat_len }
}
