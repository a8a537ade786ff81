//! The data directory and everything written into it.
//!
//! - [`format`](mod@format): every on-disk format and its version (what each file holds).
//! - [`DataDir`]: the directory, its lock and the node it belongs to.
//! - [`record`]: checksummed record framing, shared by the Raft log's
//!   segments and the state machine's event file.
//! - [`ByteFile`], [`atomic_write`], [`read_json`], [`sync_dir`]: the file
//!   primitives both stores are built from.
//! - [`io_threads`]: the threads the durable writes run on, apart from the
//!   blocking pool that request handlers share; [`open_files`]: the
//!   open-file limit, raised at start.
//!
//! Nothing here knows Raft: the Raft log store is [`crate::raft_log`], the
//! applied events are [`crate::state_machine`].

mod data_dir;
mod file;
pub mod format;
pub mod io_threads;
pub mod open_files;
pub mod record;

pub use data_dir::{DataDir, DataDirError};
pub use file::{atomic_write, read_json, sync_dir, ByteFile};
