//! `gameraft restore FILE --data-dir D`: the data directory of a new
//! cluster's first node, holding every event of a backup.
//!
//! What it writes, all in a directory beside `D` that is renamed to `D`
//! only once complete (a failed restore leaves `D` as it was):
//! - `node.json`: a new node id (or `--id`), a new incarnation and a new
//!   cluster id, so the backup's old cluster and the new one refuse each
//!   other's RPCs;
//! - `state/`: the backup's records as an installed snapshot generation,
//!   by the install's own steps (validated record by record, indexed,
//!   `CURRENT` switched: `state_machine::install_restored`); the snapshot's
//!   membership names the new node alone, as a voter, at addresses it
//!   does not have yet;
//! - `raft-log/`: no entries, purged up to the backup's last log id, and a
//!   vote at its term, so that the node's first election is for a later
//!   term than any entry it holds (OpenRaft's leader needs one at least as
//!   high as its last log id's).
//!
//! The records still hold the old cluster's membership entries; the
//! snapshot's membership (in `snapshot.json`) is the one that counts. Until
//! the node's first membership change is applied (the address update
//! below), a start that finds the event index damaged and replays the
//! whole file would take the old membership from the records: restore
//! again from the backup in that case.
//!
//! `gameraft serve --data-dir D` then resumes as a node with state whose
//! addresses moved: it elects itself (the only voter), and puts its real
//! addresses in the membership, as any moved node does (`node/entry.rs`). Other
//! nodes join it as usual and receive the events as a snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::format::{copy_events, BackupHeader};
use super::BackupError;
use openraft::storage::RaftLogStorage;

use super::directory_of;
use crate::disk::format::{random_id, FORMAT, LOG_DIR, STATE_DIR};
use crate::disk::{sync_dir, DataDir};
use crate::raft_log::FileLogStore;
use crate::state_machine::install_restored;
use crate::types::{Membership, NodeId, PeerAddr, SnapshotMeta, StoredMembership, Vote};

/// The address the restored membership records for the new node until it
/// starts and puts its own there: nothing listens at it.
pub const NOT_STARTED_ADDR: &str = "0.0.0.0:0";

/// A data directory restored.
#[derive(Debug, Clone)]
pub struct Restored {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub header: BackupHeader,
}

/// Restores the backup `file` into the new data directory `data_dir`
/// (absent or empty), for node `id` (a random one if `None`).
pub async fn restore(file: &Path, data_dir: &Path, id: Option<NodeId>) -> Result<Restored, BackupError> {
    let header = {
        let input = fs::File::open(file).map_err(|e| BackupError::file("open", file, e))?;
        BackupHeader::read_from(&mut BufReader::new(input))?
    };
    if header.data_format != FORMAT {
        return Err(BackupError::OtherFormat { found: header.data_format });
    }
    match fs::read_dir(data_dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => return Err(BackupError::NotEmpty { path: data_dir.to_path_buf() }),
        Ok(false) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(BackupError::file("read", data_dir, err)),
    }
    let staging = staging_path(data_dir)?;
    if staging.exists() {
        return Err(BackupError::Leftover { path: staging });
    }
    let restored = build(file, &staging, id).await.and_then(|restored| {
        // Onto an absent or empty directory: rename replaces an empty one.
        fs::rename(&staging, data_dir)
            .map_err(|e| BackupError::file("rename the restored directory to", data_dir, e))?;
        let parent = directory_of(data_dir);
        sync_dir(&parent).map_err(|e| BackupError::file("fsync", &parent, e))?;
        Ok(restored)
    });
    if restored.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    restored
}

/// Writes the whole data directory into `dir` (which must not exist).
async fn build(file: &Path, dir: &Path, id: Option<NodeId>) -> Result<Restored, BackupError> {
    let node_id = id.unwrap_or_else(crate::identity::new_node_id);
    let data_dir = DataDir::open(dir, Some(node_id), || node_id)?;
    let cluster_id = random_id();
    data_dir.record_cluster_id(&cluster_id)?;
    let me = PeerAddr {
        raft_addr: NOT_STARTED_ADDR.into(),
        http_addr: NOT_STARTED_ADDR.into(),
        incarnation: data_dir.incarnation().to_string(),
    };
    drop(data_dir);

    let mut input = BufReader::new(fs::File::open(file).map_err(|e| BackupError::file("open", file, e))?);
    let header = BackupHeader::read_from(&mut input)?;
    let last_log_id = header.last_log_id;
    let membership = Membership::new(vec![BTreeSet::from([node_id])], BTreeMap::from([(node_id, me)]));
    let meta = SnapshotMeta {
        last_log_id: Some(last_log_id),
        last_membership: StoredMembership::new(*header.membership.log_id(), membership),
        snapshot_id: format!("restored-{}-{}-{}", last_log_id.leader_id.term, last_log_id.index, header.dat_len),
    };
    // The copy's own errors are kept aside: the install sees only an
    // `io::Error`, and a damaged backup should say so as such.
    let mut copy_error = None;
    let state_dir = dir.join(STATE_DIR);
    let installed = install_restored(&state_dir, &meta, |dat_path| {
        let out = fs::File::create(dat_path)?;
        let mut out = BufWriter::new(out);
        let copied = copy_events(&mut input, &header, &mut out);
        if let Err(err) = copied {
            copy_error = Some(err);
            return Err(std::io::Error::other("the backup's events could not be copied"));
        }
        out.flush()?;
        out.get_ref().sync_all()
    });
    let record = match (installed, copy_error) {
        (_, Some(err)) => return Err(err),
        (Err(err), None) if err.kind() == std::io::ErrorKind::InvalidData => {
            return Err(BackupError::Mismatch(err.to_string()))
        }
        (Err(err), None) => return Err(BackupError::file("write", &state_dir, err)),
        (Ok(record), None) => record,
    };
    if (record.state.event_count, record.state.dat_len) != (header.event_count, header.dat_len) {
        return Err(BackupError::Mismatch(format!(
            "{} events in {} bytes, the header says {} in {}",
            record.state.event_count, record.state.dat_len, header.event_count, header.dat_len
        )));
    }

    // Written by the log store itself, in its own formats.
    let log_dir = dir.join(LOG_DIR);
    let log_error = |e: openraft::StorageError<NodeId>| BackupError::file("write", &log_dir, std::io::Error::other(e));
    let mut log = FileLogStore::open(&log_dir)?;
    log.save_vote(&Vote::new(last_log_id.leader_id.term, node_id)).await.map_err(log_error)?;
    log.purge(last_log_id).await.map_err(log_error)?;
    drop(log);
    sync_dir(dir).map_err(|e| BackupError::file("fsync", dir, e))?;
    Ok(Restored { node_id, cluster_id, header })
}

/// `<parent>/.<name>.restoring`: built there, then renamed to `data_dir`.
fn staging_path(data_dir: &Path) -> Result<PathBuf, BackupError> {
    let name = data_dir.file_name().ok_or_else(|| {
        BackupError::file("restore into", data_dir, std::io::Error::other("the path names no directory"))
    })?;
    let mut staging = std::ffi::OsString::from(".");
    staging.push(name);
    staging.push(".restoring");
    Ok(directory_of(data_dir).join(staging))
}
