//! Request ids: how long the state machine remembers one, and how long one
//! may be.

use std::time::Duration;

use clap::Args;

use super::ConfigError;
// Named in the flag's help, which is also its rustdoc.
#[cfg(doc)]
use super::ApiSettings;

/// Longest request id accepted, in bytes (`api/request_id.rs` refuses
/// longer ones). It joins the event in the Raft entry, so it counts in
/// [`NodeConfig::max_entry_bytes`](super::NodeConfig::max_entry_bytes).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const REQUEST_ID_WINDOW_SECS: u64 = 120;
}

/// How long a write's request id keeps a retry from appending it again.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Exactly-once writes")]
pub struct ExactlyOnceSettings {
    /// How long, in seconds of the leaders' clocks, a request id is
    /// remembered: a write repeating one applied that recently is answered
    /// with the original log index instead of being appended again. The
    /// leader stamps its time and this value into each entry, so every node
    /// decides the same way whatever its own flag. Must cover a retry after
    /// a 504: see [`ApiSettings::request_id_window_needed`].
    #[arg(long, env = "GAMERAFT_REQUEST_ID_WINDOW_SECS", default_value_t = defaults::REQUEST_ID_WINDOW_SECS)]
    pub request_id_window_secs: u64,
}

impl Default for ExactlyOnceSettings {
    fn default() -> Self {
        Self { request_id_window_secs: defaults::REQUEST_ID_WINDOW_SECS }
    }
}

impl ExactlyOnceSettings {
    /// The window may not be 0. Whether it covers a retry depends on the
    /// API's timers: [`NodeConfig::validate`](super::NodeConfig::validate)
    /// checks that.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_id_window_secs == 0 {
            return Err(ConfigError::Zero("--request-id-window-secs"));
        }
        Ok(())
    }

    pub fn request_id_window(&self) -> Duration {
        Duration::from_secs(self.request_id_window_secs)
    }
}
