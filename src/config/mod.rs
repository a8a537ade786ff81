//! One node's configuration: every knob, its default, and its validation,
//! grouped by concern.
//!
//! Each field is a `gameraft serve` flag and an environment variable; each
//! group is a struct that clap flattens into [`NodeConfig`] under its own
//! help heading, and whose [`Default`] is the flags' defaults (both read the
//! same constants in the group's file):
//!
//! | group | file | flags |
//! |---|---|---|
//! | [`IdentitySettings`] | `identity.rs` | id, listen and advertised addresses, `--bootstrap`/`--join` |
//! | [`StorageSettings`] | `storage.rs` | `--data-dir`, `--in-memory` |
//! | [`RaftTimings`] | `raft.rs` | heartbeat, election timeout, snapshots, leader probe |
//! | [`ApiSettings`] | `api.rs` | waits, timeouts and limits of the HTTP API |
//! | [`BatchSettings`] | `batching.rs` | how the leader batches critical writes |
//! | [`ExactlyOnceSettings`] | `exactly_once.rs` | the request-id window |
//! | [`ReapSettings`] | `reaping.rs` | removing members that stay unreachable |
//! | [`FaultInjection`] | `faults.rs` | hidden flags for the chaos harness |
//!
//! [`NodeConfig::validate`] only checks: each group's own rules, then the
//! rules across groups (the request-id window against the API's timers, the
//! largest entry against the record and message limits). It builds nothing;
//! OpenRaft's `Config` comes from [`RaftTimings::to_openraft`] once the
//! configuration is known to be valid.

mod api;
mod auth;
mod batching;
mod exactly_once;
mod faults;
mod formation;
mod identity;
mod raft;
mod reaping;
mod storage;

use std::time::Duration;

use clap::Args;

pub use api::{ApiSettings, FORWARD_CONNECT_TIMEOUT, FORWARD_MAX_HOPS};
pub use auth::AuthSettings;
pub use batching::BatchSettings;
pub use exactly_once::{ExactlyOnceSettings, MAX_REQUEST_ID_BYTES};
pub use faults::FaultInjection;
pub use formation::FormationSettings;
pub use identity::IdentitySettings;
pub use raft::RaftTimings;
pub use reaping::{ReapSettings, MIN_REAP_AFTER_MS};
pub use storage::StorageSettings;

use crate::disk::record::MAX_PAYLOAD_LEN;
use crate::network::MAX_MESSAGE_BYTES;
use crate::types::{ENTRY_OVERHEAD_BYTES, EVENT_OVERHEAD_BYTES};

/// Room in one AppendEntries message for everything besides its entries.
const APPEND_ENTRIES_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Configuration of one node (`gameraft serve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct NodeConfig {
    #[command(flatten)]
    pub identity: IdentitySettings,

    #[command(flatten)]
    pub formation: FormationSettings,

    #[command(flatten)]
    pub storage: StorageSettings,

    #[command(flatten)]
    pub raft: RaftTimings,

    #[command(flatten)]
    pub api: ApiSettings,

    #[command(flatten)]
    pub batching: BatchSettings,

    #[command(flatten)]
    pub exactly_once: ExactlyOnceSettings,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub reaping: ReapSettings,

    #[command(flatten)]
    pub faults: FaultInjection,
}

/// A configuration that cannot work. Each message names the flags to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    #[error(
        "this node listens on {addr}, beyond this machine, without {missing}: anyone who reaches it could \
         {exposure}. Give it {missing}, listen on 127.0.0.1 only, or pass --insecure to run it open on a \
         private network"
    )]
    OpenBeyondLoopback { addr: std::net::SocketAddr, missing: &'static str, exposure: &'static str },
    #[error(
        "--reap-after-ms {ms} is shorter than {min_ms}: the leader probes each member once a second, and one \
         lost probe must not remove a member; use 0 to turn reaping off"
    )]
    ReapAfterTooShort { ms: u64, min_ms: u64 },
    #[error(
        "--max-members ({max_members}) must be greater than --reap-min-voters ({min_voters}) when \
         --reap-after-ms is set: a cluster of --reap-min-voters voters keeps a dead voter until its \
         replacement has joined, which needs room for one more member"
    )]
    NoRoomToReplace { max_members: usize, min_voters: usize },
    #[error("--join URL {url:?} is not an http:// or https:// URL")]
    JoinUrl { url: String },
    #[error(
        "--bootstrap-expect excludes --bootstrap and --join: identical nodes form their cluster from their \
         peers; a single founder uses --bootstrap, and other nodes --join"
    )]
    FormationAndBootstrapOrJoin,
    #[error("--bootstrap-expect needs the initial members: --peers HOST:PORT,... or --discovery-dns NAME")]
    FormationWithoutPeers,
    #[error("--peers and --discovery-dns need --bootstrap-expect N: how many initial members found the cluster")]
    PeersWithoutExpect,
    #[error("--bootstrap and --join exclude each other: found a new cluster, or join an existing one")]
    BootstrapAndJoin,
    #[error(
        "--election-timeout-min-ms ({min_ms}) must be less than --election-timeout-max-ms ({max_ms}) rounded \
         down to an even number ({}): half the maximum is OpenRaft's leader lease, and the minimum less the \
         lease is OpenRaft's shortest election timeout, which must be below the lease",
        .max_ms - .max_ms % 2
    )]
    ElectionTimeoutRange { min_ms: u64, max_ms: u64 },
    #[error("--election-timeout-min-ms ({min_ms}) must be greater than --heartbeat-ms ({heartbeat_ms})")]
    ElectionTimeoutNotAboveHeartbeat { min_ms: u64, heartbeat_ms: u64 },
    #[error(
        "--election-timeout-max-ms ({max_ms}) must be at least {} (twice --heartbeat-ms {heartbeat_ms}, plus 4): \
         half of it is OpenRaft's leader lease, and OpenRaft's own election timeouts lie between the heartbeat \
         and that lease",
        .heartbeat_ms.saturating_add(2).saturating_mul(2)
    )]
    ElectionTimeoutMaxTooShort { max_ms: u64, heartbeat_ms: u64 },
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
    /// Checks the whole configuration, group by group and then across
    /// groups; the first rule broken is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.identity.validate()?;
        self.formation.validate()?;
        if self.formation.enabled() && (self.identity.bootstrap || self.identity.join.is_some()) {
            return Err(ConfigError::FormationAndBootstrapOrJoin);
        }
        self.raft.validate()?;
        self.api.validate()?;
        self.batching.validate()?;
        self.exactly_once.validate()?;
        self.reaping.validate()?;
        self.check_room_to_replace()?;
        self.check_request_id_window()?;
        self.check_size_limits()?;
        self.check_exposure()
    }

    /// A node reachable beyond this machine checks client tokens on its HTTP
    /// API and peer certificates on its Raft port, unless it is told to run
    /// open (`--insecure`).
    fn check_exposure(&self) -> Result<(), ConfigError> {
        let (missing, exposure) = match (&self.auth.auth_tokens_file, &self.auth.peer_tls_dir) {
            (Some(_), Some(_)) => return Ok(()),
            _ if self.auth.insecure => return Ok(()),
            (None, None) => (
                "--auth-tokens-file FILE (tokens from `gameraft token new`) and --peer-tls-dir DIR \
                 (certificates from `gameraft certs`)",
                "write events, change the membership, or act as a peer",
            ),
            (None, Some(_)) => {
                ("--auth-tokens-file FILE (tokens from `gameraft token new`)", "write events and change the membership")
            }
            (Some(_), None) => {
                ("--peer-tls-dir DIR (certificates from `gameraft certs`)", "act as a peer and append events")
            }
        };
        match [self.identity.http_addr, self.identity.raft_addr].into_iter().find(|addr| !addr.ip().is_loopback()) {
            Some(addr) => Err(ConfigError::OpenBeyondLoopback { addr, missing, exposure }),
            None => Ok(()),
        }
    }

    /// With reaping on, a replacement must be able to join while the dead
    /// voter it replaces is still a member (`reaper.rs`).
    fn check_room_to_replace(&self) -> Result<(), ConfigError> {
        let (max_members, min_voters) = (self.api.max_members, self.reaping.reap_min_voters);
        if self.reaping.reap_after().is_some() && max_members <= min_voters {
            return Err(ConfigError::NoRoomToReplace { max_members, min_voters });
        }
        Ok(())
    }

    /// How long after the first attempt a retry with the same id is still
    /// recognised, whatever path each attempt takes: what the 504 promises.
    /// The window less [`ApiSettings::proposal_bound`]: 56 s with the
    /// defaults; never shorter than [`ApiSettings::answer_bound`] in a
    /// configuration that passed validation.
    pub fn retry_horizon(&self) -> Duration {
        self.exactly_once.request_id_window().saturating_sub(self.api.proposal_bound())
    }

    /// The largest Raft entry the API can build: a batch is cut at
    /// `--write-batch-max-bytes`, but one event goes alone whatever its size,
    /// and it is at most a body plus a request id sent in a header. Every
    /// event counts [`EVENT_OVERHEAD_BYTES`] on top of its JSON, and every
    /// entry [`ENTRY_OVERHEAD_BYTES`] (see `types/mod.rs`): the batcher cuts by
    /// the same measure, and never builds a larger entry.
    pub fn max_entry_bytes(&self) -> u64 {
        let batch = self.batching.write_batch_max_bytes as u64;
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

    /// The request-id window against the API's timers: it must cover a
    /// retry sent as soon as a 504 answers the first attempt
    /// ([`ApiSettings::request_id_window_needed`]).
    fn check_request_id_window(&self) -> Result<(), ConfigError> {
        let needed = self.api.request_id_window_needed();
        if self.exactly_once.request_id_window() < needed {
            return Err(ConfigError::RequestIdWindowTooShort {
                window_secs: self.exactly_once.request_id_window_secs,
                needed_secs: needed.as_secs_f64().ceil() as u64,
            });
        }
        Ok(())
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

#[cfg(test)]
mod tests;
