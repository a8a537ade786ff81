//! gameraft: a Raft-replicated event log for a fleet of game-server workers.
pub mod event;
pub mod network;
pub mod registry;
pub mod state_machine;
pub mod storage;
pub mod types;
