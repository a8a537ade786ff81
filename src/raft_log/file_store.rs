//! The durable Raft log: checksummed records in append-only segment files,
//! plus the vote and the purge mark in small files replaced atomically.
//!
//! ```text
//! raft-log/
//!   vote.json                       replaced atomically (tmp, fsync, rename, fsync dir)
//!   purged.json                     last purged log id, same
//!   00000000000000000001.seg        records for entries 1, 2, 3, ...
//!   00000000000000052311.seg        next segment, named by its first index
//! ```
//!
//! Durability: `append` writes the batch and `fdatasync`s it before telling
//! OpenRaft the entries are flushed; `save_vote` returns once the vote file
//! is renamed into place and the directory is synced; `truncate` cuts and
//! syncs before any later append can land at the same place; `purge` waits
//! until the state machine holds the entries it drops durably
//! ([`FileLogStore::with_purge_limit`], `watermark.rs`), then records the
//! purge mark before deleting a segment. Any I/O error is returned to
//! OpenRaft, which stops the node (a node that cannot persist must not keep
//! acknowledging), and every later call fails too.
//!
//! Recovery (`open`): every segment is scanned. A bad record in the last
//! segment with no valid record after it is a torn write from a crash (it
//! was never acknowledged, because the fsync had not returned) and is cut
//! off. A bad record followed by a valid one, a bad record in any other
//! segment, or entries out of order, is corruption of fsynced data: the node
//! refuses to start, naming the file and offset.
//!
//! Only the positions of retained entries are kept in memory (a few thousand
//! between snapshots); entries are read back from the segment files.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::Mutex;

use super::watermark::PurgeLimit;
use crate::disk::format::{decode_log_entry, encode_log_entry, PURGED_FILE, SEGMENT_EXT, VOTE_FILE};
use crate::disk::{atomic_write, io_threads, read_json, record, sync_dir, ByteFile, DataDirError};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// A new segment is started once the active one passes this size.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Longest a purge waits for the state machine to make the entries it drops
/// durable (see `watermark.rs`). Only an install that hangs reaches it: one
/// that fails, or a state machine that stops, ends the wait at once.
const PURGE_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// Where one retained entry lives.
#[derive(Debug, Clone)]
struct EntryPos {
    log_id: LogId,
    /// First index of the segment holding it (the segment's key).
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct LogFiles {
    dir: PathBuf,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    /// Segment files by first index; the last one is appended to.
    segments: BTreeMap<u64, Arc<ByteFile>>,
    /// Retained entries (index > last_purged), contiguous.
    entries: VecDeque<EntryPos>,
    /// Set by the first failed write: from then on every call fails.
    failed: Option<String>,
    segment_bytes: u64,
}

/// The Raft log and vote on disk. Cloning shares the same files (the clone
/// is the log reader OpenRaft hands to replication tasks).
#[derive(Debug, Clone)]
pub struct FileLogStore {
    files: Arc<Mutex<LogFiles>>,
    /// When set, `purge` first waits until the state machine holds the
    /// entries it drops durably.
    purge_limit: Option<PurgeLimit>,
    purge_wait: Duration,
}

impl FileLogStore {
    /// Opens the log in `dir` (created if absent), cutting a torn tail.
    pub fn open(dir: &Path) -> Result<Self, DataDirError> {
        Self::open_with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// [`FileLogStore::open`] with another segment size (tests use small
    /// segments to exercise rotation).
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<Self, DataDirError> {
        fs::create_dir_all(dir).map_err(|e| DataDirError::write(dir, e))?;
        let vote = read_json(&dir.join(VOTE_FILE))?;
        let last_purged: Option<LogId> = read_json(&dir.join(PURGED_FILE))?;
        let purged_index = last_purged.map(|id| id.index);

        let mut segment_keys = Vec::new();
        for dirent in fs::read_dir(dir).map_err(|e| DataDirError::unreadable(dir, e))? {
            let path = dirent.map_err(|e| DataDirError::unreadable(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == SEGMENT_EXT) {
                let first = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .and_then(|stem| stem.parse::<u64>().ok())
                    .ok_or_else(|| {
                    DataDirError::corrupt(dir, format!("unexpected segment name {}", path.display()))
                })?;
                segment_keys.push(first);
            } else if path.extension().is_some_and(|ext| ext == "tmp") {
                // An atomic_write that crashed before its rename.
                fs::remove_file(&path).map_err(|e| DataDirError::write(&path, e))?;
            }
        }
        segment_keys.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut entries: VecDeque<EntryPos> = VecDeque::new();
        let last_key = segment_keys.last().copied();
        for first in segment_keys {
            let path = segment_path(dir, first);
            let file = ByteFile::open(&path).map_err(|e| DataDirError::unreadable(&path, e))?;
            let mut found: Vec<(u64, LogId)> = Vec::new();
            let end = record::scan(file.reader_at(0), 0, |offset, payload| {
                found.push((offset, decode_log_entry(payload)?.log_id));
                Ok::<(), io::Error>(())
            })
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => DataDirError::corrupt(&path, e.to_string()),
                _ => DataDirError::unreadable(&path, e),
            })?;
            for (expected, (offset, log_id)) in (first..).zip(found) {
                if log_id.index != expected {
                    return Err(DataDirError::corrupt(
                        &path,
                        format!("entry {} found where entry {expected} belongs", log_id.index),
                    ));
                }
                if purged_index.is_some_and(|purged| log_id.index <= purged) {
                    continue;
                }
                if let Some(prev) = entries.back() {
                    if prev.log_id.index + 1 != log_id.index {
                        return Err(DataDirError::corrupt(
                            &path,
                            format!("log jumps from entry {} to {}", prev.log_id.index, log_id.index),
                        ));
                    }
                }
                entries.push_back(EntryPos { log_id, segment: first, offset });
            }
            if let Some(bad) = end.bad {
                if Some(first) != last_key {
                    return Err(DataDirError::corrupt(&path, format!("{bad} at offset {}", end.clean_len)));
                }
                let last_index = entries.back().map(|pos| pos.log_id.index).or(purged_index);
                refuse_if_not_torn(&file, &path, end.clean_len, &bad, last_index)?;
                tracing::warn!(path = %path.display(), at = end.clean_len, %bad, "cutting a torn write at the end of the log");
                file.truncate(end.clean_len).map_err(|e| DataDirError::write(&path, e))?;
            }
            segments.insert(first, Arc::new(file));
        }

        let mut files =
            LogFiles { dir: dir.to_path_buf(), vote, last_purged, segments, entries, failed: None, segment_bytes };
        files.delete_purged_segments().map_err(|e| DataDirError::write(dir, e))?;
        Ok(Self { files: Arc::new(Mutex::new(files)), purge_limit: None, purge_wait: PURGE_WAIT_LIMIT })
    }

    /// Makes every later `purge` wait until the state machine behind `limit`
    /// holds the entries it drops durably. Refuses a log that is already
    /// purged past that point: the entries in between are gone for good.
    pub async fn with_purge_limit(mut self, limit: PurgeLimit) -> Result<Self, DataDirError> {
        {
            let files = self.files.lock().await;
            if let Some(purged) = files.last_purged.map(|id| id.index) {
                if limit.durable() < Some(purged) {
                    return Err(DataDirError::PurgedPastApplied {
                        path: files.dir.clone(),
                        purged,
                        applied: limit
                            .durable()
                            .map_or("no entry".to_string(), |index| format!("entries up to {index}")),
                    });
                }
            }
        }
        self.purge_limit = Some(limit);
        Ok(self)
    }

    /// Sets how long a purge waits for the state machine (tests shorten it).
    pub fn with_purge_wait(mut self, wait: Duration) -> Self {
        self.purge_wait = wait;
        self
    }
}

impl LogFiles {
    #[allow(clippy::result_large_err)] // the error type of every OpenRaft storage call
    fn check_healthy(&self) -> Result<(), StorageError> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(io_error(
                ErrorSubject::Logs,
                ErrorVerb::Write,
                io::Error::other(format!("log store failed earlier: {reason}")),
            )),
        }
    }

    /// Records a write failure: logs it once, loudly, and fails from now on.
    fn fail(&mut self, subject: ErrorSubject<u64>, verb: ErrorVerb, err: io::Error) -> StorageError {
        tracing::error!(dir = %self.dir.display(), %err, "log storage write failed; this node stops (it must not acknowledge what it cannot persist)");
        self.failed = Some(err.to_string());
        io_error(subject, verb, err)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|pos| pos.log_id).or(self.last_purged)
    }

    fn position(&self, index: u64) -> Option<&EntryPos> {
        let first = self.entries.front()?.log_id.index;
        self.entries.get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    /// Deletes segments holding only purged entries. The active (last)
    /// segment stays unless the log holds nothing after the purge mark.
    fn delete_purged_segments(&mut self) -> io::Result<()> {
        let Some(purged) = self.last_purged.map(|id| id.index) else { return Ok(()) };
        let keys: Vec<u64> = self.segments.keys().copied().collect();
        let mut deleted = false;
        for (i, &key) in keys.iter().enumerate() {
            let all_purged = match keys.get(i + 1) {
                Some(&next) => next - 1 <= purged,
                None => self.entries.is_empty(),
            };
            if all_purged {
                self.segments.remove(&key);
                remove_if_exists(&segment_path(&self.dir, key))?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The segment to append entries starting at `index` to, creating one if
    /// there is none, the active one is full, or `index` does not follow it.
    fn segment_for_append(&mut self, index: u64, follows_last: bool) -> io::Result<(u64, Arc<ByteFile>)> {
        if let Some((&key, file)) = self.segments.iter().next_back() {
            if follows_last && file.len()? < self.segment_bytes {
                return Ok((key, file.clone()));
            }
        }
        let path = segment_path(&self.dir, index);
        let file = Arc::new(ByteFile::open(&path)?);
        if !file.is_empty()? {
            // Left over from a truncation that removed every entry it held.
            file.truncate(0)?;
        }
        sync_dir(&self.dir)?;
        self.segments.insert(index, file.clone());
        Ok((index, file))
    }

    fn read_entry(&self, pos: &EntryPos) -> io::Result<Entry> {
        let file = self.segments.get(&pos.segment).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("segment {} of entry {} is gone", pos.segment, pos.log_id))
        })?;
        let payload = record::read_at(file, pos.offset)?;
        decode_log_entry(&payload)
    }
}

impl RaftLogReader<TypeConfig> for FileLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let files = self.files.lock().await;
        let Some(first) = files.entries.front().map(|pos| pos.log_id.index) else { return Ok(Vec::new()) };
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let mut out = Vec::new();
        let mut index = start;
        while range.contains(&index) {
            let Some(pos) = files.position(index) else { break };
            let entry =
                files.read_entry(pos).map_err(|e| io_error(ErrorSubject::Log(pos.log_id), ErrorVerb::Read, e))?;
            out.push(entry);
            index += 1;
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for FileLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let files = self.files.lock().await;
        Ok(LogState { last_purged_log_id: files.last_purged, last_log_id: files.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut files = self.files.lock().await;
        files.check_healthy()?;
        let bytes = serde_json::to_vec(vote)
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, io::Error::other(e)))?;
        let path = files.dir.join(VOTE_FILE);
        let written = io_threads::run(move || atomic_write(&path, &bytes)).await;
        match written.and_then(|result| result) {
            Ok(()) => {
                files.vote = Some(*vote);
                Ok(())
            }
            Err(err) => Err(files.fail(ErrorSubject::Vote, ErrorVerb::Write, err)),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.files.lock().await.vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut files = self.files.lock().await;
        files.check_healthy()?;
        let mut entries = entries.into_iter().peekable();
        let Some(first_index) = entries.peek().map(|entry| entry.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let follows_last = files.entries.back().is_some_and(|last| last.log_id.index + 1 == first_index);
        let (segment, file) = match files.segment_for_append(first_index, follows_last) {
            Ok(found) => found,
            Err(err) => return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Write, err)),
        };
        let base = match file.len() {
            Ok(len) => len,
            Err(err) => return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Write, err)),
        };

        let mut buf = Vec::new();
        let mut positions = Vec::new();
        for entry in entries {
            positions.push(EntryPos { log_id: entry.log_id, segment, offset: base + buf.len() as u64 });
            if let Err(err) = record::encode(&mut buf, &encode_log_entry(entry)) {
                return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Write, io::Error::other(err)));
            }
        }
        let written = io_threads::run(move || {
            file.append(&buf)?;
            file.sync()
        })
        .await;
        match written.and_then(|result| result) {
            Ok(()) => {
                files.entries.extend(positions);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(err) => Err(files.fail(ErrorSubject::Logs, ErrorVerb::Write, err)),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut files = self.files.lock().await;
        files.check_healthy()?;
        let Some(pos) = files.position(log_id.index).cloned() else { return Ok(()) };
        let cut = || -> io::Result<()> {
            // Later segments go first, newest first, so a crash part-way
            // leaves a log that is a prefix of the one before.
            let later: Vec<u64> = files.segments.range(pos.segment + 1..).map(|(&key, _)| key).rev().collect();
            for key in later {
                remove_if_exists(&segment_path(&files.dir, key))?;
            }
            if let Some(file) = files.segments.get(&pos.segment) {
                file.truncate(pos.offset)?;
            }
            sync_dir(&files.dir)
        };
        if let Err(err) = cut() {
            return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Delete, err));
        }
        files.segments.retain(|&key, _| key <= pos.segment);
        let keep = usize::try_from(log_id.index - files.entries.front().map_or(0, |p| p.log_id.index)).unwrap_or(0);
        files.entries.truncate(keep);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if let Some(limit) = &self.purge_limit {
            // Before taking the lock: readers need not wait with us.
            if limit.durable() < Some(log_id.index) {
                tracing::info!(upto = %log_id, durable = ?limit.durable(), "purge waits for the state machine to hold these entries durably");
            }
            if let Err(err) = limit.wait_for(log_id.index, self.purge_wait).await {
                tracing::error!(upto = %log_id, %err, "cannot purge the log; this node stops");
                return Err(io_error(ErrorSubject::Logs, ErrorVerb::Delete, io::Error::other(err)));
            }
        }
        let mut files = self.files.lock().await;
        files.check_healthy()?;
        let path = files.dir.join(PURGED_FILE);
        let bytes = serde_json::to_vec(&log_id)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, io::Error::other(e)))?;
        if let Err(err) = atomic_write(&path, &bytes) {
            return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Delete, err));
        }
        files.last_purged = Some(log_id);
        while files.entries.front().is_some_and(|pos| pos.log_id.index <= log_id.index) {
            files.entries.pop_front();
        }
        if let Err(err) = files.delete_purged_segments() {
            return Err(files.fail(ErrorSubject::Logs, ErrorVerb::Delete, err));
        }
        Ok(())
    }
}

/// Refuses a bad record at `bad_at` in the last segment unless it is a torn
/// write. A crash can damage only the end of the last unsynced batch: a
/// whole, valid record after the bad one (an entry later than `last_index`,
/// the last good one) means the damage is in data written before it, which
/// was fsynced and acknowledged, so cutting there would drop acknowledged
/// entries. Such a segment is left as it is.
///
/// One crash could look the same: a batch whose pages reached the disk out
/// of order before its fsync returned. Refusing it costs the operator a
/// node replacement, never an acknowledged entry.
fn refuse_if_not_torn(
    file: &ByteFile,
    path: &Path,
    bad_at: u64,
    bad: &record::BadRecord,
    last_index: Option<u64>,
) -> Result<(), DataDirError> {
    let len = file.len().map_err(|e| DataDirError::unreadable(path, e))?;
    let tail_len =
        usize::try_from(len.saturating_sub(bad_at)).map_err(|e| DataDirError::unreadable(path, io::Error::other(e)))?;
    let mut tail = vec![0; tail_len];
    file.read_exact_at(&mut tail, bad_at).map_err(|e| DataDirError::unreadable(path, e))?;
    let mut later = None;
    let found = record::find_valid_record(&tail, 1, |payload| match decode_log_entry(payload) {
        Ok(entry) if last_index.is_none_or(|last| entry.log_id.index > last) => {
            later = Some(entry.log_id.index);
            true
        }
        _ => false,
    });
    match (found, later) {
        (Some(offset), Some(index)) => Err(DataDirError::corrupt(
            path,
            format!(
                "{bad} at offset {bad_at}, yet a valid record (entry {index}) follows at offset {}: \
                 entries that were already fsynced are damaged, this is not a write torn by a crash",
                bad_at + offset as u64
            ),
        )),
        _ => Ok(()),
    }
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:020}.{SEGMENT_EXT}"))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, err: io::Error) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(&err)).into()
}
