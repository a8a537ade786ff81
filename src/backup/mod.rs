//! Backup and restore: a consistent copy of a cluster's events, and a new
//! cluster started from one.
//!
//! - [`format`](mod@format): the backup file: a header (the point it was taken at, the
//!   source membership, counts), the event file's records, a checksum.
//! - [`download`](mod@download): `gameraft backup --from URL FILE`: `GET /backup` from one
//!   node (`api/backup.rs` serves it) into `FILE.tmp`, checked, fsynced,
//!   then renamed to `FILE`.
//! - [`restore`](mod@restore): `gameraft restore FILE --data-dir D`: a data directory for
//!   the first node of a new cluster (new node id, new cluster id) holding
//!   the events as an installed snapshot.
//!
//! Consistent means: exactly the events applied up to one log id, on the
//! node that served it (a follower's backup is consistent at its own
//! applied point, which may trail the leader's by a heartbeat).

pub mod download;
pub mod format;
pub mod restore;

use std::io;
use std::path::PathBuf;

pub use download::{download, Downloaded, Source};
pub use format::BackupHeader;
pub use restore::{restore, Restored};

/// Why a backup or a restore failed. Each message is one line that says
/// what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} answered {status}: {message}")]
    Refused { url: String, status: u16, message: String },
    #[error("cannot read the CA certificate {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("not a gameraft backup: {0}")]
    NotABackup(String),
    #[error("the backup is of version {found}; this gameraft reads version {} only", format::VERSION)]
    OtherVersion { found: u32 },
    #[error(
        "the backup's records are of data format {found}; this gameraft reads format {} only",
        crate::disk::format::FORMAT
    )]
    OtherFormat { found: u32 },
    #[error("the backup is cut short: {found} of its {expected} bytes of events")]
    Truncated { expected: u64, found: u64 },
    #[error("the backup is damaged: its events' checksum is {computed:08x}, the file says {stored:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("the backup's events do not match its header: {0}")]
    Mismatch(String),
    #[error("the backup holds no state: the node that served it had applied nothing")]
    Empty,
    #[error("{path} is not empty: restore makes a new data directory and never writes into one in use")]
    NotEmpty { path: PathBuf },
    #[error("{path} is left from an interrupted restore: remove it, then restore again")]
    Leftover { path: PathBuf },
    #[error("cannot {what} {path}: {source}")]
    File { what: &'static str, path: PathBuf, source: io::Error },
    #[error(transparent)]
    DataDir(#[from] crate::disk::DataDirError),
    #[error("cannot read the backup: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write: {0}")]
    Write(#[source] io::Error),
}

impl BackupError {
    fn read(source: io::Error) -> Self {
        Self::Read(source)
    }

    fn write(source: io::Error) -> Self {
        Self::Write(source)
    }

    fn file(what: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Self::File { what, path: path.to_path_buf(), source }
    }
}

/// The directory `path` is in, to fsync after a rename there (`.` for a
/// bare file name).
fn directory_of(path: &std::path::Path) -> std::path::PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}
