//! Evidence that gameraft keeps its promises under faults.
//!
//! ```text
//!   workload (10 clients) ──HTTP──▶ nodes in network namespaces ◀── nemesis
//!        │                            (or on 127.0.0.x)            (kill, pause,
//!        ▼                                                          partition, loss,
//!   history.jsonl ──▶ checker ◀── every node's final log             delay, membership)
//! ```
//!
//! The workload records every operation with its invoke and complete times
//! and outcome ([`history`]); after the faults stop and the cluster heals, the
//! [`checker`] reads every node's log and checks the history against it.
//! [`hosts`] (network namespaces on a bridge) is also what the cluster tests
//! use to run nodes as separate machines.

pub mod checker;
pub mod history;
pub mod hosts;
