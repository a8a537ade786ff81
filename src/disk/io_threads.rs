//! Threads of gameraft's own for the I/O that durability waits on: the Raft
//! log's appends and vote, and the event file's syncs.
//!
//! Tokio's blocking pool is shared with request handlers (page reads, for
//! one); were the log's fsync queued behind them, enough clients could stop
//! every write. These threads run nothing else, so no client can keep the
//! log from writing. Jobs run in the order they are given.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// How many threads: log appends are serialized by the log store anyway;
/// a second thread lets an event-file sync run beside an append.
const THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Mutex<Sender<Job>>,
}

fn pool() -> io::Result<&'static Pool> {
    static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();
    POOL.get_or_init(start).as_ref().map_err(|reason| io::Error::other(reason.clone()))
}

fn start() -> Result<Pool, String> {
    let (jobs, queue) = channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..THREADS {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("gameraft-io-{n}"))
            .spawn(move || work(&queue))
            .map_err(|err| format!("cannot start the I/O threads: {err}"))?;
    }
    Ok(Pool { jobs: Mutex::new(jobs) })
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match crate::locks::lock(queue).recv() {
            Ok(job) => job,
            Err(_) => return, // the pool is gone (process exit)
        };
        // A panicking job loses its answer (its caller gets an error), not
        // the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

/// Runs `job` on an I/O thread and waits for its result without blocking
/// the async runtime.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let (answer, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = answer.send(job());
    });
    crate::locks::lock(&pool()?.jobs).send(job).map_err(|_| io::Error::other("the I/O threads have stopped"))?;
    result.await.map_err(|_| io::Error::other("an I/O job panicked"))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_on_the_io_threads_and_a_panic_is_an_error_not_a_lost_thread() {
        let name = super::run(|| std::thread::current().name().map(str::to_string)).await.expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("gameraft-io-")));
        let panicked = super::run(|| panic!("a failing job")).await;
        assert!(panicked.is_err());
        for n in 0..(super::THREADS * 2) {
            assert_eq!(super::run(move || n * 2).await.expect("threads still serve"), n * 2);
        }
    }
}
