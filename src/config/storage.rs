//! Where the node keeps its state.

use std::path::PathBuf;

use clap::Args;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const DATA_DIR: &str = "gameraft-data";
}

/// The data directory, or none at all.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageSettings {
    /// Directory holding everything this node is: its id, vote, Raft log,
    /// committed events and snapshots. Created if absent. A node started again
    /// on it resumes where it stopped (no bootstrap, no join).
    #[arg(long, env = "DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,

    /// Keep everything in memory instead of --data-dir: nothing survives the
    /// process. For throwaway clusters and fast tests.
    #[arg(long, env = "GAMERAFT_IN_MEMORY")]
    pub in_memory: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { data_dir: PathBuf::from(defaults::DATA_DIR), in_memory: false }
    }
}
