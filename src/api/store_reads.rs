//! Reads of the event store for requests: on tokio's blocking pool, a few
//! at a time.
//!
//! Each read holds a blocking-pool thread while it runs, and that pool
//! grows to 512 threads. Six hundred `GET /events` readers starting at once
//! made a node start hundreds of threads, each with its own allocator heap
//! (hundreds of MiB of RSS), while their reading and encoding took the
//! cores from the Raft tasks (late heartbeats, then elections). Through
//! [`StoreReads`], at most [`STORE_READS_AT_ONCE`] reads run at once; the
//! others wait their turn, holding no thread.

use std::io;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Reads of the event store that run at once, node-wide.
pub const STORE_READS_AT_ONCE: usize = 4;

/// The node's turns at reading its event store for requests.
#[derive(Debug, Clone)]
pub struct StoreReads {
    turns: Arc<Semaphore>,
}

impl Default for StoreReads {
    fn default() -> Self {
        Self { turns: Arc::new(Semaphore::new(STORE_READS_AT_ONCE)) }
    }
}

impl StoreReads {
    /// Runs `read` on the blocking pool once a turn is free.
    pub async fn run<T, F>(&self, read: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        // The semaphore is never closed, so `acquire` does not fail.
        let _turn = self.turns.acquire().await.map_err(io::Error::other)?;
        tokio::task::spawn_blocking(read).await.map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_allowed_reads_run_at_once() {
        let reads = StoreReads::default();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for n in 0..40 {
            let (reads, running, most) = (reads.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                reads
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // The read's own duration, so that reads overlap.
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(n)
                    })
                    .await
            }));
        }
        for (n, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.expect("task").expect("read"), n);
        }
        let most = most.load(Ordering::SeqCst);
        assert!((2..=STORE_READS_AT_ONCE).contains(&most), "{most} reads ran at once");
    }
}
