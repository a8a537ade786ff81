//! gameraft: a Raft-replicated event log for a fleet of game-server workers.
//!
//! The write path, `POST /events`, hop by hop (`file::function`):
//!
//! ```text
//!  client ─HTTP─> api/events.rs::post_event        parse (api/extract.rs::ApiJson), pick the request id
//!                   │                               (api/request_id.rs::client_request_id, for_write)
//!                   ▼
//!                 api/forward.rs::on_leader ─────── not the leader: the same request over HTTP/2 to the
//!                   │ leader                        leader's Raft port (network/listener.rs, peer TLS),
//!                   │                               its post_event; the answer relayed unchanged
//!                   ▼
//!                 api/events.rs::write_critical
//!                   ▼
//!                 proposer/mod.rs::Proposer::propose (write timeout)
//!                   ▼
//!                 proposer/batcher.rs::Batcher::write ─> run: queued writes cut into one EventBatch
//!                   ▼                                        ─> Raft::client_write_ff
//!                 openraft ─> raft_log/file_store.rs::append (fsync)
//!                   │      └> network/client.rs::append_entries ─gRPC─> peers' network/server.rs
//!                   ▼ committed, in log order, on every node
//!                 state_machine/mod.rs::apply ─> state_machine/apply.rs::apply_entries
//!                   │   exactly-once rule: apply.rs::decide (ids held in request_ids.rs)
//!                   │   records: state_machine/event_store.rs::EntryWriter::push, flush
//!                   ▼ one EventOutcome per event
//!                 proposer/batcher.rs::answer ─> Proposer::propose returns
//!                   ▼
//!  client <─HTTP─ api/events.rs::committed  {"success":true,"message":..,"log_index":N}
//! ```
//!
//! - [`event`]: the design's event types and their exact JSON form.
//! - [`types`]: OpenRaft's type configuration; a Raft entry carries a batch of events.
//! - [`api`]: the HTTP API: parsing, answers and errors, forwarding to the leader.
//! - [`auth`]: client bearer tokens and their roles, checked before any handler.
//! - [`proposer`]: the write path to Raft: request ids, batching, the write timeout.
//! - [`node`]: start-up (bind, Raft, servers, bootstrap or join) and shutdown.
//! - [`advertise`]: the host a node advertises (flag, ECS task metadata, route to the peers).
//! - [`membership`]: joining (learner, catch-up, promotion) and removal, on the leader;
//!   [`formation`]: identical nodes forming one cluster from discovered peers.
//! - [`network`]: OpenRaft's RPCs over gRPC, with typed protobuf messages; the Raft port's
//!   listener, which also takes the requests followers forward to the leader.
//! - [`tls`]: peer TLS (cluster CA, node certificates naming their node id) and HTTPS.
//! - [`disk`]: the data directory, every on-disk format and its version, checksummed records;
//!   [`raft_log`]: the Raft log store; [`state_machine`]: the committed events on disk,
//!   snapshots as a prefix of the event file.
//! - [`proto`]: the protobuf form of OpenRaft's messages, sent by [`network`] and stored by [`raft_log`].
//! - [`registry`]: node id to addresses, mirrored from the Raft membership.
//! - [`failover`]: campaigns at once when the leader's process is gone.
//! - [`reaper`]: with `--reap-after-ms`, the leader removes members it cannot reach, within
//!   limits (a minimum of voters, a reachable majority, one at a time).
//! - [`handoff`]: a stopping leader hands its leadership to a caught-up follower (TimeoutNow).
//! - [`identity`]: the cluster id and node incarnation every peer RPC carries and is checked
//!   against, so a wiped node cannot vote as the member it was.
//! - [`ephemeral`]: the leader's in-memory state for ephemeral events.
//! - [`config`]: every flag, its default and validation; [`cluster`]: `gameraft cluster`;
//!   [`stop_signals`]: the signals that stop `serve` and `cluster`, listened for from the start.
//! - [`client`]: a typed HTTP client for one node.
//! - [`backup`]: `gameraft backup` (a consistent copy of the events, served by `GET /backup`)
//!   and `gameraft restore` (a new cluster's first node from one).

pub mod advertise;
pub mod api;
pub mod auth;
pub mod backup;
pub mod client;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod ephemeral;
pub mod event;
pub mod failover;
pub mod formation;
pub mod handoff;
pub mod identity;
pub mod launcher;
pub mod locks;
pub mod membership;
pub mod network;
pub mod node;
pub mod proposer;
pub mod proto;
pub mod raft_log;
pub mod reaper;
pub mod registry;
pub mod state_machine;
pub mod stop_signals;
pub mod tls;
pub mod types;
