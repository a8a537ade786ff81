//! How far the state machine is durable, shared with the log store so that a
//! purge never drops an entry the state machine could still need.
//!
//! OpenRaft 0.9.25 purges the log on its own schedule: after a snapshot is
//! built, and on a follower that receives a snapshot, right after it queues
//! the install to the state machine's task, without waiting for it
//! (`following_handler::install_full_snapshot`). Had the purge gone through
//! while the install was still running, a crash, or an install that fails,
//! would leave the log purged past everything the state machine holds, and
//! the node could never start again.
//!
//! So the state machine publishes a [`DurableWatermark`]: the index of the
//! last entry whose effect is on its disk for good. It moves when the state
//! machine opens (after syncing what it recovered), when a snapshot is built
//! (after the event file and `snapshot.json` are fsynced) and when a received
//! snapshot is installed (once the new generation is the one `CURRENT`
//! names). Applied entries do not move it: they are not fsynced one by one,
//! and the log must keep them until a snapshot covers them. OpenRaft only
//! purges entries a snapshot covers, so outside an install the watermark is
//! already there when a purge comes.
//!
//! The log store holds a [`PurgeLimit`] and waits in `purge` until the
//! watermark reaches the purge point. Waiting is the simple choice that is
//! correct: `purge` is awaited inside OpenRaft's core, so nothing else is
//! written to the log meanwhile (a purge that skipped ahead and finished
//! later could leave a hole between the kept entries and the next append);
//! the install runs in the state machine's own task, which never waits on
//! the core, so the wait always ends. The core does nothing else while it
//! waits (it answers no RPC), for as long as the install takes. If the state
//! machine fails or goes away, the wait ends at once with an error; a bound
//! covers an install that hangs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// What the state machine has made durable, and whether it has stopped.
#[derive(Debug, Clone, Default)]
struct Mark {
    /// Index of the last log entry whose effect is durable; `None` before any.
    durable: Option<u64>,
    /// Set when the state machine hit an error it does not recover from.
    stopped: Option<String>,
}

/// The state machine's side: moves the watermark forward.
#[derive(Debug, Clone)]
pub struct DurableWatermark {
    tx: Arc<watch::Sender<Mark>>,
}

/// The log store's side: how far it may purge.
#[derive(Debug, Clone)]
pub struct PurgeLimit {
    rx: watch::Receiver<Mark>,
}

/// Why a purge could not wait for the state machine.
#[derive(Debug, thiserror::Error)]
pub enum PurgeWaitError {
    #[error(
        "the state machine has made entries durable only up to {durable:?}, not {wanted}, after {waited:?}; \
         the log is kept"
    )]
    TimedOut { wanted: u64, durable: Option<u64>, waited: Duration },
    #[error("the state machine stopped before making entry {wanted} durable ({reason}); the log is kept")]
    Stopped { wanted: u64, reason: String },
}

impl DurableWatermark {
    /// A watermark at `durable`: what the state machine holds on disk now.
    pub fn new(durable: Option<u64>) -> Self {
        Self { tx: Arc::new(watch::Sender::new(Mark { durable, stopped: None })) }
    }

    /// Entries up to `index` are durable in the state machine. Never moves
    /// back: OpenRaft installs only snapshots past what is applied.
    pub fn advance(&self, index: Option<u64>) {
        self.tx.send_if_modified(|mark| {
            let moved = index > mark.durable;
            if moved {
                mark.durable = index;
            }
            moved
        });
    }

    /// The state machine failed and will not advance again: a purge waiting
    /// for it gives up now instead of at its bound.
    pub fn stop(&self, reason: impl ToString) {
        self.tx.send_if_modified(|mark| {
            let first = mark.stopped.is_none();
            if first {
                mark.stopped = Some(reason.to_string());
            }
            first
        });
    }

    pub fn durable(&self) -> Option<u64> {
        self.tx.borrow().durable
    }

    pub fn purge_limit(&self) -> PurgeLimit {
        PurgeLimit { rx: self.tx.subscribe() }
    }
}

impl PurgeLimit {
    pub fn durable(&self) -> Option<u64> {
        self.rx.borrow().durable
    }

    /// Waits until entries up to `wanted` are durable in the state machine,
    /// at most `limit`.
    pub async fn wait_for(&self, wanted: u64, limit: Duration) -> Result<(), PurgeWaitError> {
        let mut rx = self.rx.clone();
        let reached = rx.wait_for(|mark| mark.durable >= Some(wanted) || mark.stopped.is_some());
        let stopped = match tokio::time::timeout(limit, reached).await {
            Err(_elapsed) => {
                return Err(PurgeWaitError::TimedOut { wanted, durable: self.durable(), waited: limit });
            }
            Ok(Err(_closed)) => Some("it was dropped".to_string()),
            Ok(Ok(mark)) if mark.durable >= Some(wanted) => None,
            Ok(Ok(mark)) => mark.stopped.clone(),
        };
        match stopped {
            None => Ok(()),
            Some(reason) => Err(PurgeWaitError::Stopped { wanted, reason }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_wait_ends_when_the_watermark_reaches_it_and_never_moves_back() {
        let watermark = DurableWatermark::new(Some(4));
        let limit = watermark.purge_limit();
        limit.wait_for(4, LONG).await.expect("already there");
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.wait_for(25, LONG).await }
        });
        watermark.advance(Some(10));
        watermark.advance(Some(25));
        waiting.await.unwrap().expect("reached");
        watermark.advance(Some(7));
        assert_eq!(limit.durable(), Some(25), "never moves back");
    }

    #[tokio::test]
    async fn a_wait_fails_at_once_when_the_state_machine_stops_or_goes_away() {
        let watermark = DurableWatermark::new(None);
        let limit = watermark.purge_limit();
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.wait_for(25, LONG).await }
        });
        watermark.stop("cannot install the received snapshot: disk full");
        let err = waiting.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");

        let dropped = DurableWatermark::new(None);
        let limit = dropped.purge_limit();
        drop(dropped);
        assert!(matches!(limit.wait_for(1, LONG).await, Err(PurgeWaitError::Stopped { .. })));
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let watermark = DurableWatermark::new(Some(3));
        let err = watermark.purge_limit().wait_for(4, Duration::from_millis(20)).await.unwrap_err();
        assert!(matches!(err, PurgeWaitError::TimedOut { wanted: 4, durable: Some(3), .. }), "{err}");
    }
}
