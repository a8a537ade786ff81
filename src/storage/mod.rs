//! Where a node keeps what it must not lose.
//!
//! - [`DataDir`]: the directory, its lock and the node id it belongs to.
//! - [`FileLogStore`]: the Raft log and vote on disk (checksummed segments).
//! - [`MemLogStore`]: the same in memory, for `--in-memory` throwaway nodes.
//! - [`ByteFile`] and [`record`]: the byte store and checksummed record
//!   framing shared with the state machine.
//!
//! The rest of gameraft sees the log only through OpenRaft's `RaftLogStorage`
//! trait. Contract every store keeps (OpenRaft's and ours):
//! - the vote is stored before `save_vote` returns;
//! - appended entries are readable when `append` returns, and the flush
//!   callback fires only once they are as durable as the store promises;
//! - `truncate` and `purge` never leave holes; `purge` records
//!   `last_purged_log_id` before dropping entries;
//! - `purge` never passes what the state machine holds durably
//!   ([`DurableWatermark`], for the durable store; an `--in-memory` node
//!   starts empty after any restart, so its store needs none).

mod data_dir;
mod file;
mod log;
mod memory;
pub mod record;
mod watermark;

pub use data_dir::{atomic_write, read_json, sync_dir, DataDir, DataDirError};
pub use file::ByteFile;
pub use log::FileLogStore;
pub use memory::MemLogStore;
pub use watermark::{DurableWatermark, PurgeLimit, PurgeWaitError};

#[cfg(test)]
mod suite_tests;

#[cfg(test)]
mod crash_tests;
