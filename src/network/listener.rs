//! The Raft port's accept loop: a cap on open connections, a deadline for a
//! new connection to prove itself, and (with peer TLS) the handshake that
//! says which node is calling.
//!
//! Tonic is handed connections that are ready: a stranger who connects and
//! says nothing, or stalls its TLS handshake, holds one slot of the cap for
//! at most the handshake timeout and never reaches the gRPC server. Past
//! the cap, connections wait unaccepted in the kernel's queue (they take no
//! file descriptor of this process).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::either::Either;
use tonic::transport::server::Connected;

use crate::types::NodeId;

/// How long to wait before accepting again after the accept itself failed
/// (out of file descriptors): retrying at once would spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds of the Raft port.
#[derive(Debug, Clone, Copy)]
pub struct PeerListenerLimits {
    pub max_connections: usize,
    /// A new connection must finish its TLS handshake (or, without TLS,
    /// send its first bytes) within this.
    pub handshake_timeout: Duration,
}

/// What the gRPC handlers learn about the connection a request came on.
#[derive(Debug, Clone)]
pub struct PeerConnectInfo {
    pub remote_addr: SocketAddr,
    /// The node id the caller's certificate names; `None` without peer TLS.
    pub certified_node: Option<NodeId>,
}

/// An accepted connection, holding its slot of the cap until it closes.
pub struct PeerStream {
    io: Either<TcpStream, Box<TlsStream<TcpStream>>>,
    info: PeerConnectInfo,
    _slot: OwnedSemaphorePermit,
}

/// Accepts on `listener` until the returned stream is dropped, yielding
/// connections that passed the handshake (TLS with a client certificate
/// when `tls` is given).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: PeerListenerLimits,
) -> ReceiverStream<Result<PeerStream, io::Error>> {
    let (ready_tx, ready_rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_closed) => return,
                },
                () = ready_tx.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready_tx.closed() => return,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "raft port: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let handshake = handshake(tcp, remote_addr, acceptor);
                match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Ok(Ok((io, info))) => {
                        let _ = ready_tx.send(Ok(PeerStream { io, info, _slot: slot })).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%remote_addr, error = %err, "raft port: connection refused"),
                    Err(_elapsed) => tracing::debug!(%remote_addr, "raft port: no handshake in time"),
                }
            });
        }
    });
    ReceiverStream::new(ready_rx)
}

type Handshaken = (Either<TcpStream, Box<TlsStream<TcpStream>>>, PeerConnectInfo);

async fn handshake(tcp: TcpStream, remote_addr: SocketAddr, acceptor: Option<TlsAcceptor>) -> io::Result<Handshaken> {
    // A gRPC answer leaves as several HTTP/2 frames; with Nagle on, the
    // later ones waited for the peer's delayed ACK (40 ms on Linux).
    tcp.set_nodelay(true)?;
    let Some(acceptor) = acceptor else {
        // Without TLS, a peer proves itself by speaking first (the HTTP/2
        // preface); an idle connection is dropped at the deadline.
        tcp.peek(&mut [0u8; 1]).await?;
        return Ok((Either::Left(tcp), PeerConnectInfo { remote_addr, certified_node: None }));
    };
    let tls = acceptor.accept(tcp).await?;
    let certified_node = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| crate::tls::certified_node_id(cert));
    if certified_node.is_none() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the certificate names no gameraft node"));
    }
    Ok((Either::Right(Box::new(tls)), PeerConnectInfo { remote_addr, certified_node }))
}

impl Connected for PeerStream {
    type ConnectInfo = PeerConnectInfo;

    fn connect_info(&self) -> PeerConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    use super::*;

    /// Two silent connections fill a cap of two; each is closed at the
    /// handshake deadline, and a peer that speaks is then served.
    #[tokio::test]
    async fn silent_connections_hold_a_slot_only_until_the_handshake_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = PeerListenerLimits { max_connections: 2, handshake_timeout: Duration::from_millis(300) };
        let mut ready = incoming(listener, None, limits);

        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut speaker = TcpStream::connect(addr).await.expect("queued in the kernel");
        speaker.write_all(b"PRI * HTTP/2.0").await.expect("write");

        let accepted = tokio::time::timeout(Duration::from_secs(10), ready.next())
            .await
            .expect("the speaker is accepted once a slot frees")
            .expect("stream open")
            .expect("accepted");
        assert_eq!(accepted.info.remote_addr, speaker.local_addr().expect("addr"));
        assert_eq!(accepted.info.certified_node, None);
        for mut conn in silent {
            let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut [0u8; 1])).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent connection is closed: {read:?}");
        }
    }
}
