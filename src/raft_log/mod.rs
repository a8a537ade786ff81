//! The Raft log store: OpenRaft's log entries and vote.
//!
//! - [`FileLogStore`]: on disk, in checksummed segments of the data directory
//!   ([`crate::disk`] owns the directory and the record format).
//! - [`MemLogStore`]: the same in memory, for `--in-memory` throwaway nodes.
//! - [`DurableWatermark`]: how far the state machine holds entries durably,
//!   which bounds what the log may purge.
//!
//! "Log" in this module means the Raft log only; the committed events a
//! client reads are the state machine's event list.
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

mod file_store;
mod memory;
mod watermark;

pub use file_store::FileLogStore;
pub use memory::MemLogStore;
pub use watermark::{DurableWatermark, PurgeLimit, PurgeWaitError};

#[cfg(test)]
mod suite_tests;

#[cfg(test)]
mod crash_tests;
