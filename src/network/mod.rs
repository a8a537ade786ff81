//! The peer network: OpenRaft's RPCs carried over gRPC (tonic).
//!
//! ```text
//!  leader: openraft core ──> PeerNetwork (client.rs) ──gRPC──> RaftGrpcService (server.rs) ──> follower's Raft
//! ```
//!
//! Messages are typed protobuf (`proto/raft.proto`); `convert.rs` maps them to
//! and from OpenRaft's types.

pub mod client;
pub mod convert;
pub mod fault;
pub mod server;

/// Code generated from `proto/raft.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("gameraft.raft.v1");
}

pub use client::PeerNetwork;
pub use server::RaftGrpcService;

/// Largest gRPC message either side accepts: a full AppendEntries batch or a
/// snapshot chunk must fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
