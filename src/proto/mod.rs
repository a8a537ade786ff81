//! The protobuf form of OpenRaft's messages and entries (`proto/raft.proto`).
//!
//! One schema serves two purposes: peers exchange these messages over gRPC
//! ([`crate::network`]), and the Raft log stores each entry as a `pb::Entry`
//! ([`crate::disk::format`]). Changing `proto/raft.proto` therefore changes
//! the disk format as well as the wire: keep field numbers, and bump
//! [`crate::disk::format::FORMAT`] for any change an older node could not read.

mod convert;

pub use convert::ConvertError;

/// Code generated from `proto/raft.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("gameraft.raft.v1");
}
