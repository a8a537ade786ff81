//! gameraft: a Raft-replicated event log for a fleet of game-server workers.
//!
//! A write travels like this (every box is a module):
//!
//! ```text
//!  client ──HTTP──> api (axum) ──[follower: forward to leader's api]──┐
//!                     │ leader                                         │
//!                     ▼                                                ▼
//!               Raft::client_write ── openraft core ── storage (log store, vote)
//!                     │                     │
//!                     │                     └── network (tonic gRPC) ──> followers' Raft
//!                     ▼                                                   │
//!               state_machine::apply  <── committed entries, same order ──┘ on every node
//!                     │
//!  client <──HTTP── api: {"success":true,"log_index":N}
//! ```
//!
//! - [`event`]: the design's event types and their exact JSON form.
//! - [`types`]: OpenRaft's type configuration; a Raft entry carries a batch of events.
//! - [`api`]: the HTTP API, its errors, and forwarding to the leader.
//! - [`node`]: start-up (bind, Raft, servers, bootstrap or join) and shutdown.
//! - [`membership`]: joining (learner, catch-up, promotion) and removal, on the leader.
//! - [`network`]: OpenRaft's RPCs over gRPC, with typed protobuf messages.
//! - [`storage`]: the data directory and the Raft log store (checksummed segments, fsynced);
//!   [`state_machine`]: the committed events on disk, snapshots as a prefix of the event file.
//! - [`registry`]: node id to addresses, mirrored from the Raft membership.
//! - [`failover`]: campaigns at once when the leader's process is gone.
//! - [`identity`]: the cluster id and node incarnation every peer RPC carries and is checked
//!   against, so a wiped node cannot vote as the member it was.
//! - [`ephemeral`]: the leader's in-memory state for ephemeral events.
//! - [`config`]: every flag, its default and validation; [`cluster`]: `gameraft cluster`.
//! - [`client`]: a typed HTTP client for one node.

pub mod api;
pub mod client;
pub mod cluster;
pub mod config;
pub mod ephemeral;
pub mod event;
pub mod failover;
pub mod identity;
pub mod launcher;
pub mod locks;
pub mod membership;
pub mod network;
pub mod node;
pub mod registry;
pub mod state_machine;
pub mod storage;
pub mod types;
