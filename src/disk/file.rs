//! File primitives: [`ByteFile`], an append-only byte store that is either a
//! real file or a buffer in memory (so that the state machine has one code
//! path for durable and `--in-memory` nodes), and the atomic replacement,
//! reading and directory syncing of small files.
//!
//! Reads are positional (`pread`), so readers never move a shared cursor and
//! can run while the single writer appends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

use super::DataDirError;
use crate::locks::{read, write};

#[derive(Debug)]
pub enum ByteFile {
    Disk(File),
    Memory(RwLock<Vec<u8>>),
}

impl ByteFile {
    /// Opens (creating if absent) `path` for appending and positional reads.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        Ok(Self::Disk(file))
    }

    pub fn memory() -> Self {
        Self::Memory(RwLock::new(Vec::new()))
    }

    pub fn len(&self) -> io::Result<u64> {
        match self {
            Self::Disk(file) => Ok(file.metadata()?.len()),
            Self::Memory(buf) => Ok(read(buf).len() as u64),
        }
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`; an `UnexpectedEof` error if the store is
    /// shorter.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Self::Disk(file) => file.read_exact_at(buf, offset),
            Self::Memory(bytes) => {
                let bytes = read(bytes);
                let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
                let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
                let slice = bytes.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(slice);
                Ok(())
            }
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Self::Disk(file) => file.read_at(buf, offset),
            Self::Memory(bytes) => {
                let bytes = read(bytes);
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
        }
    }

    /// Appends `bytes` at the end. Not durable until [`ByteFile::sync`].
    pub fn append(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Disk(file) => {
                let mut file: &File = file;
                file.write_all(bytes)
            }
            Self::Memory(buf) => {
                write(buf).extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Makes every byte appended so far durable (`fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        match self {
            Self::Disk(file) => file.sync_data(),
            Self::Memory(_) => Ok(()),
        }
    }

    /// Cuts the store to `len` bytes and makes the cut durable.
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            Self::Disk(file) => {
                file.set_len(len)?;
                file.sync_all()
            }
            Self::Memory(buf) => {
                write(buf).truncate(usize::try_from(len).unwrap_or(usize::MAX));
                Ok(())
            }
        }
    }

    /// A sequential reader from `offset`, for scans.
    pub fn reader_at(&self, offset: u64) -> impl Read + '_ {
        io::BufReader::with_capacity(256 * 1024, SequentialReader { file: self, pos: offset })
    }

    /// A copy of the bytes `[0, len)`; used to ship in-memory snapshots.
    pub fn copy_prefix(&self, len: u64) -> io::Result<Vec<u8>> {
        let mut out = vec![0; usize::try_from(len).map_err(|_| io::ErrorKind::OutOfMemory)?];
        self.read_exact_at(&mut out, 0)?;
        Ok(out)
    }
}

struct SequentialReader<'a> {
    file: &'a ByteFile,
    pos: u64,
}

impl Read for SequentialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old content or the
/// new, never a mix: write a temporary file, fsync it, rename it over `path`,
/// fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Reads a small JSON file written by [`atomic_write`]: `None` if it does
/// not exist, an error naming the file if it cannot be read or parsed.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, DataDirError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataDirError::corrupt(path, format!("cannot parse: {e}"))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(DataDirError::unreadable(path, err)),
    }
}

/// Makes the creation, removal or renaming of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(file: &ByteFile) {
        file.append(b"hello ").unwrap();
        file.append(b"world").unwrap();
        file.sync().unwrap();
        assert_eq!(file.len().unwrap(), 11);
        let mut buf = [0; 5];
        file.read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(&buf, b"world");
        assert_eq!(file.read_exact_at(&mut buf, 8).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut rest = String::new();
        file.reader_at(3).read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "lo world");
        file.truncate(5).unwrap();
        file.append(b"!").unwrap();
        assert_eq!(file.copy_prefix(6).unwrap(), b"hello!");
    }

    #[test]
    fn memory_and_disk_behave_the_same() {
        exercise(&ByteFile::memory());
        let dir = tempfile::tempdir().unwrap();
        exercise(&ByteFile::open(&dir.path().join("f")).unwrap());
    }
}
