//! Fault injection for the nemesis harness (`chaos/`) and tests: hidden
//! flags, never for production.

use std::path::PathBuf;

use clap::Args;

/// Files whose presence injects a fault; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct FaultInjection {
    /// Fault injection for the nemesis harness (`chaos/`): a file holding
    /// `<delay_ms> [<jitter_ms> [<node_id>...]]` that delays every outgoing
    /// Raft RPC (or only those to the peers named) while it exists. Read a
    /// few times a second; absent or empty means no delay.
    #[arg(long, env = "GAMERAFT_FAULT_PEER_DELAY_FILE", hide = true)]
    pub fault_peer_delay_file: Option<PathBuf>,

    /// Fault injection for the nemesis harness (`chaos/`) and tests, never
    /// for production: while this file exists, a node installing a received
    /// snapshot aborts the process after the snapshot is written and
    /// validated, before it is published.
    #[arg(long, env = "GAMERAFT_FAULT_CRASH_IN_INSTALL_FILE", hide = true)]
    pub fault_crash_in_install_file: Option<PathBuf>,
}
