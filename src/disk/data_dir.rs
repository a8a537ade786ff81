//! The data directory: everything a durable node is, and the checks that keep
//! one node's data from being used by another process, another node or
//! another version (its layout and formats: [`super::format`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::atomic_write;
use super::format::{random_id, FormatOnly, NodeFile, FORMAT, LOCK_FILE, LOG_DIR, NODE_FILE, STATE_DIR};
use crate::types::NodeId;

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
    #[error(
        "data directory {path} has data format {found}; this gameraft reads format {FORMAT} only. \
         Start this node on an empty data directory with --join, so that it catches up from its peers"
    )]
    OtherFormat { path: PathBuf, found: u32 },
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
                let not_valid =
                    |e: serde_json::Error| DataDirError::corrupt(path, format!("{NODE_FILE} is not valid: {e}"));
                let FormatOnly { format } = serde_json::from_slice(&bytes).map_err(not_valid)?;
                if format != FORMAT {
                    return Err(DataDirError::OtherFormat { path: path.to_path_buf(), found: format });
                }
                let node: NodeFile = serde_json::from_slice(&bytes).map_err(not_valid)?;
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
                    incarnation: random_id(),
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
    fn a_node_file_of_the_first_format_is_refused_naming_its_format() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_FILE), br#"{"node_id": 1, "format": 1}"#).unwrap();
        let err = DataDir::open(dir.path(), None, || 1).unwrap_err();
        assert!(matches!(err, DataDirError::OtherFormat { found: 1, .. }), "{err}");
        assert!(err.to_string().contains("data format 1"), "{err}");
    }

    /// The format before every applied event carried its log time and
    /// window: its files are not read at all, the node says what to do.
    #[test]
    fn a_directory_of_the_format_without_log_times_is_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let node = br#"{"node_id": 1, "format": 2, "incarnation": "ab", "cluster_id": "cd"}"#;
        fs::write(dir.path().join(NODE_FILE), node).unwrap();
        fs::create_dir(dir.path().join(STATE_DIR)).unwrap();
        let err = DataDir::open(dir.path(), Some(1), || 1).unwrap_err();
        assert!(matches!(err, DataDirError::OtherFormat { found: 2, .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("reads format {FORMAT} only")) && message.contains("--join"), "{message}");
        assert_eq!(fs::read(dir.path().join(NODE_FILE)).unwrap(), node, "the refused directory is left as it was");
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
