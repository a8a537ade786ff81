//! [`SnapshotData`]: what OpenRaft reads a snapshot from (to send it in
//! chunks) and writes a received one into.
//!
//! A durable node's snapshot is a prefix of its event file (that file is
//! append-only, so the prefix never changes): the sender reads it straight
//! from disk, bounded to the snapshot's length, and the receiver writes the
//! chunks straight to a file. Neither holds the state in memory. An
//! `--in-memory` node copies its bytes into a buffer instead.

use std::io::{self, Cursor, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub enum SnapshotData {
    Memory(Cursor<Vec<u8>>),
    File(SnapshotFile),
}

/// A file seen as a snapshot: reads stop at `limit` (the snapshot's length,
/// even if the file has grown since), seeks from the end count from there.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
    limit: Option<u64>,
    pos: u64,
}

impl SnapshotData {
    /// The first `len` bytes of the file at `path`, for sending.
    pub async fn open_prefix(path: &Path, len: u64) -> io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        Ok(Self::File(SnapshotFile { file, path: path.to_path_buf(), limit: Some(len), pos: 0 }))
    }

    /// A new, empty file at `path`, for receiving.
    pub async fn create(path: &Path) -> io::Result<Self> {
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path).await?;
        Ok(Self::File(SnapshotFile { file, path: path.to_path_buf(), limit: None, pos: 0 }))
    }
}

impl SnapshotFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes everything written durable and closes the file.
    pub async fn sync_and_close(self) -> io::Result<PathBuf> {
        let mut file = self.file;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        file.sync_all().await?;
        Ok(self.path)
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).poll_read(cx, buf),
            Self::File(snap) => {
                let remaining = snap.limit.map_or(u64::MAX, |limit| limit.saturating_sub(snap.pos));
                if remaining == 0 {
                    return Poll::Ready(Ok(()));
                }
                let room = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.remaining());
                // Zero the room first: then the bytes `take` reads into count
                // as initialised, and `advance` needs no `unsafe`.
                buf.initialize_unfilled_to(room);
                let mut bounded = buf.take(room);
                ready!(Pin::new(&mut snap.file).poll_read(cx, &mut bounded))?;
                let n = bounded.filled().len();
                buf.advance(n);
                snap.pos += n as u64;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).start_seek(position),
            Self::File(snap) => {
                let position = match (position, snap.limit) {
                    (SeekFrom::End(delta), Some(limit)) => SeekFrom::Start(
                        limit
                            .checked_add_signed(delta)
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?,
                    ),
                    (other, _) => other,
                };
                Pin::new(&mut snap.file).start_seek(position)
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).poll_complete(cx),
            Self::File(snap) => {
                let pos = ready!(Pin::new(&mut snap.file).poll_complete(cx))?;
                snap.pos = pos;
                Poll::Ready(Ok(pos))
            }
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).poll_write(cx, buf),
            Self::File(snap) => {
                if snap.limit.is_some() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, "snapshot is read-only")));
                }
                let n = ready!(Pin::new(&mut snap.file).poll_write(cx, buf))?;
                snap.pos += n as u64;
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).poll_flush(cx),
            Self::File(snap) => Pin::new(&mut snap.file).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Memory(cursor) => Pin::new(cursor).poll_shutdown(cx),
            Self::File(snap) => Pin::new(&mut snap.file).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_prefix_reads_and_measures_only_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.dat");
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        let mut snap = SnapshotData::open_prefix(&path, 10).await.unwrap();
        assert_eq!(snap.seek(SeekFrom::End(0)).await.unwrap(), 10);
        snap.seek(SeekFrom::Start(4)).await.unwrap();
        let mut out = Vec::new();
        snap.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"456789");
        assert!(snap.write_all(b"x").await.is_err(), "a snapshot being sent is read-only");
    }

    #[tokio::test]
    async fn chunks_written_at_offsets_land_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incoming");
        let mut snap = SnapshotData::create(&path).await.unwrap();
        snap.write_all(b"hello ").await.unwrap();
        snap.seek(SeekFrom::Start(6)).await.unwrap();
        snap.write_all(b"world").await.unwrap();
        snap.shutdown().await.unwrap();
        let SnapshotData::File(file) = snap else { panic!("file-backed") };
        let path = file.sync_and_close().await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"hello world");
        assert!(SnapshotData::create(&dir.path().join("incoming")).await.is_err(), "never overwrites");
    }
}
