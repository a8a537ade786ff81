//! How long the HTTP API waits, and how much it accepts.

use std::time::Duration;

use clap::Args;

use super::ConfigError;

/// How many times a request may be forwarded from node to node, so that
/// nodes with briefly different views of the leader cannot bounce it forever.
pub const FORWARD_MAX_HOPS: u32 = 3;
/// How long a node tries to connect to the leader to forward a request.
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Defaults of the flags below, read by both clap and [`Default`].
mod defaults {
    pub const LEADER_WAIT_MS: u64 = 5000;
    pub const WRITE_TIMEOUT_MS: u64 = 10_000;
    pub const JOIN_TIMEOUT_MS: u64 = 60_000;
    pub const MAX_BODY_BYTES: usize = 64 * 1024;
    pub const RECENT_ACTIONS: usize = 1024;
    pub const STALLED_READER_TIMEOUT_MS: u64 = 30_000;
    pub const MAX_CONNECTIONS: usize = 1024;
    pub const MAX_PLAYERS: usize = 100_000;
    pub const MAX_MEMBERS: usize = 64;
    pub const READ_TIMEOUT_MS: u64 = 10_000;
}

/// How the HTTP API waits, forwards and bounds requests.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "HTTP API")]
pub struct ApiSettings {
    /// How long a request that needs the leader waits for one to be known (or
    /// re-elected) before answering 503.
    #[arg(long, env = "GAMERAFT_LEADER_WAIT_MS", default_value_t = defaults::LEADER_WAIT_MS)]
    pub leader_wait_ms: u64,

    /// How long a write waits to be committed before answering 504 (outcome
    /// unknown: the event may still commit).
    #[arg(long, env = "GAMERAFT_WRITE_TIMEOUT_MS", default_value_t = defaults::WRITE_TIMEOUT_MS)]
    pub write_timeout_ms: u64,

    /// How long a join may take (catch-up as learner, then promotion).
    #[arg(long, env = "GAMERAFT_JOIN_TIMEOUT_MS", default_value_t = defaults::JOIN_TIMEOUT_MS)]
    pub join_timeout_ms: u64,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "GAMERAFT_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// How many recent PlayerAction events the leader keeps in memory.
    #[arg(long, env = "GAMERAFT_RECENT_ACTIONS", default_value_t = defaults::RECENT_ACTIONS)]
    pub recent_actions: usize,

    /// Most players whose latest position the leader keeps; past it, the
    /// player that moved longest ago is forgotten.
    #[arg(long, env = "GAMERAFT_MAX_PLAYERS", default_value_t = defaults::MAX_PLAYERS)]
    pub max_players: usize,

    /// How long the node waits for a client that stopped reading its
    /// answer (a streamed `GET /events`, or any other) before it cuts the
    /// answer off and resets the connection.
    #[arg(long, env = "GAMERAFT_STALLED_READER_TIMEOUT_MS", default_value_t = defaults::STALLED_READER_TIMEOUT_MS)]
    pub stalled_reader_timeout_ms: u64,

    /// Most HTTP connections open at once; more wait, unaccepted, in the
    /// kernel's queue (they take no file descriptor of this process).
    #[arg(long, env = "GAMERAFT_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most members (voters and learners) the leader lets the cluster have:
    /// past it, a new node's join is refused (409). Each member is a
    /// replication stream the leader feeds and a connection it holds, and a
    /// learner that never catches up stays a member until removed.
    #[arg(long, env = "GAMERAFT_MAX_MEMBERS", default_value_t = defaults::MAX_MEMBERS)]
    pub max_members: usize,

    /// A client must send each request's headers, and its body, within this;
    /// a connection idle for this long between requests is closed.
    #[arg(long, env = "GAMERAFT_READ_TIMEOUT_MS", default_value_t = defaults::READ_TIMEOUT_MS)]
    pub read_timeout_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            leader_wait_ms: defaults::LEADER_WAIT_MS,
            write_timeout_ms: defaults::WRITE_TIMEOUT_MS,
            join_timeout_ms: defaults::JOIN_TIMEOUT_MS,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            recent_actions: defaults::RECENT_ACTIONS,
            max_players: defaults::MAX_PLAYERS,
            stalled_reader_timeout_ms: defaults::STALLED_READER_TIMEOUT_MS,
            max_connections: defaults::MAX_CONNECTIONS,
            max_members: defaults::MAX_MEMBERS,
            read_timeout_ms: defaults::READ_TIMEOUT_MS,
        }
    }
}

impl ApiSettings {
    /// No wait, body limit or count limit may be 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("--leader-wait-ms", self.leader_wait_ms),
            ("--write-timeout-ms", self.write_timeout_ms),
            ("--join-timeout-ms", self.join_timeout_ms),
            ("--max-body-bytes", self.max_body_bytes as u64),
            ("--stalled-reader-timeout-ms", self.stalled_reader_timeout_ms),
            ("--max-connections", self.max_connections as u64),
            ("--max-members", self.max_members as u64),
            ("--read-timeout-ms", self.read_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    pub fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.leader_wait_ms)
    }
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
    pub fn stalled_reader_timeout(&self) -> Duration {
        Duration::from_millis(self.stalled_reader_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn join_timeout(&self) -> Duration {
        Duration::from_millis(self.join_timeout_ms)
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

    /// The shortest request-id window (`--request-id-window-secs`) that
    /// keeps the 504's promise with these timers: a write sent again with
    /// its id, as soon as the first attempt is answered, is appended at most
    /// once. Every entry carrying the first attempt is stamped at or after
    /// it was sent; the retry leaves at most [`Self::answer_bound`] later
    /// and any copy of it is proposed within [`Self::proposal_bound`] of
    /// that. 100 s with the default timers.
    pub fn request_id_window_needed(&self) -> Duration {
        self.answer_bound() + self.proposal_bound()
    }
}
