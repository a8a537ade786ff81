//! The history of one chaos run: what every client asked, when, and what it
//! was told.
//!
//! The workload appends one [`Op`] per operation to `history.jsonl`, one JSON
//! object per line, once the operation has completed (or the client gave up).
//! After the faults stop and the cluster heals, the harness reads every node's
//! log into `final-logs.json` ([`NodeLog`]s). The [`checker`](crate::checker)
//! needs nothing else.
//!
//! ```text
//! {"id":7,"client":2,"invoke_ns":1200,"complete_ns":5300,"outcome":"ok","f":"append",
//!  "request_id":"c2-7","player_id":7,"log_index":41,"duplicate":false,"attempts":2,"nodes":[1,3]}
//! {"id":8,"client":4,"invoke_ns":1500,"complete_ns":1900,"outcome":"ok","f":"read","node":2,
//!  "incarnation":0,"from":0,"total":1,"entries":[{"log_index":3,"request_id":"c1-1","player_id":1}]}
//! ```
//!
//! # Invariants the harness must keep
//! - All times are nanoseconds since the run started, taken from one monotonic
//!   clock in the harness process, so times of different clients compare.
//! - `invoke_ns` is taken before the first request is sent and `complete_ns`
//!   after the final answer arrived (or, for [`Outcome::Unknown`], when the
//!   client gave up). A wide interval is always safe; a narrow one is not.
//! - A `request_id` is used by exactly one append op, across all its retries;
//!   the checker relies on it to find the op's event in the final log.
//! - [`Outcome::Fail`] is recorded only when the append definitely was not
//!   applied (for example refused before it reached Raft). Anything else that
//!   is not a success (timeouts, resets, 5xx, ambiguous 503s) is
//!   [`Outcome::Unknown`].

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// How an operation ended, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server confirmed it: the append committed, the read returned.
    Ok,
    /// Definitely not applied. A failed append's event must never show up.
    Fail,
    /// May or may not have been applied (timeout, reset, ambiguous error).
    /// An unknown append's event may show up in the log, at most once.
    Unknown,
}

/// One event as a node reported it (`GET /log`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The Raft log index the node stored the event at.
    pub log_index: u64,
    /// The client's request id; `None` for an event that carries none, which
    /// the workload never sends (so the checker counts it as a phantom).
    #[serde(default)]
    pub request_id: Option<String>,
    pub player_id: u64,
}

/// What the operation did, with the fields only that kind has. Serialized
/// inline in [`Op`] with the tag `"f": "append" | "read"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum OpKind {
    /// Append one event carrying `request_id`, retried (with the same id) on
    /// other nodes until it got a final answer or the client gave up.
    Append {
        request_id: String,
        player_id: u64,
        /// The log index from the successful answer; `None` otherwise.
        #[serde(default)]
        log_index: Option<u64>,
        /// The server said the final answer was for a request id it had
        /// already applied (a retry of an append that had committed).
        #[serde(default)]
        duplicate: bool,
        /// Requests sent, including the first.
        attempts: u32,
        /// The nodes tried, in order, one per attempt.
        #[serde(default)]
        nodes: Vec<u64>,
    },
    /// Read one node's log, or a page of it (`GET /log?from=..&limit=..`).
    Read {
        node: u64,
        /// Bumped by the harness each time that node's process restarts: a
        /// restarted node may lag behind what it served before it died.
        incarnation: u32,
        /// The position of `entries[0]` in the node's log, counting events
        /// from 0 (not Raft log indexes); 0 for a read of the whole log.
        #[serde(default)]
        from: u64,
        /// How many events the node's log held when it answered. Missing (0)
        /// in histories without paging; see [`Op::read_len`].
        #[serde(default)]
        total: u64,
        /// The log as read, in order, starting at `from`; empty unless the
        /// read is ok.
        #[serde(default)]
        entries: Vec<Entry>,
    },
}

/// One client operation, from invocation to completion. One line of
/// `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique per run; ops are usually numbered in invocation order.
    pub id: u64,
    /// The logical client (Jepsen's "process") that ran the op.
    pub client: u32,
    /// Nanoseconds since the run started, before the first request was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started, after the final answer arrived; for
    /// [`Outcome::Unknown`], when the client gave up.
    pub complete_ns: u64,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub kind: OpKind,
}

impl Op {
    /// The request id if this is an append.
    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            OpKind::Append { request_id, .. } => Some(request_id),
            OpKind::Read { .. } => None,
        }
    }

    pub fn is_append(&self) -> bool {
        matches!(self.kind, OpKind::Append { .. })
    }

    pub fn is_read(&self) -> bool {
        matches!(self.kind, OpKind::Read { .. })
    }

    /// For a read, the length of the node's log it saw: `total`, or
    /// `from + entries.len()` if the entries reach further (as they do when
    /// `total` was not recorded).
    pub fn read_len(&self) -> Option<u64> {
        match &self.kind {
            OpKind::Read { total, entries, .. } if entries.is_empty() => Some(*total),
            OpKind::Read { from, total, entries, .. } => Some((*total).max(from.saturating_add(entries.len() as u64))),
            OpKind::Append { .. } => None,
        }
    }
}

/// One node's whole log, read after the cluster healed and converged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLog {
    pub node: u64,
    pub entries: Vec<Entry>,
}

/// Everything the checker looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every completed (or abandoned) operation, in any order.
    pub ops: Vec<Op>,
    /// Every node's final log. The first one is the reference log F.
    pub final_logs: Vec<NodeLog>,
}

/// A history file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading history line {line}: {source}")]
    Io {
        /// 1-based line number.
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("history line {line} is not a valid op: {source}")]
    Parse {
        /// 1-based line number.
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("final logs are not valid JSON: {0}")]
    FinalLogs(#[source] serde_json::Error),
}

/// Writes `ops` as JSON lines, one op per line.
pub fn write_jsonl(ops: &[Op], mut w: impl Write) -> io::Result<()> {
    for op in ops {
        // Serializing these plain structs cannot fail except on I/O, which
        // serde_json reports as an io::Error inside its own error type.
        serde_json::to_writer(&mut w, op).map_err(io::Error::from)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Reads JSON lines written by [`write_jsonl`]. Blank lines are skipped (a
/// file ends with a newline); anything else that is not an op is an error
/// naming its line, because a checker that skips ops can pass a bad run.
pub fn read_jsonl(r: impl BufRead) -> Result<Vec<Op>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|source| HistoryError::Io { line: line_no, source })?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|source| HistoryError::Parse { line: line_no, source })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Writes the final logs as one JSON array (`final-logs.json`).
pub fn write_final_logs(logs: &[NodeLog], mut w: impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut w, logs).map_err(io::Error::from)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Reads what [`write_final_logs`] wrote.
pub fn read_final_logs(r: impl io::Read) -> Result<Vec<NodeLog>, HistoryError> {
    serde_json::from_reader(r).map_err(HistoryError::FinalLogs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ops() -> Vec<Op> {
        vec![
            Op {
                id: 0,
                client: 1,
                invoke_ns: 10,
                complete_ns: 20,
                outcome: Outcome::Ok,
                kind: OpKind::Append {
                    request_id: "c1-0".into(),
                    player_id: 5,
                    log_index: Some(3),
                    duplicate: true,
                    attempts: 2,
                    nodes: vec![2, 1],
                },
            },
            Op {
                id: 1,
                client: 2,
                invoke_ns: 15,
                complete_ns: u64::MAX,
                outcome: Outcome::Unknown,
                kind: OpKind::Append {
                    request_id: "c2-1".into(),
                    player_id: u64::MAX,
                    log_index: None,
                    duplicate: false,
                    attempts: 1,
                    nodes: vec![3],
                },
            },
            Op {
                id: 2,
                client: 3,
                invoke_ns: 30,
                complete_ns: 40,
                outcome: Outcome::Ok,
                kind: OpKind::Read {
                    node: 2,
                    incarnation: 1,
                    from: 7,
                    total: 12,
                    entries: vec![
                        Entry { log_index: 3, request_id: Some("c1-0".into()), player_id: 5 },
                        Entry { log_index: 4, request_id: None, player_id: 9 },
                    ],
                },
            },
            Op {
                id: 3,
                client: 3,
                invoke_ns: 50,
                complete_ns: 60,
                outcome: Outcome::Fail,
                kind: OpKind::Read { node: 1, incarnation: 0, from: 0, total: 0, entries: vec![] },
            },
        ]
    }

    #[test]
    fn jsonl_round_trip() {
        let ops = sample_ops();
        let mut buf = Vec::new();
        write_jsonl(&ops, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), ops.len());
        // The wire shape other tools rely on: flat objects tagged by "f".
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["f"], "append");
        assert_eq!(first["outcome"], "ok");
        assert_eq!(first["request_id"], "c1-0");
        assert!(text.contains(r#""outcome":"unknown""#));
        assert!(text.contains(r#""f":"read""#));
        assert_eq!(read_jsonl(&buf[..]).unwrap(), ops);
    }

    #[test]
    fn jsonl_skips_blank_lines_and_defaults_optional_fields() {
        let text = concat!(
            "\n",
            r#"{"id":1,"client":0,"invoke_ns":1,"complete_ns":2,"outcome":"fail","f":"append","request_id":"r","player_id":1,"attempts":1}"#,
            "\n  \n",
            r#"{"id":2,"client":0,"invoke_ns":3,"complete_ns":4,"outcome":"unknown","f":"read","node":1,"incarnation":0}"#,
            "\n",
        );
        let ops = read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(
            ops[0].kind,
            OpKind::Append {
                request_id: "r".into(),
                player_id: 1,
                log_index: None,
                duplicate: false,
                attempts: 1,
                nodes: vec![]
            }
        );
        assert_eq!(ops[1].kind, OpKind::Read { node: 1, incarnation: 0, from: 0, total: 0, entries: vec![] });
    }

    #[test]
    fn jsonl_malformed_line_names_its_line() {
        let mut buf = Vec::new();
        write_jsonl(&sample_ops()[..2], &mut buf).unwrap();
        buf.extend_from_slice(b"{\"id\":9,\"client\":0,\"invoke_ns\":1,\"complete_ns\":2,\"outcome\":\"maybe\",\"f\":\"read\",\"node\":1,\"incarnation\":0}\n");
        let err = read_jsonl(&buf[..]).unwrap_err();
        assert!(matches!(err, HistoryError::Parse { line: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("line 3"), "{err}");

        // A truncated last line (the harness was killed mid-write) is an error
        // too, not silently dropped.
        let err = read_jsonl(&b"{\"id\":1,\"cli"[..]).unwrap_err();
        assert!(matches!(err, HistoryError::Parse { line: 1, .. }), "{err:?}");
        let err = read_jsonl(
            &b"\n{\"id\":1,\"client\":0,\"invoke_ns\":1,\"complete_ns\":2,\"outcome\":\"ok\",\"f\":\"delete\"}"[..],
        )
        .unwrap_err();
        assert!(matches!(err, HistoryError::Parse { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn read_len_is_the_node_log_length() {
        let read = |from, total, n: u64| Op {
            id: 0,
            client: 0,
            invoke_ns: 0,
            complete_ns: 1,
            outcome: Outcome::Ok,
            kind: OpKind::Read {
                node: 1,
                incarnation: 0,
                from,
                total,
                entries: (0..n).map(|i| Entry { log_index: i, request_id: None, player_id: i }).collect(),
            },
        };
        assert_eq!(read(0, 3, 3).read_len(), Some(3));
        assert_eq!(read(10, 500, 20).read_len(), Some(500), "a page of a longer log");
        assert_eq!(read(0, 0, 4).read_len(), Some(4), "total not recorded");
        assert_eq!(read(7, 5, 0).read_len(), Some(5), "asked past the end");
        assert_eq!(sample_ops()[0].read_len(), None);
    }

    #[test]
    fn final_logs_round_trip() {
        let logs = vec![
            NodeLog { node: 1, entries: vec![Entry { log_index: 2, request_id: Some("a".into()), player_id: 1 }] },
            NodeLog { node: 2, entries: vec![] },
        ];
        let mut buf = Vec::new();
        write_final_logs(&logs, &mut buf).unwrap();
        assert_eq!(read_final_logs(&buf[..]).unwrap(), logs);
        assert!(matches!(read_final_logs(&b"[{\"node\":1}"[..]), Err(HistoryError::FinalLogs(_))));
    }
}
