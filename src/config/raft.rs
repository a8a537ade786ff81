//! Raft's timers, replication batch size and log compaction: what OpenRaft's
//! `Config` is built from, plus the dead-leader probe (`failover.rs`).
//!
//! The timers default to the original design's values (heartbeat 500 ms,
//! election timeout 1.5-3 s, snapshot install timeout 10 s, 300 entries per
//! batch, 1000 entries kept after a snapshot); tests lower them to run faster.

use clap::Args;

use super::ConfigError;

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const HEARTBEAT_MS: u64 = 500;
    pub const ELECTION_TIMEOUT_MIN_MS: u64 = 1500;
    pub const ELECTION_TIMEOUT_MAX_MS: u64 = 3000;
    pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
    pub const MAX_PAYLOAD_ENTRIES: u64 = 300;
    pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;
    pub const SNAPSHOT_AFTER_LOGS: u64 = 5000;
    pub const LEADER_PROBE_MS: u64 = 250;
    pub const MAX_PEER_CONNECTIONS: usize = 256;
    pub const PEER_HANDSHAKE_TIMEOUT_MS: u64 = 5000;
}

/// Raft timers, batch sizes and snapshots, handed to OpenRaft's `Config`
/// ([`RaftTimings::to_openraft`]). `gameraft cluster` takes these flags too.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Raft")]
pub struct RaftTimings {
    /// Interval between leader heartbeats; also each AppendEntries RPC's timeout.
    #[arg(long, env = "GAMERAFT_HEARTBEAT_MS", default_value_t = defaults::HEARTBEAT_MS)]
    pub heartbeat_ms: u64,

    /// Lower bound of the randomized election timeout: how long after the
    /// last heartbeat a follower campaigns (see `RaftTimings::to_openraft`).
    #[arg(long, env = "GAMERAFT_ELECTION_TIMEOUT_MIN_MS", default_value_t = defaults::ELECTION_TIMEOUT_MIN_MS)]
    pub election_timeout_min_ms: u64,

    /// Upper bound of the randomized election timeout; more than twice the
    /// heartbeat interval.
    #[arg(long, env = "GAMERAFT_ELECTION_TIMEOUT_MAX_MS", default_value_t = defaults::ELECTION_TIMEOUT_MAX_MS)]
    pub election_timeout_max_ms: u64,

    /// Timeout for sending one snapshot chunk, and for installing it.
    #[arg(long, env = "GAMERAFT_INSTALL_SNAPSHOT_TIMEOUT_MS", default_value_t = defaults::INSTALL_SNAPSHOT_TIMEOUT_MS)]
    pub install_snapshot_timeout_ms: u64,

    /// Most log entries sent in one AppendEntries RPC.
    #[arg(long, env = "GAMERAFT_MAX_PAYLOAD_ENTRIES", default_value_t = defaults::MAX_PAYLOAD_ENTRIES)]
    pub max_payload_entries: u64,

    /// Log entries kept after a snapshot, so slightly lagging followers catch up
    /// from the log instead of a snapshot.
    #[arg(long, env = "GAMERAFT_LOGS_KEPT_AFTER_SNAPSHOT", default_value_t = defaults::LOGS_KEPT_AFTER_SNAPSHOT)]
    pub logs_kept_after_snapshot: u64,

    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "GAMERAFT_SNAPSHOT_AFTER_LOGS", default_value_t = defaults::SNAPSHOT_AFTER_LOGS)]
    pub snapshot_after_logs: u64,

    /// How often a follower checks that its leader's process still exists; a
    /// refused connection starts an election at once instead of after the
    /// leader lease. 0 disables the probe.
    #[arg(long, env = "GAMERAFT_LEADER_PROBE_MS", default_value_t = defaults::LEADER_PROBE_MS)]
    pub leader_probe_ms: u64,

    /// Most connections open at once on the Raft port (peers and forwarded
    /// requests need a few each); more wait, unaccepted, in the kernel's queue.
    #[arg(long, env = "GAMERAFT_MAX_PEER_CONNECTIONS", default_value_t = defaults::MAX_PEER_CONNECTIONS)]
    pub max_peer_connections: usize,

    /// A new connection to the Raft port must finish its TLS handshake (or,
    /// without peer TLS, send its first bytes) within this, or is closed.
    #[arg(long, env = "GAMERAFT_PEER_HANDSHAKE_TIMEOUT_MS", default_value_t = defaults::PEER_HANDSHAKE_TIMEOUT_MS)]
    pub peer_handshake_timeout_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_ms: defaults::HEARTBEAT_MS,
            election_timeout_min_ms: defaults::ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: defaults::ELECTION_TIMEOUT_MAX_MS,
            install_snapshot_timeout_ms: defaults::INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_payload_entries: defaults::MAX_PAYLOAD_ENTRIES,
            logs_kept_after_snapshot: defaults::LOGS_KEPT_AFTER_SNAPSHOT,
            snapshot_after_logs: defaults::SNAPSHOT_AFTER_LOGS,
            leader_probe_ms: defaults::LEADER_PROBE_MS,
            max_peer_connections: defaults::MAX_PEER_CONNECTIONS,
            peer_handshake_timeout_ms: defaults::PEER_HANDSHAKE_TIMEOUT_MS,
        }
    }
}

impl RaftTimings {
    pub fn peer_handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.peer_handshake_timeout_ms)
    }

    /// Checks the timers against each other, as given and as
    /// [`Self::to_openraft`] maps them: exactly the settings for which both
    /// `Config`s pass OpenRaft's own `validate` (a test holds the two equal).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (heartbeat_ms, min_ms, max_ms) =
            (self.heartbeat_ms, self.election_timeout_min_ms, self.election_timeout_max_ms);
        // OpenRaft's timeouts span [min - lease, lease): empty unless the
        // minimum is below twice the lease, which is the maximum rounded
        // down to even.
        if min_ms >= max_ms || min_ms >= 2 * self.lease_ms() {
            return Err(ConfigError::ElectionTimeoutRange { min_ms, max_ms });
        }
        if min_ms <= heartbeat_ms {
            return Err(ConfigError::ElectionTimeoutNotAboveHeartbeat { min_ms, heartbeat_ms });
        }
        // OpenRaft's timeouts are above the heartbeat and below the lease.
        if self.lease_ms() <= heartbeat_ms.saturating_add(1) {
            return Err(ConfigError::ElectionTimeoutMaxTooShort { max_ms, heartbeat_ms });
        }
        for (name, value) in [
            ("--max-payload-entries", self.max_payload_entries),
            ("--snapshot-after-logs", self.snapshot_after_logs),
            ("--max-peer-connections", self.max_peer_connections as u64),
            ("--peer-handshake-timeout-ms", self.peer_handshake_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// OpenRaft's `Config` for these timings; meaningful once
    /// [`Self::validate`] has passed, and it checks nothing itself.
    ///
    /// The election timeout here is the design's (and the Raft paper's): how
    /// long after the last heartbeat a follower campaigns. OpenRaft 0.9 waits
    /// longer: a follower that has heard from a leader campaigns after its
    /// leader lease (OpenRaft's `election_timeout_max`) *plus* a random
    /// OpenRaft election timeout, and voters refuse candidates for that lease.
    /// Handed 1.5-3 s as such, a follower would wait 4.5-6 s. So OpenRaft
    /// gets half the upper bound as its lease and timeouts that fill the rest
    /// of the range: with 1.5-3 s, a 1.5 s lease and 0.5-1.5 s timeouts, so a
    /// follower campaigns 2-3 s after the last heartbeat and a candidate that
    /// lost retries after 0.5-1.5 s.
    pub fn to_openraft(&self) -> openraft::Config {
        let lease = self.lease_ms();
        openraft::Config {
            cluster_name: "gameraft".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self
                .election_timeout_min_ms
                .saturating_sub(lease)
                .max(self.heartbeat_ms.saturating_add(1)),
            election_timeout_max: lease,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            max_payload_entries: self.max_payload_entries,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            ..Default::default()
        }
    }

    /// OpenRaft's leader lease (its `election_timeout_max`): half the
    /// design's upper bound (see [`Self::to_openraft`]).
    fn lease_ms(&self) -> u64 {
        self.election_timeout_max_ms / 2
    }
}
