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
use crate::event::CriticalEvent;
use crate::storage::DataDirError;
use crate::types::{Command, Entry, LogId, Membership, PeerAddr};

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
        _ => EntryPayload::Normal(Command::single(event(index))),
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
        let log = sm.event_log();
        assert_eq!(log.len(), expected.len() as u64, "cut at {cut}");
        let read: Vec<CriticalEvent> = log.range(0, u64::MAX).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(read, expected, "cut at {cut}");

        // Re-applying from the log continues exactly after the kept records.
        let next = kept.map_or(0, |k| k + 1);
        sm.apply((next..=last_index).map(entry)).await.unwrap();
        drop(sm);
        let reopened = GameStateMachine::open(&dir).unwrap();
        let all: Vec<CriticalEvent> =
            reopened.event_log().range(0, u64::MAX).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(all, events_in(0..last_index + 1), "cut at {cut}: after re-applying");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn pages_read_only_their_events_and_agree_with_a_full_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = GameStateMachine::open(dir.path()).unwrap();
    sm.apply((0..=last_entry()).map(entry)).await.unwrap();
    let log = sm.event_log();
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
    let before: Vec<_> = receiver.event_log().range(0, u64::MAX).unwrap();

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
    assert_eq!(reopened.event_log().range(0, u64::MAX).unwrap(), before);
    assert!(std::fs::read_dir(crashed_early.path())
        .unwrap()
        .all(|d| { !d.unwrap().file_name().to_string_lossy().starts_with("incoming-") }));

    receiver.install_snapshot(&built.meta, incoming).await.unwrap();

    let expected = sender.event_log().range(0, u64::MAX).unwrap();
    assert_eq!(receiver.event_log().range(0, u64::MAX).unwrap(), expected);
    assert_eq!(receiver.applied_state().await.unwrap().0, built.meta.last_log_id);
    let current = receiver.get_current_snapshot().await.unwrap().expect("installed snapshot is current");
    assert_eq!(current.meta, built.meta);
    drop(receiver);

    // Reopened: the new state, the old generation gone.
    let reopened = GameStateMachine::open(receiver_dir.path()).unwrap();
    assert_eq!(reopened.event_log().range(0, u64::MAX).unwrap(), expected);
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
    assert_eq!(survivor.event_log().range(0, u64::MAX).unwrap(), expected);
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
    let before = receiver.event_log().range(0, u64::MAX).unwrap();
    for damaged in [bytes[..bytes.len() - 3].to_vec(), bytes[..bytes.len() / 2].to_vec()] {
        let mut incoming = receiver.begin_receiving_snapshot().await.unwrap();
        incoming.write_all(&damaged).await.unwrap();
        incoming.shutdown().await.unwrap();
        assert!(receiver.install_snapshot(&built.meta, incoming).await.is_err());
        assert_eq!(receiver.event_log().range(0, u64::MAX).unwrap(), before, "old state kept");
    }
}
