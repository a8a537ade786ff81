//! Raft log storage.
//!
//! The rest of gameraft sees the log only through OpenRaft's `RaftLogStorage`
//! trait, so a store can be swapped without touching the node, network or API.
//!
//! Contract every store must keep (OpenRaft's and ours):
//! - the vote is stored before `save_vote` returns;
//! - appended entries are readable when `append` returns, and the flush
//!   callback fires only once they are as durable as the store promises;
//! - `truncate` and `purge` never leave holes; `purge` records
//!   `last_purged_log_id` before dropping entries.
//!
//! CAVEATS: the only store today is [`MemLogStore`], which keeps everything in
//! memory: a process restart loses the log. A node restarted with an empty
//! store must therefore join again as a new member (see `node.rs`).

mod memory;

pub use memory::MemLogStore;
