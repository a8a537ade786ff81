//! One node's configuration: every knob, its default, and its validation.
//!
//! Each field is a `gameraft serve` flag and an environment variable. The Raft
//! timings default to the original design's values (heartbeat 500 ms, election
//! timeout 1.5-3 s, snapshot install timeout 10 s, 300 entries per batch, 1000
//! entries kept after a snapshot); tests lower them to run faster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::types::NodeId;

/// Configuration of one node (`gameraft serve`).
#[derive(Debug, Clone, Args)]
pub struct NodeConfig {
    /// This node's id. Generated at random when absent.
    #[arg(long, env = "WORKER_ID")]
    pub id: Option<NodeId>,

    /// Address the HTTP API listens on. Port 0 picks a free port.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Address the Raft gRPC service listens on. Port 0 picks a free port.
    #[arg(long, env = "RAFT_ADDR", default_value = "0.0.0.0:5000")]
    pub raft_addr: SocketAddr,

    /// Host (name or IP) that peers and clients should dial to reach this node.
    /// Needed when listening on 0.0.0.0; defaults to the listen address's host,
    /// or 127.0.0.1 for a wildcard listen address.
    #[arg(long, env = "ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// HTTP URL of any cluster member to join (e.g. http://10.0.0.5:8080).
    /// Used only by a node with no state; one with state resumes.
    #[arg(long, env = "MASTER_URL")]
    pub join: Option<String>,

    /// Found a new one-node cluster if this node has no state. Only for the
    /// first node of a new cluster: a node with no state and neither this
    /// nor --join refuses to start, so a node that lost its data never
    /// founds a second cluster by accident. A node with state ignores it.
    #[arg(long, env = "GAMERAFT_BOOTSTRAP", conflicts_with = "join")]
    pub bootstrap: bool,

    /// Directory holding everything this node is: its id, vote, Raft log,
    /// committed events and snapshots. Created if absent. A node started again
    /// on it resumes where it stopped (no bootstrap, no join).
    #[arg(long, env = "DATA_DIR", default_value = "gameraft-data")]
    pub data_dir: PathBuf,

    /// Keep everything in memory instead of --data-dir: nothing survives the
    /// process. For throwaway clusters and fast tests.
    #[arg(long, env = "GAMERAFT_IN_MEMORY")]
    pub in_memory: bool,

    /// Fault injection for the nemesis harness (`chaos/`): a file holding
    /// `<delay_ms> [<jitter_ms>]` that delays every outgoing Raft RPC while it
    /// exists. Read a few times a second; absent or empty means no delay.
    #[arg(long, env = "GAMERAFT_FAULT_PEER_DELAY_FILE", hide = true)]
    pub fault_peer_delay_file: Option<PathBuf>,

    /// Fault injection for the nemesis harness (`chaos/`) and tests, never
    /// for production: while this file exists, a node installing a received
    /// snapshot aborts the process after the snapshot is written and
    /// validated, before it is published.
    #[arg(long, env = "GAMERAFT_FAULT_CRASH_IN_INSTALL_FILE", hide = true)]
    pub fault_crash_in_install_file: Option<PathBuf>,

    #[command(flatten)]
    pub raft: RaftTimings,

    #[command(flatten)]
    pub api: ApiSettings,
}

/// Raft timers and batch sizes, handed to OpenRaft's `Config`.
#[derive(Debug, Clone, Args)]
pub struct RaftTimings {
    /// Interval between leader heartbeats; also each AppendEntries RPC's timeout.
    #[arg(long, env = "GAMERAFT_HEARTBEAT_MS", default_value_t = 500)]
    pub heartbeat_ms: u64,

    /// Lower bound of the randomized election timeout: how long after the
    /// last heartbeat a follower campaigns (see `RaftTimings::to_openraft`).
    #[arg(long, env = "GAMERAFT_ELECTION_TIMEOUT_MIN_MS", default_value_t = 1500)]
    pub election_timeout_min_ms: u64,

    /// Upper bound of the randomized election timeout; more than twice the
    /// heartbeat interval.
    #[arg(long, env = "GAMERAFT_ELECTION_TIMEOUT_MAX_MS", default_value_t = 3000)]
    pub election_timeout_max_ms: u64,

    /// Timeout for sending one snapshot chunk, and for installing it.
    #[arg(long, env = "GAMERAFT_INSTALL_SNAPSHOT_TIMEOUT_MS", default_value_t = 10_000)]
    pub install_snapshot_timeout_ms: u64,

    /// Most log entries sent in one AppendEntries RPC.
    #[arg(long, env = "GAMERAFT_MAX_PAYLOAD_ENTRIES", default_value_t = 300)]
    pub max_payload_entries: u64,

    /// Log entries kept after a snapshot, so slightly lagging followers catch up
    /// from the log instead of a snapshot.
    #[arg(long, env = "GAMERAFT_LOGS_KEPT_AFTER_SNAPSHOT", default_value_t = 1000)]
    pub logs_kept_after_snapshot: u64,

    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "GAMERAFT_SNAPSHOT_AFTER_LOGS", default_value_t = 5000)]
    pub snapshot_after_logs: u64,

    /// How often a follower checks that its leader's process still exists; a
    /// refused connection starts an election at once instead of after the
    /// leader lease. 0 disables the probe.
    #[arg(long, env = "GAMERAFT_LEADER_PROBE_MS", default_value_t = 250)]
    pub leader_probe_ms: u64,
}

/// How the HTTP API waits, forwards and bounds requests.
#[derive(Debug, Clone, Args)]
pub struct ApiSettings {
    /// How long a request that needs the leader waits for one to be known (or
    /// re-elected) before answering 503.
    #[arg(long, env = "GAMERAFT_LEADER_WAIT_MS", default_value_t = 5000)]
    pub leader_wait_ms: u64,

    /// How long a write waits to be committed before answering 504 (outcome
    /// unknown: the event may still commit).
    #[arg(long, env = "GAMERAFT_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,

    /// How long a join may take (catch-up as learner, then promotion).
    #[arg(long, env = "GAMERAFT_JOIN_TIMEOUT_MS", default_value_t = 60_000)]
    pub join_timeout_ms: u64,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "GAMERAFT_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// How many recent events' request ids the state machine remembers: a
    /// write repeating one of them is answered with the original log index
    /// instead of being appended again. The leader stamps its value into
    /// each entry, so every node decides the same way whatever its own flag.
    #[arg(long, env = "GAMERAFT_REQUEST_ID_WINDOW", default_value_t = 100_000)]
    pub request_id_window: u64,

    /// How many recent PlayerAction events the leader keeps in memory.
    #[arg(long, env = "GAMERAFT_RECENT_ACTIONS", default_value_t = 1024)]
    pub recent_actions: usize,

    /// Most critical events the leader puts in one Raft entry. Writes that
    /// arrive while earlier batches are being committed wait and leave
    /// together, in one entry and one fsync; a lone write leaves at once.
    #[arg(long, env = "GAMERAFT_WRITE_BATCH_MAX_EVENTS", default_value_t = 256)]
    pub write_batch_max_events: usize,

    /// Most bytes (the events' JSON) in one Raft entry; a single larger
    /// event still goes alone. With `--max-payload-entries` entries per
    /// AppendEntries this bounds the RPC size (gRPC's limit is 64 MiB).
    #[arg(long, env = "GAMERAFT_WRITE_BATCH_MAX_BYTES", default_value_t = 128 * 1024)]
    pub write_batch_max_bytes: usize,

    /// How many batches the leader may have proposed and not yet seen
    /// applied. The next batch gathers while these are in flight.
    #[arg(long, env = "GAMERAFT_WRITE_BATCHES_IN_FLIGHT", default_value_t = 2)]
    pub write_batches_in_flight: usize,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Boxed: OpenRaft's error is large and this one travels in `Result`s.
    #[error("invalid Raft timings: {0}")]
    Raft(Box<openraft::ConfigError>),
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    #[error("--join URL {url:?} is not an http:// URL")]
    JoinUrl { url: String },
    #[error("--bootstrap and --join exclude each other: found a new cluster, or join an existing one")]
    BootstrapAndJoin,
}

impl NodeConfig {
    /// Checks the whole configuration and builds OpenRaft's `Config` from it.
    pub fn validate(&self) -> Result<openraft::Config, ConfigError> {
        if self.bootstrap && self.join.is_some() {
            // Clap refuses both flags; both environment variables reach here.
            return Err(ConfigError::BootstrapAndJoin);
        }
        if let Some(url) = &self.join {
            if !url.starts_with("http://") {
                return Err(ConfigError::JoinUrl { url: url.clone() });
            }
        }
        for (name, value) in [
            ("--leader-wait-ms", self.api.leader_wait_ms),
            ("--write-timeout-ms", self.api.write_timeout_ms),
            ("--join-timeout-ms", self.api.join_timeout_ms),
            ("--max-body-bytes", self.api.max_body_bytes as u64),
            ("--snapshot-after-logs", self.raft.snapshot_after_logs),
            ("--request-id-window", self.api.request_id_window),
            ("--write-batch-max-events", self.api.write_batch_max_events as u64),
            ("--write-batch-max-bytes", self.api.write_batch_max_bytes as u64),
            ("--write-batches-in-flight", self.api.write_batches_in_flight as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        self.raft.to_openraft()
    }
}

impl RaftTimings {
    /// OpenRaft's `Config` for these timings.
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
    pub fn to_openraft(&self) -> Result<openraft::Config, ConfigError> {
        let as_given = openraft::Config {
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            ..Default::default()
        };
        as_given.validate().map_err(|e| ConfigError::Raft(Box::new(e)))?;
        let lease = self.election_timeout_max_ms / 2;
        let config = openraft::Config {
            cluster_name: "gameraft".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms.saturating_sub(lease).max(self.heartbeat_ms + 1),
            election_timeout_max: lease,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            max_payload_entries: self.max_payload_entries,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            ..Default::default()
        };
        config.validate().map_err(|e| ConfigError::Raft(Box::new(e)))
    }
}

impl ApiSettings {
    pub fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.leader_wait_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn join_timeout(&self) -> Duration {
        Duration::from_millis(self.join_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeConfig,
    }

    fn parse(args: &[&str]) -> NodeConfig {
        Cli::parse_from(std::iter::once("serve").chain(args.iter().copied())).node
    }

    #[test]
    fn defaults_are_the_designs() {
        let config = parse(&[]);
        assert_eq!(config.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.raft_addr, "0.0.0.0:5000".parse().unwrap());
        let raft = config.validate().unwrap();
        assert_eq!(raft.heartbeat_interval, 500);
        assert_eq!((config.raft.election_timeout_min_ms, config.raft.election_timeout_max_ms), (1500, 3000));
        // OpenRaft's lease plus its timeout: a campaign 2-3 s after the last heartbeat.
        assert_eq!((raft.election_timeout_min, raft.election_timeout_max), (501, 1500));
        assert_eq!(raft.install_snapshot_timeout, 10_000);
        assert_eq!(raft.max_payload_entries, 300);
        assert_eq!(raft.max_in_snapshot_log_to_keep, 1000);
        assert_eq!(config.data_dir, PathBuf::from("gameraft-data"));
        assert!(!config.in_memory, "durable by default");
    }

    #[test]
    fn openraft_lease_plus_timeout_spans_the_election_timeout() {
        let config =
            parse(&["--heartbeat-ms", "200", "--election-timeout-min-ms", "2100", "--election-timeout-max-ms", "2200"]);
        let raft = config.validate().unwrap();
        assert_eq!((raft.election_timeout_min, raft.election_timeout_max), (1000, 1100));
        let too_close =
            parse(&["--heartbeat-ms", "500", "--election-timeout-min-ms", "900", "--election-timeout-max-ms", "1000"]);
        assert!(matches!(too_close.validate(), Err(ConfigError::Raft(_))), "max must exceed twice the heartbeat");
    }

    #[test]
    fn election_timeout_must_exceed_heartbeat() {
        let config = parse(&["--heartbeat-ms", "500", "--election-timeout-min-ms", "400"]);
        assert!(matches!(config.validate(), Err(ConfigError::Raft(_))));
    }

    #[test]
    fn write_batches_default_to_256_events_128_kib_and_2_in_flight_and_none_may_be_0() {
        let config = parse(&[]);
        let api = &config.api;
        assert_eq!(
            (api.write_batch_max_events, api.write_batch_max_bytes, api.write_batches_in_flight),
            (256, 131_072, 2)
        );
        for flag in ["--write-batch-max-events", "--write-batch-max-bytes", "--write-batches-in-flight"] {
            let config = parse(&[flag, "0"]);
            assert!(matches!(config.validate(), Err(ConfigError::Zero(name)) if name == flag), "{flag}");
        }
    }

    #[test]
    fn bootstrap_and_join_exclude_each_other() {
        let parsed = Cli::try_parse_from(["serve", "--bootstrap", "--join", "http://10.0.0.1:8080"]);
        assert!(parsed.is_err(), "both flags at once are refused");
        let mut config = parse(&["--bootstrap"]);
        assert!(config.bootstrap);
        config.join = Some("http://10.0.0.1:8080".into());
        assert!(matches!(config.validate(), Err(ConfigError::BootstrapAndJoin)));
        assert!(!parse(&[]).bootstrap, "never the default");
    }

    #[test]
    fn join_url_must_be_http() {
        let config = parse(&["--join", "10.0.0.1:8080"]);
        assert!(matches!(config.validate(), Err(ConfigError::JoinUrl { .. })));
    }
}
