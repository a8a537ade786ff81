//! The HTTP listener's accept loop, with the bounds `axum::serve` lacks,
//! and HTTPS when the node has a certificate for it. HTTP/1.1 only (what
//! every client of the API speaks; forwards between nodes go to the Raft
//! port): HTTP/2's protocol detection would wait on a silent connection
//! with no timeout.
//!
//! - At most `--max-connections` connections are open at once; past it the
//!   loop stops accepting, and new connections wait in the kernel's backlog
//!   instead of taking file descriptors the Raft log needs.
//! - A connection must send a request's headers within `--read-timeout-ms`,
//!   idle between requests included, or it is closed: a slow or silent
//!   client cannot keep its slot. The body has the same bound (a layer of
//!   the router, `api::router`). With HTTPS, the TLS handshake has the same
//!   bound.
//! - A connection on which nothing could be written for
//!   `--stalled-reader-timeout-ms` (its client stopped reading) is reset
//!   (`StallGuard`): neither its slot nor what was queued for it is held
//!   any longer.
//! - hyper buffers at most [`CONNECTION_BUFFER_BYTES`] each way: a
//!   request's headers must fit (else 431), and a response is taken from its
//!   handler only while less than that is queued for the socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// hyper's buffer limit per connection, for reading a request and for
/// queueing a response (its minimum is 8 KiB, its default about 400 KiB).
pub const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

/// How long a graceful stop lets open requests finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the
/// next, so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The bounds of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// A connection that could not be written to for this long is reset.
    pub write_stall_timeout: Duration,
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop`, then lets
/// open requests finish (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER_BYTES);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed; stop if it were
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // One write's answer leaves as several segments: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stream = StallGuard { stream, limit: limits.write_stall_timeout, stalled: None };
        let Some(acceptor) = acceptor.clone() else {
            let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(%err, "HTTP connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        let (watcher, builder) = (graceful.watcher(), builder.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    if let Err(err) = watcher.watch(builder.serve_connection(TokioIo::new(tls), service)).await {
                        tracing::debug!(%err, "HTTPS connection ended with an error");
                    }
                }
                Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
                Err(_elapsed) => tracing::debug!("no TLS handshake within the read timeout"),
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP requests still open after {DRAIN_LIMIT:?}; closing them");
    }
    Ok(())
}

/// A client connection whose writes may not stall forever. While a write
/// finds no room in the socket (the client stopped reading and its window
/// is full), a timer runs; a write that succeeds stops it. Once it reaches
/// the limit, the write fails, hyper drops the connection, and the socket
/// is reset rather than closed: a close would leave the kernel holding the
/// unsent bytes for a peer that does not read them.
struct StallGuard {
    stream: TcpStream,
    limit: Duration,
    /// Running while a write waits for room.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn watch<T>(&mut self, cx: &mut Context<'_>, write: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.stalled = None;
            return write;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Err(err) = self.stream.set_zero_linger() {
            tracing::debug!(%err, "cannot make the stalled connection reset on close");
        }
        tracing::info!(?limit, "an HTTP client read nothing for the stall timeout; resetting its connection");
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("the client read nothing for {limit:?}"))))
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
