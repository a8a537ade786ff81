//! The data directory: everything a durable node is, and the checks that keep
//! one node's data from being used by another process or another node.
//!
//! ```text
//! <data-dir>/
//!   gameraft.lock   flock()ed while a node runs; holds its pid
//!   node.json       {"node_id": N, "format": 2, "incarnation": "..", "cluster_id": ".."}
//!   raft-log/       vote, purge mark and log segments  (storage::FileLogStore)
//!   state/          committed events and snapshots      (state_machine)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

const LOCK_FILE: &str = "gameraft.lock";
const NODE_FILE: &str = "node.json";
/// Format 1 had no incarnation or cluster id.
const FORMAT: u32 = 2;
pub const LOG_DIR: &str = "raft-log";
pub const STATE_DIR: &str = "state";

/// Why a data directory was refused. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("data directory {path} is not writable: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
    #[error(
        "data directory {path} is in use by another gameraft process ({holder}); stop it or use another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "data directory {path} belongs to node {found}, not node {requested}; \
         start with --id {found}, or use another --data-dir"
    )]
    OtherNode { path: PathBuf, found: NodeId, requested: NodeId },
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "{path} is corrupt: {reason}; refusing to start \
         (move the data directory away to start this node from scratch)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "the Raft log in {path} is purged up to entry {purged}, but the state machine holds only {applied}: \
         the entries in between are gone (a snapshot install was cut short) and this node cannot rebuild its \
         state; stop it, move its data directory away and start it with --join, so that the cluster replaces it \
         (README: Data and durability)"
    )]
    PurgedPastApplied { path: PathBuf, purged: u64, applied: String },
}

impl DataDirError {
    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }

    pub fn unreadable(path: &Path, source: io::Error) -> Self {
        Self::Unreadable { path: path.to_path_buf(), source }
    }

    pub fn write(path: &Path, source: io::Error) -> Self {
        Self::Write { path: path.to_path_buf(), source }
    }
}

/// `node.json`: who this directory is. The incarnation is drawn when the
/// directory is created, so a node that lost its directory comes back as a
/// new incarnation of its id; the cluster id is recorded when the node
/// founds a cluster or is first reached by one (see `identity`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    node_id: NodeId,
    format: u32,
    #[serde(default)]
    incarnation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

/// An opened, locked data directory. The lock is released when this is
/// dropped (or the process dies: `flock` locks go with the file descriptor).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    node_id: NodeId,
    incarnation: String,
    cluster_id: Option<String>,
    _lock: Flock<File>,
}

impl DataDir {
    /// Opens `path` (creating it if absent) for node `requested_id`, or for
    /// the node recorded in it, or for a new node from `new_id`.
    pub fn open(
        path: &Path,
        requested_id: Option<NodeId>,
        new_id: impl FnOnce() -> NodeId,
    ) -> Result<Self, DataDirError> {
        fs::create_dir_all(path).map_err(|source| DataDirError::Create { path: path.to_path_buf(), source })?;
        let lock = lock(path)?;
        probe_writable(path)?;

        let node_path = path.join(NODE_FILE);
        let node = match fs::read(&node_path) {
            Ok(bytes) => {
                let node: NodeFile = serde_json::from_slice(&bytes)
                    .map_err(|e| DataDirError::corrupt(path, format!("{NODE_FILE} is not valid: {e}")))?;
                if node.format != FORMAT || node.incarnation.is_empty() {
                    return Err(DataDirError::corrupt(
                        path,
                        format!(
                            "{NODE_FILE} has format {}, not {FORMAT}: it was written by another version of \
                             gameraft, which kept no cluster id or incarnation",
                            node.format
                        ),
                    ));
                }
                match requested_id {
                    Some(requested) if requested != node.node_id => {
                        return Err(DataDirError::OtherNode {
                            path: path.to_path_buf(),
                            found: node.node_id,
                            requested,
                        });
                    }
                    _ => node,
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                for leftover in [LOG_DIR, STATE_DIR] {
                    if path.join(leftover).exists() {
                        return Err(DataDirError::corrupt(
                            path,
                            format!("{leftover}/ exists but {NODE_FILE} is missing"),
                        ));
                    }
                }
                let node = NodeFile {
                    node_id: requested_id.unwrap_or_else(new_id),
                    format: FORMAT,
                    incarnation: crate::identity::new_incarnation(),
                    cluster_id: None,
                };
                write_node_file(&node_path, &node)?;
                node
            }
            Err(err) => return Err(DataDirError::unreadable(&node_path, err)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            node_id: node.node_id,
            incarnation: node.incarnation,
            cluster_id: node.cluster_id,
            _lock: lock,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Drawn when this directory was created; a node whose directory is lost
    /// comes back as another incarnation of its id.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// The cluster this directory belongs to, once it has founded or been
    /// reached by one.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Whether a Raft log was ever created here. A node without one has no
    /// state to resume and must be told to bootstrap or join; one with an
    /// empty log (a join that never got far) is no different, which only
    /// Raft can tell.
    pub fn has_raft_state(&self) -> bool {
        self.path.join(LOG_DIR).exists()
    }

    /// Records (durably, before it returns) that this directory belongs to
    /// `cluster_id`.
    pub fn record_cluster_id(&self, cluster_id: &str) -> Result<(), DataDirError> {
        let node = NodeFile {
            node_id: self.node_id,
            format: FORMAT,
            incarnation: self.incarnation.clone(),
            cluster_id: Some(cluster_id.to_string()),
        };
        write_node_file(&self.path.join(NODE_FILE), &node)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn log_dir(&self) -> PathBuf {
        self.path.join(LOG_DIR)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path.join(STATE_DIR)
    }
}

fn write_node_file(node_path: &Path, node: &NodeFile) -> Result<(), DataDirError> {
    let bytes = serde_json::to_vec(node).map_err(|e| DataDirError::write(node_path, io::Error::other(e)))?;
    atomic_write(node_path, &bytes).map_err(|e| DataDirError::write(node_path, e))
}

fn lock(path: &Path) -> Result<Flock<File>, DataDirError> {
    let lock_path = path.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| DataDirError::NotWritable { path: path.to_path_buf(), source })?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            let holder = fs::read_to_string(&lock_path)
                .ok()
                .and_then(|pid| pid.trim().parse::<u32>().ok())
                .map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"));
            return Err(DataDirError::Locked { path: path.to_path_buf(), holder });
        }
        Err((_, errno)) => {
            return Err(DataDirError::NotWritable { path: path.to_path_buf(), source: io::Error::from(errno) })
        }
    };
    let write_pid = |file: &mut File| -> io::Result<()> {
        file.set_len(0)?;
        file.write_all(std::process::id().to_string().as_bytes())
    };
    write_pid(&mut locked).map_err(|source| DataDirError::NotWritable { path: path.to_path_buf(), source })?;
    Ok(locked)
}

/// Creating a file is what a node does all the time; find out now, with a
/// clear message, rather than at the first write.
fn probe_writable(path: &Path) -> Result<(), DataDirError> {
    let probe = path.join(".write-probe");
    File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|source| DataDirError::NotWritable { path: path.to_path_buf(), source })
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

    #[test]
    fn remembers_its_node_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node");
        let first = DataDir::open(&path, None, || 42).unwrap();
        assert_eq!(first.node_id(), 42);
        drop(first);
        assert_eq!(DataDir::open(&path, None, || 7).unwrap().node_id(), 42);
        assert_eq!(DataDir::open(&path, Some(42), || 7).unwrap().node_id(), 42);
        let err = DataDir::open(&path, Some(3), || 7).unwrap_err();
        assert!(matches!(err, DataDirError::OtherNode { found: 42, requested: 3, .. }), "{err}");
    }

    #[test]
    fn keeps_its_incarnation_and_records_the_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path(), Some(1), || 1).unwrap();
        let incarnation = first.incarnation().to_string();
        assert_eq!(first.cluster_id(), None);
        first.record_cluster_id("c0ffee").unwrap();
        drop(first);
        let again = DataDir::open(dir.path(), Some(1), || 1).unwrap();
        assert_eq!((again.incarnation(), again.cluster_id()), (incarnation.as_str(), Some("c0ffee")));

        let wiped = tempfile::tempdir().unwrap();
        let other = DataDir::open(wiped.path(), Some(1), || 1).unwrap();
        assert_ne!(other.incarnation(), incarnation, "a new directory is a new incarnation");
    }

    #[test]
    fn a_node_file_of_the_first_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_FILE), br#"{"node_id": 1, "format": 1}"#).unwrap();
        let err = DataDir::open(dir.path(), None, || 1).unwrap_err();
        assert!(err.to_string().contains("another version"), "{err}");
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DataDir::open(dir.path(), Some(1), || 1).unwrap();
        let err = DataDir::open(dir.path(), Some(1), || 1).unwrap_err();
        assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
    }

    #[test]
    fn damaged_or_orphaned_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_FILE), b"{not json").unwrap();
        let err = DataDir::open(dir.path(), None, || 1).unwrap_err();
        assert!(matches!(err, DataDirError::Corrupt { .. }), "{err}");

        let orphan = tempfile::tempdir().unwrap();
        fs::create_dir(orphan.path().join(LOG_DIR)).unwrap();
        let err = DataDir::open(orphan.path(), None, || 1).unwrap_err();
        assert!(err.to_string().contains("node.json is missing"), "{err}");
    }
}
