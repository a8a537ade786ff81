//! Background flushing of the event files, so that no fsync has much to do.
//!
//! Applied events are written to `events.dat` without an fsync: the Raft log
//! already holds them durably, and a snapshot syncs the files before it is
//! recorded. Left alone, though, the kernel keeps those pages dirty for up to
//! 30 s and then writes them out in one burst, and ext4 (data=ordered) makes
//! the next journal commit wait for that burst: the Raft log's own
//! `fdatasync`, on the write path, was seen taking over 100 ms at such
//! moments. Syncing the event files every few MiB, off the write path,
//! keeps each burst small.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::event_store::Generation;

/// Bytes of `events.dat` between two background syncs.
const SYNC_EVERY_BYTES: u64 = 1 << 20;

/// Starts a background sync of the live generation every
/// [`SYNC_EVERY_BYTES`]; at most one runs at a time.
#[derive(Debug, Default)]
pub struct Writeback {
    /// `events.dat` length when the last background sync started.
    synced_from: u64,
    running: Arc<AtomicBool>,
}

impl Writeback {
    /// Called after each apply with the generation's new `events.dat` length;
    /// true if it started a background sync.
    pub fn applied(&mut self, generation: &Arc<Generation>, dat_len: u64) -> bool {
        if generation.dir.is_none() {
            return false;
        }
        if dat_len < self.synced_from {
            // A snapshot install replaced the generation.
            self.synced_from = dat_len;
        }
        if dat_len - self.synced_from < SYNC_EVERY_BYTES || self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.synced_from = dat_len;
        let generation = generation.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            // Only a hint: nothing waits for it and durability does not
            // depend on it (see the module comment); a disk that fails here
            // fails the next log append or snapshot too, and that stops the
            // node.
            let synced = crate::disk::io_threads::run(move || generation.sync()).await.and_then(|r| r);
            if let Err(err) = synced {
                tracing::warn!(%err, "background sync of the event files failed");
            }
            running.store(false, Ordering::Release);
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    async fn settled(writeback: &Writeback) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while writeback.running.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the background sync never finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_sync_starts_every_step_of_applied_bytes_one_at_a_time_and_restarts_after_an_install() {
        let dir = tempfile::tempdir().expect("temp dir");
        let generation = Arc::new(Generation::open(dir.path()).expect("generation"));
        let mut writeback = Writeback::default();
        assert!(!writeback.applied(&generation, SYNC_EVERY_BYTES - 1), "too early");
        assert!(writeback.applied(&generation, SYNC_EVERY_BYTES), "one step applied");
        settled(&writeback).await;
        // As if a sync were still running: none starts beside it.
        writeback.running.store(true, Ordering::Release);
        assert!(!writeback.applied(&generation, 3 * SYNC_EVERY_BYTES), "one sync at a time");
        writeback.running.store(false, Ordering::Release);
        assert!(writeback.applied(&generation, 3 * SYNC_EVERY_BYTES), "a step since the last start");
        settled(&writeback).await;
        assert!(!writeback.applied(&generation, 3 * SYNC_EVERY_BYTES + 1), "counted from the last start");
        // A smaller file is a new generation (a snapshot was installed).
        assert!(!writeback.applied(&generation, 10));
        assert!(writeback.applied(&generation, 10 + SYNC_EVERY_BYTES));
        settled(&writeback).await;
        let memory = Arc::new(Generation::memory());
        assert!(!Writeback::default().applied(&memory, 10 * SYNC_EVERY_BYTES), "nothing to sync in memory");
    }
}
