//! gameraft: a Raft-replicated event log for a fleet of game-server workers.
pub mod api;
pub mod client;
pub mod cluster;
pub mod config;
pub mod ephemeral;
pub mod event;
pub mod failover;
pub mod membership;
pub mod network;
pub mod node;
pub mod registry;
pub mod state_machine;
pub mod storage;
pub mod types;
