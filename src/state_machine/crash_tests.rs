//! Crash recovery of the state machine: its event file is cut at every byte
//! offset and the store reopened.
//!
//! Records after the last snapshot are not fsynced, so a crash may cut them
//! anywhere: the store must reopen at its last whole record (OpenRaft then
//! re-applies the rest from the log), with `last_applied`, membership, the
//! event count and the events themselves agreeing. A cut into what the
//! snapshot covers (which was fsynced) is damage, and is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use super::GameStateMachine;
use crate::disk::DataDirError;
use crate::event::CriticalEvent;
use crate::raft_log::FileLogStore;
use crate::types::{Entry, EventBatch, LogId, Membership, PeerAddr, StorageError};

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn event(index: u64) -> CriticalEvent {
    CriticalEvent::ScoreUpdate { player_id: index, score: index as i32, timestamp: index }
}

/// Index 0 membership, 1 blank, then events, with a blank and a membership
/// change mixed in.
fn entry(index: u64) -> Entry {
    let payload = match index {
        0 => EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], None)),
        1 | 17 => EntryPayload::Blank,
        20 => EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([1])],
            [(1, PeerAddr::default()), (2, PeerAddr::default())]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )),
        _ => EntryPayload::Normal(EventBatch::single(event(index))),
    };
    Entry { log_id: log_id(index), payload }
}

fn events_in(entries: std::ops::Range<u64>) -> Vec<CriticalEvent> {
    entries
        .filter_map(|i| match entry(i).payload {
            EntryPayload::Normal(command) => Some(command.events[0].event.clone()),
            _ => None,
        })
        .collect()
}

fn dat_path(state_dir: &Path) -> PathBuf {
    state_dir.join("gen-000001").join("events.dat")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for dirent in std::fs::read_dir(from).unwrap() {
        let dirent = dirent.unwrap();
        let target = to.join(dirent.file_name());
        if dirent.file_type().unwrap().is_dir() {
            copy_tree(&dirent.path(), &target);
        } else {
            std::fs::copy(dirent.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn an_event_file_cut_at_any_offset_reopens_at_its_last_whole_record() {
    let original = tempfile::tempdir().unwrap();
    let last_index = 25;
    // Where each entry's record ends, to know what a cut keeps.
    let mut record_ends = Vec::new();
    let snapshot_len;
    {
        let mut sm = GameStateMachine::open(original.path()).unwrap();
        for index in 0..=last_index {
            sm.apply([entry(index)]).await.unwrap();
            record_ends.push((std::fs::metadata(dat_path(original.path())).unwrap().len(), index));
            if index == 10 {
                sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            }
        }
        snapshot_len = record_ends[10].0;
    }
    let full_len = std::fs::metadata(dat_path(original.path())).unwrap().len();

    let scratch = tempfile::tempdir().unwrap();
    for cut in 0..=full_len {
        let dir = scratch.path().join(format!("cut-{cut}"));
        copy_tree(original.path(), &dir);
        std::fs::OpenOptions::new().write(true).open(dat_path(&dir)).unwrap().set_len(cut).unwrap();

        let opened = GameStateMachine::open(&dir);
        if cut < snapshot_len {
            let err = opened.unwrap_err();
            assert!(matches!(err, DataDirError::Corrupt { .. }), "cut at {cut} into the snapshot: {err}");
            std::fs::remove_dir_all(&dir).unwrap();
            continue;
        }
        let mut sm = opened.unwrap_or_else(|e| panic!("cut at {cut}: refused: {e}"));
        let kept = record_ends.iter().filter(|(end, _)| *end <= cut).map(|(_, index)| *index).max();
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, kept.map(log_id), "cut at {cut}");
        let expected_membership = if kept >= Some(20) { Some(log_id(20)) } else { Some(log_id(0)) };
        assert_eq!(*membership.log_id(), expected_membership, "cut at {cut}");
        let expected = events_in(0..kept.map_or(0, |k| k + 1));
        let log = sm.event_list();
        assert_eq!(log.len(), expected.len() as u64, "cut at {cut}");
        let read: Vec<CriticalEvent> = log.range(0, u64::MAX).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(read, expected, "cut at {cut}");

        // Re-applying from the log continues exactly after the kept records.
        let next = kept.map_or(0, |k| k + 1);
        sm.apply((next..=last_index).map(entry)).await.unwrap();
        drop(sm);
        let reopened = GameStateMachine::open(&dir).unwrap();
        let all: Vec<CriticalEvent> =
            reopened.event_list().range(0, u64::MAX).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(all, events_in(0..last_index + 1), "cut at {cut}: after re-applying");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn pages_read_only_their_events_and_agree_with_a_full_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = GameStateMachine::open(dir.path()).unwrap();
    sm.apply((0..=last_entry()).map(entry)).await.unwrap();
    let log = sm.event_list();
    let all = log.range(0, u64::MAX).unwrap();
    for from in 0..=all.len() as u64 + 1 {
        for limit in [0, 1, 3, 100] {
            let page = log.range(from, limit).unwrap();
            let start = (from as usize).min(all.len());
            let end = (start + limit as usize).min(all.len());
            assert_eq!(page, all[start..end], "from {from} limit {limit}");
        }
    }
    // Each event carries the index of the entry that committed it.
    assert!(all
        .iter()
        .all(|e| matches!(&e.event, CriticalEvent::ScoreUpdate { player_id, .. } if *player_id == e.log_index)));
}

fn last_entry() -> u64 {
    25
}

/// Ships a snapshot from one durable store to another through the same
/// calls OpenRaft makes, then checks what a crash at each step of the
/// install leaves: the old state or the new, never a mix.
#[tokio::test]
async fn installing_a_snapshot_switches_state_whole_and_survives_crashes_between_steps() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sender_dir = tempfile::tempdir().unwrap();
    let mut sender = GameStateMachine::open(sender_dir.path()).unwrap();
    sender.apply((0..=last_entry()).map(entry)).await.unwrap();
    let built = sender.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut snapshot = sender.get_current_snapshot().await.unwrap().expect("current snapshot");
    assert_eq!(snapshot.meta, built.meta);
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();

    // The receiver holds other, older events of its own.
    let receiver_dir = tempfile::tempdir().unwrap();
    let mut receiver = GameStateMachine::open(receiver_dir.path()).unwrap();
    receiver.apply((0..5).map(entry)).await.unwrap();
    let before: Vec<_> = receiver.event_list().range(0, u64::MAX).unwrap();

    // Received in two chunks, the second written first, as offsets allow.
    let mut incoming = receiver.begin_receiving_snapshot().await.unwrap();
    let half = bytes.len() / 2;
    {
        use tokio::io::AsyncSeekExt;
        incoming.seek(std::io::SeekFrom::Start(half as u64)).await.unwrap();
        incoming.write_all(&bytes[half..]).await.unwrap();
        incoming.seek(std::io::SeekFrom::Start(0)).await.unwrap();
        incoming.write_all(&bytes[..half]).await.unwrap();
        incoming.shutdown().await.unwrap();
    }

    // A crash before the install (a copy of the directory as it is now):
    // the partial download is discarded and the old state is intact.
    let crashed_early = tempfile::tempdir().unwrap();
    copy_tree(receiver_dir.path(), crashed_early.path());
    let reopened = GameStateMachine::open(crashed_early.path()).unwrap();
    assert_eq!(reopened.event_list().range(0, u64::MAX).unwrap(), before);
    assert!(std::fs::read_dir(crashed_early.path())
        .unwrap()
        .all(|d| { !d.unwrap().file_name().to_string_lossy().starts_with("incoming-") }));

    receiver.install_snapshot(&built.meta, incoming).await.unwrap();

    let expected = sender.event_list().range(0, u64::MAX).unwrap();
    assert_eq!(receiver.event_list().range(0, u64::MAX).unwrap(), expected);
    assert_eq!(receiver.applied_state().await.unwrap().0, built.meta.last_log_id);
    let current = receiver.get_current_snapshot().await.unwrap().expect("installed snapshot is current");
    assert_eq!(current.meta, built.meta);
    drop(receiver);

    // Reopened: the new state, the old generation gone.
    let reopened = GameStateMachine::open(receiver_dir.path()).unwrap();
    assert_eq!(reopened.event_list().range(0, u64::MAX).unwrap(), expected);
    let generations: Vec<String> = std::fs::read_dir(receiver_dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("gen-") || name.starts_with("incoming-"))
        .collect();
    assert_eq!(generations, vec!["gen-000002".to_string()]);

    // A crash after the new generation was renamed into place but before
    // CURRENT moved: the old generation is still the state.
    let crashed = tempfile::tempdir().unwrap();
    copy_tree(receiver_dir.path(), crashed.path());
    std::fs::rename(crashed.path().join("gen-000002"), crashed.path().join("gen-000003")).unwrap();
    copy_tree(&crashed.path().join("gen-000003"), &crashed.path().join("gen-000002"));
    std::fs::write(crashed.path().join("gen-000003").join("events.dat"), b"half-written").unwrap();
    let survivor = GameStateMachine::open(crashed.path()).unwrap();
    assert_eq!(survivor.event_list().range(0, u64::MAX).unwrap(), expected);
    assert!(!crashed.path().join("gen-000003").exists(), "the uncommitted generation is removed");
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_its_meta_is_refused() {
    use tokio::io::AsyncWriteExt;

    let sender_dir = tempfile::tempdir().unwrap();
    let mut sender = GameStateMachine::open(sender_dir.path()).unwrap();
    sender.apply((0..=10).map(entry)).await.unwrap();
    let built = sender.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let bytes = std::fs::read(dat_path(sender_dir.path())).unwrap();

    let receiver_dir = tempfile::tempdir().unwrap();
    let mut receiver = GameStateMachine::open(receiver_dir.path()).unwrap();
    receiver.apply((0..3).map(entry)).await.unwrap();
    let before = receiver.event_list().range(0, u64::MAX).unwrap();
    for damaged in [bytes[..bytes.len() - 3].to_vec(), bytes[..bytes.len() / 2].to_vec()] {
        let mut incoming = receiver.begin_receiving_snapshot().await.unwrap();
        incoming.write_all(&damaged).await.unwrap();
        incoming.shutdown().await.unwrap();
        assert!(receiver.install_snapshot(&built.meta, incoming).await.is_err());
        assert_eq!(receiver.event_list().range(0, u64::MAX).unwrap(), before, "old state kept");
    }
}

/// A follower as OpenRaft drives it when a snapshot arrives: the install is
/// queued to the state machine's task, and the log is purged up to the
/// snapshot right after, without waiting for it. Entries `0..held` are in
/// both the follower's log and its state machine; the snapshot covers
/// `0..=last_entry()`. The stores are wired as `node/` wires them.
struct Follower {
    _dir: tempfile::TempDir,
    log_dir: PathBuf,
    state_dir: PathBuf,
    log: FileLogStore,
    sm: GameStateMachine,
    snapshot: openraft::storage::Snapshot<crate::types::TypeConfig>,
}

/// Opens both stores of a node as `node/` does: the log's purges bounded
/// by the state machine, and refused if already past it.
async fn open_node_stores(log_dir: &Path, state_dir: &Path) -> Result<(FileLogStore, GameStateMachine), DataDirError> {
    let sm = GameStateMachine::open(state_dir)?;
    let log = FileLogStore::open(log_dir)?.with_purge_limit(sm.durable_watermark().purge_limit()).await?;
    // A purge that waits for an install nobody runs gives up soon.
    Ok((log.with_purge_wait(std::time::Duration::from_millis(300)), sm))
}

impl Follower {
    async fn new(held: u64) -> Self {
        use openraft::storage::RaftLogStorageExt;
        let sender_dir = tempfile::tempdir().unwrap();
        let mut sender = GameStateMachine::open(sender_dir.path()).unwrap();
        sender.apply((0..=last_entry()).map(entry)).await.unwrap();
        sender.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let snapshot = sender.get_current_snapshot().await.unwrap().expect("a snapshot");

        let dir = tempfile::tempdir().unwrap();
        let (log_dir, state_dir) = (dir.path().join("raft-log"), dir.path().join("state"));
        let (mut log, mut sm) = open_node_stores(&log_dir, &state_dir).await.unwrap();
        log.blocking_append((0..held).map(entry)).await.unwrap();
        sm.apply((0..held).map(entry)).await.unwrap();
        Self { _dir: dir, log_dir, state_dir, log, sm, snapshot }
    }

    /// The received snapshot, written as OpenRaft writes its chunks;
    /// `damaged` drops its last bytes, so installing it fails.
    async fn receive(&mut self, damaged: bool) -> Box<crate::types::SnapshotData> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut bytes = Vec::new();
        self.snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
        if damaged {
            bytes.truncate(bytes.len() - 3);
        }
        let mut incoming = self.sm.begin_receiving_snapshot().await.unwrap();
        incoming.write_all(&bytes).await.unwrap();
        incoming.shutdown().await.unwrap();
        incoming
    }

    fn snapshot_log_id(&self) -> LogId {
        self.snapshot.meta.last_log_id.expect("the snapshot covers entries")
    }

    /// Queues the install (in its own task, as OpenRaft's state machine
    /// worker runs it) and purges up to the snapshot at once, as OpenRaft's
    /// core does. Returns the install's and the purge's outcomes.
    async fn install_and_purge(&mut self, damaged: bool) -> (Result<(), StorageError>, Result<(), StorageError>) {
        use openraft::storage::RaftLogStorage;
        let incoming = self.receive(damaged).await;
        let (meta, upto) = (self.snapshot.meta.clone(), self.snapshot_log_id());
        let mut sm = std::mem::replace(&mut self.sm, GameStateMachine::in_memory());
        let install = tokio::spawn(async move {
            let result = sm.install_snapshot(&meta, incoming).await;
            (sm, result)
        });
        let purged = self.log.purge(upto).await;
        let (sm, installed) = install.await.unwrap();
        self.sm = sm;
        (installed, purged)
    }

    /// Drops everything, as a crash does, and reopens both stores as a
    /// restarted node does: returns the log's purge mark and the state
    /// machine's last applied entry.
    async fn crash_and_reopen(self) -> (Option<LogId>, Option<LogId>) {
        use openraft::storage::RaftLogStorage;
        let Self { _dir, log_dir, state_dir, log, sm, .. } = self;
        drop((log, sm));
        let (mut log, mut sm) =
            open_node_stores(&log_dir, &state_dir).await.unwrap_or_else(|e| panic!("the node cannot start again: {e}"));
        let purged = log.get_log_state().await.unwrap().last_purged_log_id;
        let applied = sm.applied_state().await.unwrap().0;
        assert!(
            purged.map(|id| id.index) <= applied.map(|id| id.index),
            "the log is purged up to {purged:?} but the state machine holds only up to {applied:?}"
        );
        (purged, applied)
    }
}

/// A failing install (here a damaged snapshot; ENOSPC does the same) must
/// leave the log holding what the state machine needs to restart.
#[tokio::test]
async fn a_failed_install_leaves_the_log_unpurged_past_what_is_applied() {
    let mut follower = Follower::new(5).await;
    let (installed, purged) = follower.install_and_purge(true).await;
    assert!(installed.is_err(), "a damaged snapshot is refused");
    let err = purged.expect_err("the purge must not go past what the state machine holds");
    assert!(err.to_string().contains("stopped before making entry 25 durable"), "{err}");
    let (purged, applied) = follower.crash_and_reopen().await;
    assert_eq!((purged, applied), (None, Some(log_id(4))), "the log and the state as before the snapshot");
}

/// A crash after the purge was asked for but before the install ran.
#[tokio::test]
async fn a_crash_before_the_install_finishes_leaves_the_log_unpurged_past_what_is_applied() {
    use openraft::storage::RaftLogStorage;
    let mut follower = Follower::new(5).await;
    let _incoming = follower.receive(false).await;
    // The install is queued, not yet run; the purge comes first and waits
    // for it (here, until its bound).
    let upto = follower.snapshot_log_id();
    let err = follower.log.purge(upto).await.expect_err("the purge waits for the install");
    assert!(err.to_string().contains("durable only up to None, not 25"), "{err}");
    let (purged, applied) = follower.crash_and_reopen().await;
    assert_eq!((purged, applied), (None, Some(log_id(4))));
}

/// The normal case: the purge waits for the install, then goes through.
#[tokio::test]
async fn a_purge_after_a_snapshot_goes_through_once_the_install_is_durable() {
    let mut follower = Follower::new(5).await;
    let (installed, purged) = follower.install_and_purge(false).await;
    installed.expect("installed");
    purged.expect("purged once installed");
    let upto = follower.snapshot_log_id();
    let (purged, applied) = follower.crash_and_reopen().await;
    assert_eq!((purged, applied), (Some(upto), Some(upto)));
}

/// A data directory already purged past its state machine (left by a
/// version without the watermark) is refused with what to do.
#[tokio::test]
async fn a_log_purged_past_the_state_machine_is_refused_at_open() {
    use openraft::storage::RaftLogStorage;
    let follower = Follower::new(5).await;
    let upto = follower.snapshot_log_id();
    let Follower { _dir, log_dir, state_dir, log, sm, .. } = follower;
    drop((log, sm));
    FileLogStore::open(&log_dir).unwrap().purge(upto).await.unwrap();
    let err = open_node_stores(&log_dir, &state_dir).await.expect_err("refused");
    assert!(matches!(err, DataDirError::PurgedPastApplied { purged: 25, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("purged up to entry 25, but the state machine holds only entries up to 4"), "{message}");
    assert!(message.contains("move its data directory away and start it with --join"), "{message}");
}

/// A snapshot build that waits for the directory lock while an install
/// switches generations must see the new generation: the old one's
/// directory is deleted by the install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_waiting_on_an_install_snapshots_the_installed_generation() {
    let mut follower = Follower::new(5).await;
    let incoming = follower.receive(false).await;
    let meta = follower.snapshot.meta.clone();
    let mut builder = follower.sm.get_snapshot_builder().await;
    let dir = follower.sm.dir.clone().expect("a durable store");
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (resume, resume_rx) = tokio::sync::oneshot::channel();
    follower.sm.pause_before_publish = Some(super::PauseHook { reached: reached_tx, resume: resume_rx });
    let mut sm = follower.sm;
    let install = tokio::spawn(async move {
        let result = sm.install_snapshot(&meta, incoming).await;
        (sm, result)
    });
    reached.await.expect("the install reaches its pause");

    // The install has switched generations on disk and not yet published
    // the new one. A build starts now: either it waits for the install (the
    // lock is held), or it runs and must still succeed.
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dir.try_lock().is_ok() && !build.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the build neither ran nor waited for the install");
        tokio::task::yield_now().await;
    }
    resume.send(()).expect("the install waits");
    let (_sm, installed) = install.await.unwrap();
    installed.expect("the install succeeds");
    let built = build.await.unwrap().expect("a build beside an install must not fail");
    assert_eq!(built.meta.last_log_id, follower.snapshot.meta.last_log_id, "the build snapshots the installed state");
}

/// What a backup reads ([`super::EventList::freeze`]): the prefix applied
/// at one moment, unchanged by later applies and by an install that
/// replaces (and deletes) its generation while it is being read.
#[tokio::test]
async fn frozen_events_read_the_same_prefix_after_applies_and_an_install_replace_their_generation() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let read_all = |frozen: &super::FrozenEvents| {
        let mut bytes = Vec::new();
        loop {
            let chunk = frozen.read_at(bytes.len() as u64, 7).unwrap();
            if chunk.is_empty() {
                return bytes;
            }
            bytes.extend_from_slice(&chunk);
        }
    };
    let receiver_dir = tempfile::tempdir().unwrap();
    let mut receiver = GameStateMachine::open(receiver_dir.path()).unwrap();
    receiver.apply((0..5).map(entry)).await.unwrap();
    let frozen = receiver.event_list().freeze();
    assert_eq!((frozen.state().event_count, frozen.state().last_applied), (3, Some(log_id(4))));
    let before = read_all(&frozen);
    assert_eq!(before.len() as u64, frozen.state().dat_len);
    assert_eq!(before, std::fs::read(dat_path(receiver_dir.path())).unwrap());

    receiver.apply((5..9).map(entry)).await.unwrap();
    assert_eq!(read_all(&frozen), before, "later applies are not in the frozen prefix");

    let sender_dir = tempfile::tempdir().unwrap();
    let mut sender = GameStateMachine::open(sender_dir.path()).unwrap();
    sender.apply((0..=last_entry()).map(entry)).await.unwrap();
    let built = sender.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut snapshot = sender.get_current_snapshot().await.unwrap().expect("current snapshot");
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    let mut incoming = receiver.begin_receiving_snapshot().await.unwrap();
    incoming.write_all(&bytes).await.unwrap();
    incoming.shutdown().await.unwrap();
    receiver.install_snapshot(&built.meta, incoming).await.unwrap();
    assert!(!dat_path(receiver_dir.path()).exists(), "the install deleted the frozen generation's directory");
    assert_eq!(read_all(&frozen), before, "the frozen prefix reads on from its open file");
}
