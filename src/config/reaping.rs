//! Removing members that stay unreachable (`reaper.rs`): off unless
//! `--reap-after-ms` is set.

use std::time::Duration;

use clap::Args;

use super::ConfigError;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const REAP_AFTER_MS: u64 = 0;
    pub const REAP_MIN_VOTERS: usize = 3;
}

/// The shortest `--reap-after-ms`: two of the leader's probes, one second
/// apart, so that one lost probe never removes a member.
pub const MIN_REAP_AFTER_MS: u64 = 2000;

/// When the leader removes a member it cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Reaping unreachable members")]
pub struct ReapSettings {
    /// Remove a member (voter or learner) that the leader has not reached
    /// for this long, through the same path as DELETE /nodes/{id}. 0 (the
    /// default) never removes one; otherwise at least 2000. The leader
    /// probes every other member once a second (GET /health on its Raft
    /// port, answered within 800 ms with its node id) and also counts a
    /// follower's matched log index advancing as contact; each clock starts
    /// again when this node becomes leader and at each contact. The member
    /// silent longest goes first, one at a time, never while another
    /// membership change is in progress, never if fewer than
    /// --reap-min-voters voters would remain, and never unless the voters
    /// reached within the last 3 s (or this long, if shorter), the leader
    /// included, are a majority of both the current and the remaining
    /// voters. Needs --max-members above --reap-min-voters. A live node cut
    /// off for longer is removed too, and comes back only with an empty data
    /// directory (docs/operations.md, "Reaping unreachable members").
    #[arg(long, env = "GAMERAFT_REAP_AFTER_MS", default_value_t = defaults::REAP_AFTER_MS)]
    pub reap_after_ms: u64,

    /// The fewest voters reaping may leave: a voter is removed only if at
    /// least this many remain. With the default 3, a 3-voter cluster
    /// removes a dead voter only once a replacement has joined (4 voters).
    #[arg(long, env = "GAMERAFT_REAP_MIN_VOTERS", default_value_t = defaults::REAP_MIN_VOTERS)]
    pub reap_min_voters: usize,
}

impl Default for ReapSettings {
    fn default() -> Self {
        Self { reap_after_ms: defaults::REAP_AFTER_MS, reap_min_voters: defaults::REAP_MIN_VOTERS }
    }
}

impl ReapSettings {
    /// A minimum of at least one voter; a reap delay of 0 (off) or at least
    /// [`MIN_REAP_AFTER_MS`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.reap_min_voters == 0 {
            return Err(ConfigError::Zero("--reap-min-voters"));
        }
        if self.reap_after_ms != 0 && self.reap_after_ms < MIN_REAP_AFTER_MS {
            return Err(ConfigError::ReapAfterTooShort { ms: self.reap_after_ms, min_ms: MIN_REAP_AFTER_MS });
        }
        Ok(())
    }

    /// How long a member must stay unreachable to be removed; `None` when
    /// reaping is off.
    pub fn reap_after(&self) -> Option<Duration> {
        (self.reap_after_ms > 0).then(|| Duration::from_millis(self.reap_after_ms))
    }
}
