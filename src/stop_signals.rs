//! SIGTERM and SIGINT (Ctrl-C), the signals that stop `serve` and `cluster`
//! gracefully.
//!
//! A command listens for them from its first moment: a process that has not
//! yet asked for a signal dies of it (the default action), with no graceful
//! stop, and one that starts children leaves them running.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Starts listening; signals received from now on are kept until
    /// [`StopSignals::received`] is awaited.
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Waits for either signal; returns its name.
    pub async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
