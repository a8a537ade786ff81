//! Crash recovery of the log store: the segment files are cut at every byte
//! offset (what a crash part-way through a write leaves) and reopened.
//!
//! What must hold at every cut: the store reopens (a torn tail is not an
//! error), it holds exactly the entries whose records lie wholly before the
//! cut, in order, with their contents, so every entry acknowledged before
//! the write that was cut is there; and the next append lands where the
//! torn record was, readable after another reopen.

use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use super::FileLogStore;
use crate::disk::DataDirError;
use crate::event::CriticalEvent;
use crate::types::{Entry, EventBatch, LogId, Vote};

fn entry(index: u64) -> Entry {
    let event = CriticalEvent::PlayerJoin { player_id: index, name: "p".repeat(index as usize % 13), timestamp: index };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(EventBatch::single(event)),
    }
}

async fn read_all(store: &mut FileLogStore) -> Vec<Entry> {
    store.try_get_log_entries(..).await.expect("read entries")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for dirent in std::fs::read_dir(from).unwrap() {
        let dirent = dirent.unwrap();
        std::fs::copy(dirent.path(), to.join(dirent.file_name())).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_log_cut_at_any_offset_reopens_to_exactly_its_whole_records() {
    let original = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (1..=12).map(entry).collect();
    // Acknowledged batches of 1, 2 and 3 entries; remember each one's end.
    let mut acked_ends = Vec::new();
    {
        let mut store = FileLogStore::open(original.path()).unwrap();
        store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        let mut next = 0;
        for size in [1, 2, 3, 1, 2, 3] {
            store.blocking_append(entries[next..next + size].to_vec()).await.unwrap();
            next += size;
            acked_ends.push((std::fs::metadata(&segments(original.path())[0]).unwrap().len(), next));
        }
    }
    let segment = segments(original.path()).pop().unwrap();
    let full_len = std::fs::metadata(&segment).unwrap().len();

    let scratch = tempfile::tempdir().unwrap();
    for cut in 0..=full_len {
        let dir = scratch.path().join(format!("cut-{cut}"));
        copy_dir(original.path(), &dir);
        let cut_segment = dir.join(segment.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&cut_segment).unwrap().set_len(cut).unwrap();

        let mut store = FileLogStore::open(&dir).unwrap_or_else(|e| panic!("cut at {cut}: refused: {e}"));
        let recovered = read_all(&mut store).await;
        let acked = acked_ends.iter().filter(|(end, _)| *end <= cut).map(|(_, n)| *n).max().unwrap_or(0);
        assert!(recovered.len() >= acked, "cut at {cut}: lost acknowledged entries ({} < {acked})", recovered.len());
        assert_eq!(recovered, entries[..recovered.len()], "cut at {cut}: not a clean prefix");
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new_committed(1, 1)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), recovered.last().map(|e| e.log_id.index));

        // The torn bytes are gone: a new append is readable after a reopen.
        let next = entry(recovered.len() as u64 + 1);
        store.blocking_append([next.clone()]).await.unwrap();
        drop(store);
        let mut reopened = FileLogStore::open(&dir).unwrap();
        let again = read_all(&mut reopened).await;
        assert_eq!(again.len(), recovered.len() + 1, "cut at {cut}");
        assert_eq!(again.last(), Some(&next), "cut at {cut}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn truncate_and_purge_survive_a_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Tiny segments: about two entries each.
        let mut store = FileLogStore::open_with_segment_bytes(dir.path(), 100).unwrap();
        for index in 1..=20 {
            store.blocking_append([entry(index)]).await.unwrap();
        }
        assert!(segments(dir.path()).len() > 5, "rotation makes several segments");
        store.truncate(LogId::new(CommittedLeaderId::new(1, 1), 15)).await.unwrap();
        store.purge(LogId::new(CommittedLeaderId::new(1, 1), 6)).await.unwrap();
    }
    let mut store = FileLogStore::open_with_segment_bytes(dir.path(), 100).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(6));
    assert_eq!(state.last_log_id.map(|id| id.index), Some(14));
    let held: Vec<u64> = read_all(&mut store).await.iter().map(|e| e.log_id.index).collect();
    assert_eq!(held, (7..=14).collect::<Vec<_>>());
    // Appending after the truncation point continues the log.
    store.blocking_append([entry(15)]).await.unwrap();

    // Purging past the end leaves an empty log that starts after the mark.
    store.purge(LogId::new(CommittedLeaderId::new(1, 1), 30)).await.unwrap();
    store.blocking_append([entry(31)]).await.unwrap();
    drop(store);
    let mut store = FileLogStore::open_with_segment_bytes(dir.path(), 100).unwrap();
    let held: Vec<u64> = read_all(&mut store).await.iter().map(|e| e.log_id.index).collect();
    assert_eq!(held, vec![31]);
}

#[tokio::test]
async fn damage_before_the_last_segment_is_refused_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = FileLogStore::open_with_segment_bytes(dir.path(), 100).unwrap();
        for index in 1..=10 {
            store.blocking_append([entry(index)]).await.unwrap();
        }
    }
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    let err = FileLogStore::open_with_segment_bytes(dir.path(), 100).unwrap_err();
    assert!(matches!(err, DataDirError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("00000000000000000001.seg is corrupt"), "{err}");
}

/// Damage in the middle of the last segment, with whole records after it,
/// is not a torn write: those later records were written (and fsynced)
/// after the damaged one, so cutting there would drop acknowledged entries.
#[tokio::test]
async fn damage_followed_by_valid_records_in_the_last_segment_is_refused_not_cut() {
    let original = tempfile::tempdir().unwrap();
    let mut record_starts = Vec::new();
    {
        let mut store = FileLogStore::open(original.path()).unwrap();
        for index in 1..=9 {
            record_starts.push(std::fs::metadata(original.path().join(SEGMENT)).map_or(0, |m| m.len()));
            store.blocking_append([entry(index)]).await.unwrap();
        }
    }
    let fifth = record_starts[4];
    // A flipped payload byte, and a damaged length field (which hides where
    // the next record starts).
    for (what, damage_at) in [("payload byte", fifth + 12), ("length field", fifth + 3)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join(SEGMENT);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[damage_at as usize] ^= 0x5a;
        std::fs::write(&segment, bytes).unwrap();

        let err = FileLogStore::open(dir.path()).expect_err(&format!("damaged {what}: opened by cutting entries 5..9"));
        assert!(matches!(err, DataDirError::Corrupt { .. }), "{what}: {err}");
        let message = err.to_string();
        assert!(message.contains(&format!("{SEGMENT} is corrupt")), "{what}: {message}");
        assert!(message.contains(&format!("offset {fifth}")), "{what}: {message}");
        assert!(message.contains(&format!("offset {}", record_starts[5])), "{what}: {message}");
        let kept = std::fs::metadata(&segment).unwrap().len();
        assert!(kept > record_starts[8], "{what}: the refused segment must be left as it was");
    }
}

const SEGMENT: &str = "00000000000000000001.seg";
