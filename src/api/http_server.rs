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
//!   the router, `api::router`); a streamed `GET /events` is bounded by its
//!   own stall timeout. With HTTPS, the TLS handshake has the same bound.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

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
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
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
