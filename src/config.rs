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

use crate::network::MAX_MESSAGE_BYTES;
use crate::storage::record::MAX_PAYLOAD_LEN;
use crate::types::{NodeId, ENTRY_OVERHEAD_BYTES, EVENT_OVERHEAD_BYTES};

/// How many times a request may be forwarded from node to node, so that
/// nodes with briefly different views of the leader cannot bounce it forever.
pub const FORWARD_MAX_HOPS: u32 = 3;
/// How long a node tries to connect to the leader to forward a request.
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Room in one AppendEntries message for everything besides its entries.
const APPEND_ENTRIES_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Longest request id accepted, in bytes (`api/request_id.rs` refuses
/// longer ones). It joins the event in the Raft entry, so it counts in
/// [`NodeConfig::max_entry_bytes`].
pub const MAX_REQUEST_ID_BYTES: usize = 128;

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

    /// How long, in seconds of the leaders' clocks, a request id is
    /// remembered: a write repeating one applied that recently is answered
    /// with the original log index instead of being appended again. The
    /// leader stamps its time and this value into each entry, so every node
    /// decides the same way whatever its own flag. Must cover a retry after
    /// a 504: see [`ApiSettings::request_id_window_needed`].
    #[arg(long, env = "GAMERAFT_REQUEST_ID_WINDOW_SECS", default_value_t = 120)]
    pub request_id_window_secs: u64,

    /// How many recent PlayerAction events the leader keeps in memory.
    #[arg(long, env = "GAMERAFT_RECENT_ACTIONS", default_value_t = 1024)]
    pub recent_actions: usize,

    /// Most critical events the leader puts in one Raft entry. Writes that
    /// arrive while earlier batches are being committed wait and leave
    /// together, in one entry and one fsync; a lone write leaves at once.
    #[arg(long, env = "GAMERAFT_WRITE_BATCH_MAX_EVENTS", default_value_t = 256)]
    pub write_batch_max_events: usize,

    /// Most bytes (the events' JSON) in one Raft entry; a single larger
    /// event still goes alone. Checked at start, with `--max-body-bytes`,
    /// against the record limit (64 MiB) and, times `--max-payload-entries`,
    /// against the gRPC message limit (64 MiB).
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
    #[error(
        "--request-id-window-secs {window_secs} is shorter than a retry can take: with --leader-wait-ms and \
         --write-timeout-ms as set, a write retried at once after its 504 can be proposed up to {needed_secs} s \
         after the first attempt, so the window must be at least that"
    )]
    RequestIdWindowTooShort { window_secs: u64, needed_secs: u64 },
    #[error(
        "one Raft entry may take {entry_bytes} bytes (the larger of --write-batch-max-bytes and \
         --max-body-bytes, plus a request id and encoding overhead), over the {limit}-byte record limit"
    )]
    EntryOverRecordLimit { entry_bytes: u64, limit: u64 },
    #[error(
        "--max-payload-entries {entries} entries of up to {entry_bytes} bytes (the larger of \
         --write-batch-max-bytes and --max-body-bytes, plus overhead) make an AppendEntries message over the \
         {limit}-byte gRPC limit: lower one of the three"
    )]
    AppendEntriesOverMessageLimit { entries: u64, entry_bytes: u64, limit: u64 },
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
            ("--request-id-window-secs", self.api.request_id_window_secs),
            ("--write-batch-max-events", self.api.write_batch_max_events as u64),
            ("--write-batch-max-bytes", self.api.write_batch_max_bytes as u64),
            ("--write-batches-in-flight", self.api.write_batches_in_flight as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let needed = self.api.request_id_window_needed();
        if self.api.request_id_window() < needed {
            return Err(ConfigError::RequestIdWindowTooShort {
                window_secs: self.api.request_id_window_secs,
                needed_secs: needed.as_secs_f64().ceil() as u64,
            });
        }
        self.check_size_limits()?;
        self.raft.to_openraft()
    }

    /// The largest Raft entry the API can build: a batch is cut at
    /// `--write-batch-max-bytes`, but one event goes alone whatever its size,
    /// and it is at most a body plus a request id sent in a header. Every
    /// event counts [`EVENT_OVERHEAD_BYTES`] on top of its JSON, and every
    /// entry [`ENTRY_OVERHEAD_BYTES`] (see `types.rs`): the batcher cuts by
    /// the same measure, and never builds a larger entry.
    pub fn max_entry_bytes(&self) -> u64 {
        let batch = self.api.write_batch_max_bytes as u64;
        let single = self.api.max_body_bytes as u64 + MAX_REQUEST_ID_BYTES as u64 + EVENT_OVERHEAD_BYTES as u64;
        batch.max(single) + ENTRY_OVERHEAD_BYTES as u64
    }

    /// The largest entry a peer accepts: a record of its log must be
    /// readable, and `--max-payload-entries` of them must fit in one
    /// AppendEntries message.
    pub fn entry_limit_bytes(&self) -> u64 {
        let per_message = MAX_MESSAGE_BYTES as u64 - APPEND_ENTRIES_OVERHEAD_BYTES;
        (per_message / self.raft.max_payload_entries.max(1)).min(u64::from(MAX_PAYLOAD_LEN))
    }

    /// The body and batch limits against the record and gRPC message
    /// limits: an entry the API accepts must be one every peer can store
    /// and receive, or replication would fail on it forever.
    fn check_size_limits(&self) -> Result<(), ConfigError> {
        let entry_bytes = self.max_entry_bytes();
        if entry_bytes > u64::from(MAX_PAYLOAD_LEN) {
            return Err(ConfigError::EntryOverRecordLimit { entry_bytes, limit: u64::from(MAX_PAYLOAD_LEN) });
        }
        if entry_bytes > self.entry_limit_bytes() {
            return Err(ConfigError::AppendEntriesOverMessageLimit {
                entries: self.raft.max_payload_entries,
                entry_bytes,
                limit: MAX_MESSAGE_BYTES as u64,
            });
        }
        Ok(())
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
    pub fn request_id_window(&self) -> Duration {
        Duration::from_secs(self.request_id_window_secs)
    }

    /// How long a node waits for the leader's answer to a request it
    /// forwarded: the leader's own wait for a leader and its write, and 5 s
    /// for the trip.
    pub fn forward_timeout(&self) -> Duration {
        self.leader_wait() + self.write_timeout() + Duration::from_secs(5)
    }

    /// The latest after a client sent a write that any node proposes a copy
    /// of it. Each node on its way (the first and up to
    /// [`FORWARD_MAX_HOPS`] more) holds it at most its wait for a leader,
    /// its own write attempt (which may end in "not the leader", and then
    /// it forwards) and a refused connect, before proposing it or passing
    /// it on. 64 s with the default timers.
    pub fn proposal_bound(&self) -> Duration {
        let per_node = self.leader_wait() + self.write_timeout() + FORWARD_CONNECT_TIMEOUT;
        per_node * (FORWARD_MAX_HOPS + 1)
    }

    /// The longest before the client has an answer: the first node's wait
    /// for a leader, its own write, a refused connect, and one forward.
    /// 36 s with the default timers.
    pub fn answer_bound(&self) -> Duration {
        self.leader_wait() + self.write_timeout() + FORWARD_CONNECT_TIMEOUT + self.forward_timeout()
    }

    /// The shortest request-id window that keeps the 504's promise: a write
    /// sent again with its id, as soon as the first attempt is answered, is
    /// appended at most once. Every entry carrying the first attempt is
    /// stamped at or after it was sent; the retry leaves at most
    /// [`Self::answer_bound`] later and any copy of it is proposed within
    /// [`Self::proposal_bound`] of that. 100 s with the default timers.
    pub fn request_id_window_needed(&self) -> Duration {
        self.answer_bound() + self.proposal_bound()
    }

    /// How long after the first attempt a retry with the same id is still
    /// recognised, whatever path each attempt takes: what the 504 promises.
    /// 56 s with the defaults; never shorter than [`Self::answer_bound`] in
    /// a configuration that passed validation.
    pub fn retry_horizon(&self) -> Duration {
        self.request_id_window().saturating_sub(self.proposal_bound())
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
    fn the_request_id_window_defaults_to_120_s_and_must_cover_a_retry_after_a_504() {
        let config = parse(&[]);
        assert_eq!(config.api.request_id_window(), Duration::from_secs(120));
        assert_eq!(config.api.request_id_window_needed(), Duration::from_secs(100), "36 s answer + 64 s proposal");
        assert_eq!(config.api.retry_horizon(), Duration::from_secs(56));
        assert!(config.validate().is_ok());

        let short = parse(&["--request-id-window-secs", "99"]);
        let err = short.validate().expect_err("99 s < 100 s");
        assert!(matches!(err, ConfigError::RequestIdWindowTooShort { window_secs: 99, needed_secs: 100 }), "{err:?}");
        assert!(err.to_string().contains("--request-id-window-secs"), "{err}");
        // Shorter timers allow a shorter window.
        let fast = parse(&["--request-id-window-secs", "20", "--leader-wait-ms", "500", "--write-timeout-ms", "1000"]);
        assert!(fast.validate().is_ok(), "needs {:?}", fast.api.request_id_window_needed());
    }

    #[test]
    fn body_and_batch_limits_must_fit_a_record_and_an_append_entries_message() {
        let config = parse(&[]);
        assert!(config.max_entry_bytes() <= config.entry_limit_bytes());

        // 1 MiB batches, 300 per AppendEntries: 300 MiB messages.
        let big_batches = parse(&["--write-batch-max-bytes", "1048576"]);
        let err = big_batches.validate().expect_err("over the gRPC limit");
        assert!(matches!(err, ConfigError::AppendEntriesOverMessageLimit { entries: 300, .. }), "{err:?}");
        for flag in ["--write-batch-max-bytes", "--max-body-bytes", "--max-payload-entries"] {
            assert!(err.to_string().contains(flag), "{err}");
        }
        // The same batches, fewer per message: fine.
        assert!(parse(&["--write-batch-max-bytes", "1048576", "--max-payload-entries", "50"]).validate().is_ok());
        // A body limit as large as the record limit: one event could not be stored.
        let big_bodies = parse(&["--max-body-bytes", "67108864", "--max-payload-entries", "1"]);
        let err = big_bodies.validate().expect_err("over the record limit");
        assert!(matches!(err, ConfigError::EntryOverRecordLimit { .. }), "{err:?}");
        assert!(err.to_string().contains("--max-body-bytes"), "{err}");
    }

    /// Every `serve` flag, its environment variable, its default and
    /// whether it is hidden: a public interface (the README's table), pinned
    /// here so that regrouping the settings cannot change it.
    #[test]
    fn the_flags_env_vars_and_defaults_are_the_documented_ones() {
        use clap::CommandFactory;
        let expected = [
            ("advertise-host", "ADVERTISE_HOST", "", false),
            ("bootstrap", "GAMERAFT_BOOTSTRAP", "", false),
            ("data-dir", "DATA_DIR", "gameraft-data", false),
            ("election-timeout-max-ms", "GAMERAFT_ELECTION_TIMEOUT_MAX_MS", "3000", false),
            ("election-timeout-min-ms", "GAMERAFT_ELECTION_TIMEOUT_MIN_MS", "1500", false),
            ("fault-crash-in-install-file", "GAMERAFT_FAULT_CRASH_IN_INSTALL_FILE", "", true),
            ("fault-peer-delay-file", "GAMERAFT_FAULT_PEER_DELAY_FILE", "", true),
            ("heartbeat-ms", "GAMERAFT_HEARTBEAT_MS", "500", false),
            ("http-addr", "HTTP_ADDR", "0.0.0.0:8080", false),
            ("id", "WORKER_ID", "", false),
            ("in-memory", "GAMERAFT_IN_MEMORY", "", false),
            ("install-snapshot-timeout-ms", "GAMERAFT_INSTALL_SNAPSHOT_TIMEOUT_MS", "10000", false),
            ("join", "MASTER_URL", "", false),
            ("join-timeout-ms", "GAMERAFT_JOIN_TIMEOUT_MS", "60000", false),
            ("leader-probe-ms", "GAMERAFT_LEADER_PROBE_MS", "250", false),
            ("leader-wait-ms", "GAMERAFT_LEADER_WAIT_MS", "5000", false),
            ("logs-kept-after-snapshot", "GAMERAFT_LOGS_KEPT_AFTER_SNAPSHOT", "1000", false),
            ("max-body-bytes", "GAMERAFT_MAX_BODY_BYTES", "65536", false),
            ("max-payload-entries", "GAMERAFT_MAX_PAYLOAD_ENTRIES", "300", false),
            ("raft-addr", "RAFT_ADDR", "0.0.0.0:5000", false),
            ("recent-actions", "GAMERAFT_RECENT_ACTIONS", "1024", false),
            ("request-id-window-secs", "GAMERAFT_REQUEST_ID_WINDOW_SECS", "120", false),
            ("snapshot-after-logs", "GAMERAFT_SNAPSHOT_AFTER_LOGS", "5000", false),
            ("write-batch-max-bytes", "GAMERAFT_WRITE_BATCH_MAX_BYTES", "131072", false),
            ("write-batch-max-events", "GAMERAFT_WRITE_BATCH_MAX_EVENTS", "256", false),
            ("write-batches-in-flight", "GAMERAFT_WRITE_BATCHES_IN_FLIGHT", "2", false),
            ("write-timeout-ms", "GAMERAFT_WRITE_TIMEOUT_MS", "10000", false),
        ];
        let command = Cli::command();
        let mut actual: Vec<_> = command
            .get_arguments()
            .map(|arg| {
                let defaults: Vec<_> = arg.get_default_values().iter().map(|v| v.to_string_lossy()).collect();
                (
                    arg.get_long().unwrap_or_default().to_string(),
                    arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default(),
                    defaults.join(","),
                    arg.is_hide_set(),
                )
            })
            .collect();
        actual.sort();
        let expected: Vec<_> = expected
            .iter()
            .map(|&(long, env, default, hidden)| (long.to_string(), env.to_string(), default.to_string(), hidden))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn join_url_must_be_http() {
        let config = parse(&["--join", "10.0.0.1:8080"]);
        assert!(matches!(config.validate(), Err(ConfigError::JoinUrl { .. })));
    }
}
