//! The peer network: OpenRaft's RPCs carried over gRPC (tonic).
//!
//! ```text
//!  leader: openraft core ──> PeerNetwork (client.rs) ──gRPC──> RaftGrpcService (server.rs) ──> follower's Raft
//! ```
//!
//! The Raft port also carries client requests that a follower forwards to
//! the leader (`api/forward.rs`), so that with peer TLS
//! (`listener.rs`, [`crate::tls`]) they are protected the same way.
//!
//! Messages are typed protobuf (`proto/raft.proto`); [`crate::proto`] maps them
//! to and from OpenRaft's types.

pub mod client;
pub mod fault;
pub mod listener;
pub mod server;

pub use client::PeerNetwork;
pub use server::RaftGrpcService;

/// Largest gRPC message either side accepts: a full AppendEntries batch or a
/// snapshot chunk must fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
