//! Starting `gameraft serve` as a child process: one builder for everything
//! that runs nodes (the `cluster` command, the cluster tests, the durability
//! bench, the chaos harness).
//!
//! A node reads its settings from flags and from environment variables
//! (`WORKER_ID`, `DATA_DIR`, `GAMERAFT_HEARTBEAT_MS`, ...), so a child that
//! inherits its starter's environment can run with settings nobody chose.
//! [`ServeCommand`] clears every variable a `serve` flag reads, taken from
//! clap's definition of those flags (a new flag cannot be missed), and every
//! other `GAMERAFT_*` variable; it then sets only what the caller asks for.
//!
//! Once both listeners are bound, `serve` prints one [`Listening`] line on
//! stdout. A [`ServeChild`] reads it with a deadline
//! ([`ServeChild::listening`]) and keeps reading stdout until it closes, so
//! the node never writes into a closed pipe.
//!
//! ```no_run
//! # async fn example() -> Result<(), gameraft::launcher::LaunchError> {
//! use std::time::Duration;
//! use gameraft::launcher::ServeCommand;
//!
//! let mut node = ServeCommand::new("target/debug/gameraft")
//!     .id(1)
//!     .http_addr(([127, 0, 0, 1], 0).into())
//!     .raft_addr(([127, 0, 0, 1], 0).into())
//!     .in_memory()
//!     .bootstrap()
//!     .spawn()?;
//! let listening = node.listening(Duration::from_secs(20)).await?;
//! println!("node {} answers on http://{}", listening.node_id, listening.http_addr);
//! # Ok(()) }
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::types::NodeId;

/// The prefix of gameraft's own environment variables. A child started by
/// [`ServeCommand`] sees none it was not given.
pub const ENV_PREFIX: &str = "GAMERAFT_";

/// How many stdout lines that are not a [`Listening`] line are kept, to say
/// what the node printed instead.
const OTHER_LINES_KEPT: usize = 20;

/// How long, once the process has exited, its stdout may take to close (a
/// process it started could hold it open).
const STDOUT_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// The line `gameraft serve` prints on stdout once it listens, as one JSON
/// object: `{"node_id":1,"http_addr":"127.0.0.1:8081","raft_addr":"127.0.0.1:5001"}`.
/// The addresses are the bound ones, with the port the system chose where
/// port 0 was asked for. [`fmt::Display`] writes the line; [`Listening::parse`]
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listening {
    pub node_id: NodeId,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
}

impl Listening {
    /// The listening line in `line`, or `None` if it is something else.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line.trim()).ok()
    }
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand: three fields whose text needs no escaping, and no
        // serializer error to handle for a line that cannot fail.
        write!(f, r#"{{"node_id":{},"http_addr":"{}","raft_addr":"{}"}}"#, self.node_id, self.http_addr, self.raft_addr)
    }
}

/// Why a node could not be started, or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no Tokio runtime: a node's stdout is read by a task on the caller's runtime")]
    NoRuntime,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the node printed no listening line within {limit:?}{}", printed(other_stdout))]
    NotListening { limit: Duration, other_stdout: Vec<String> },
    #[error("the node exited before it listened ({status}){}", printed(other_stdout))]
    ExitedAtStart { status: ExitStatus, other_stdout: Vec<String> },
    #[error("the node closed its stdout before it listened{}", printed(other_stdout))]
    StdoutClosed { other_stdout: Vec<String> },
    #[error("cannot read the node's stdout: {0}")]
    Stdout(#[source] Arc<std::io::Error>),
    #[error("the node still runs after {0:?}")]
    StillRunning(Duration),
    #[error("cannot wait for the node: {0}")]
    Wait(#[source] std::io::Error),
}

fn printed(lines: &[String]) -> String {
    match lines {
        [] => String::new(),
        lines => format!("; it printed on stdout: {}", lines.join(" | ")),
    }
}

/// `gameraft serve` for one node, built flag by flag and started with
/// [`ServeCommand::spawn`]. Flags without a setter go through
/// [`ServeCommand::arg`]. The child gets no stdin, its stdout is read by the
/// launcher, and its stderr (the node's log) goes where
/// [`ServeCommand::stderr`] says, by default this process's stderr. It is
/// killed if its [`ServeChild`] is dropped.
#[derive(Debug)]
pub struct ServeCommand {
    binary: PathBuf,
    /// A program (and its arguments) that runs the binary, e.g. `ip netns exec <name>`.
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_removed: Vec<OsString>,
    stderr: Option<Stdio>,
}

impl ServeCommand {
    /// `binary serve`, with no flags yet.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            wrapper: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            stderr: None,
        }
    }

    /// Runs the binary through `wrapper`: `wrapper... binary serve ...`
    /// (for example `ip netns exec <namespace>`). The environment is
    /// prepared for the wrapper, which must pass it on.
    pub fn via<S: Into<OsString>>(mut self, wrapper: impl IntoIterator<Item = S>) -> Self {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// `--id`.
    pub fn id(self, id: NodeId) -> Self {
        self.flag_value("--id", id.to_string())
    }

    /// `--http-addr` (port 0: the system picks one; [`Listening`] says which).
    pub fn http_addr(self, addr: SocketAddr) -> Self {
        self.flag_value("--http-addr", addr.to_string())
    }

    /// `--raft-addr` (port 0: the system picks one; [`Listening`] says which).
    pub fn raft_addr(self, addr: SocketAddr) -> Self {
        self.flag_value("--raft-addr", addr.to_string())
    }

    /// `--advertise-host`.
    pub fn advertise_host(self, host: &str) -> Self {
        self.flag_value("--advertise-host", host)
    }

    /// `--join` through the member at `url` (`http://host:port`).
    pub fn join(self, url: &str) -> Self {
        self.flag_value("--join", url)
    }

    /// `--bootstrap`.
    pub fn bootstrap(self) -> Self {
        self.arg("--bootstrap")
    }

    /// `--data-dir`.
    pub fn data_dir(self, dir: impl AsRef<Path>) -> Self {
        self.flag_value("--data-dir", dir.as_ref())
    }

    /// `--in-memory`.
    pub fn in_memory(self) -> Self {
        self.arg("--in-memory")
    }

    /// Any other `serve` argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More `serve` arguments, in order.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `key` in the node's environment, even a `GAMERAFT_*` variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Also removes `key` from the node's environment (the launcher already
    /// removes every `serve` variable and every `GAMERAFT_*` one).
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_removed.push(key.into());
        self
    }

    /// Where the node's stderr (its log) goes.
    pub fn stderr(mut self, stderr: impl Into<Stdio>) -> Self {
        self.stderr = Some(stderr.into());
        self
    }

    fn flag_value(self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        let mut arg = OsString::from(flag);
        arg.push("=");
        arg.push(value);
        self.arg(arg)
    }

    /// The process command, environment prepared: what
    /// [`ServeCommand::spawn`] runs.
    pub fn into_command(self) -> Command {
        let parent_vars = std::env::vars_os().map(|(key, _)| key);
        self.into_command_from(parent_vars)
    }

    fn into_command_from(self, parent_vars: impl IntoIterator<Item = OsString>) -> Command {
        let mut command = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command.arg("serve").args(&self.args);
        for key in vars_to_clear(parent_vars).into_iter().chain(self.env_removed) {
            command.env_remove(key);
        }
        // After the removals: a variable the caller sets is kept.
        command.envs(self.env);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.stderr.unwrap_or_else(Stdio::inherit))
            .kill_on_drop(true);
        command
    }

    /// Starts the node. Returns at once; [`ServeChild::listening`] waits for
    /// it to listen. Must be called on a Tokio runtime, which reads the
    /// node's stdout.
    pub fn spawn(self) -> Result<ServeChild, LaunchError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LaunchError::NoRuntime)?;
        let program = self.wrapper.first().map_or_else(|| self.binary.clone(), PathBuf::from);
        let mut process = self.into_command().spawn().map_err(|source| LaunchError::Spawn { program, source })?;
        let (seen, stdout) = watch::channel(StdoutSeen::default());
        match process.stdout.take() {
            Some(pipe) => {
                runtime.spawn(read_stdout(pipe, seen));
            }
            // Not reached: stdout is piped. Nothing will ever be printed.
            None => seen.send_modify(|s| s.closed = true),
        }
        Ok(ServeChild { process, stdout })
    }
}

/// Every variable a `serve` flag reads, and every `GAMERAFT_*` variable in
/// `parent_vars` (the starting process's environment).
fn vars_to_clear(parent_vars: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut vars: Vec<OsString> = serve_flags().get_arguments().filter_map(Arg::get_env).map(OsStr::to_owned).collect();
    vars.extend(parent_vars.into_iter().filter(|key| key.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes())));
    vars.sort();
    vars.dedup();
    vars
}

/// The flags of `gameraft serve`, as clap defines them (from
/// [`NodeConfig`]): names, environment variables, defaults, parsers.
pub fn serve_flags() -> clap::Command {
    NodeConfig::augment_args(clap::Command::new("serve"))
}

/// The `serve` arguments (`--name=value`, or `--name` for a switch) that
/// give `flags` the values `matches` holds for them, for the flags set on
/// the command line or through their environment variable. Flags left at
/// their default are skipped: `serve` has the same defaults. For a command
/// that accepts `serve` flags (added to it with their clap definitions) and
/// passes them on to its nodes.
pub fn serve_args_set_in(matches: &ArgMatches, flags: &[Arg]) -> Result<Vec<OsString>, clap::Error> {
    let mut args = Vec::new();
    for flag in flags {
        let id = flag.get_id().as_str();
        if !matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let long = flag.get_long().ok_or_else(|| unsupported(id, "it has no long name"))?;
        match flag.get_action() {
            ArgAction::SetTrue => {
                let set = matches.try_get_one::<bool>(id).map_err(|e| unsupported(id, &e.to_string()))?;
                if set == Some(&true) {
                    args.push(OsString::from(format!("--{long}")));
                }
            }
            action if action.takes_values() => {
                let values = matches.try_get_raw(id).map_err(|e| unsupported(id, &e.to_string()))?;
                for value in values.into_iter().flatten() {
                    let mut arg = OsString::from(format!("--{long}="));
                    arg.push(value);
                    args.push(arg);
                }
            }
            action => return Err(unsupported(id, &format!("its action {action:?} is not passed on"))),
        }
    }
    Ok(args)
}

fn unsupported(id: &str, why: &str) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("cannot pass the serve flag {id} on: {why}\n"))
}

/// What the reader of a node's stdout has seen so far.
#[derive(Debug, Clone, Default)]
struct StdoutSeen {
    listening: Option<Listening>,
    /// The first lines that were not a listening line.
    other: Vec<String>,
    /// End of file, or a read error.
    closed: bool,
    error: Option<Arc<std::io::Error>>,
}

/// Reads the node's stdout to its end, publishing the listening line.
async fn read_stdout(pipe: ChildStdout, seen: watch::Sender<StdoutSeen>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => return seen.send_modify(|s| s.closed = true),
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                seen.send_modify(|s| match Listening::parse(&text) {
                    Some(listening) if s.listening.is_none() => s.listening = Some(listening),
                    _ if s.other.len() < OTHER_LINES_KEPT => s.other.push(text.trim_end().to_string()),
                    _ => {}
                });
            }
            Err(err) => {
                return seen.send_modify(|s| {
                    s.closed = true;
                    s.error = Some(Arc::new(err));
                })
            }
        }
    }
}

/// A started `gameraft serve`. Dropping it kills the process.
#[derive(Debug)]
pub struct ServeChild {
    /// The process, for signals and waiting. Its stdout belongs to the
    /// launcher; its stderr is there if it was piped.
    pub process: Child,
    stdout: watch::Receiver<StdoutSeen>,
}

/// How a node that was expected to exit by itself ended.
#[derive(Debug)]
pub struct ServeOutput {
    pub status: ExitStatus,
    /// Its stderr, if it was piped ([`ServeCommand::stderr`]); empty otherwise.
    pub stderr: String,
    /// Its listening line, if it printed one before exiting.
    pub listening: Option<Listening>,
    /// The first other lines it printed on stdout.
    pub other_stdout: Vec<String>,
}

impl ServeChild {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// Waits up to `limit` for the node's listening line. Fails at once if
    /// the node exits first.
    pub async fn listening(&mut self, limit: Duration) -> Result<Listening, LaunchError> {
        let deadline = Instant::now() + limit;
        let timed_out = tokio::time::timeout_at(deadline, self.stdout.wait_for(|s| s.listening.is_some() || s.closed))
            .await
            .is_err();
        // The reader task sets `closed` before it ends; if it ended some
        // other way, what it had seen is still the latest value.
        let seen = self.stdout.borrow().clone();
        if let Some(listening) = seen.listening {
            return Ok(listening);
        }
        if timed_out {
            return Err(LaunchError::NotListening { limit, other_stdout: seen.other });
        }
        if let Some(err) = seen.error {
            return Err(LaunchError::Stdout(err));
        }
        match tokio::time::timeout_at(deadline, self.process.wait()).await {
            Ok(Ok(status)) => Err(LaunchError::ExitedAtStart { status, other_stdout: seen.other }),
            Ok(Err(err)) => Err(LaunchError::Wait(err)),
            Err(_) => Err(LaunchError::StdoutClosed { other_stdout: seen.other }),
        }
    }

    /// Waits up to `limit` for the node to exit by itself (say, because it
    /// refuses to start); returns how it ended and what it printed. At the
    /// limit the node is killed and [`LaunchError::StillRunning`] returned.
    pub async fn wait_output(self, limit: Duration) -> Result<ServeOutput, LaunchError> {
        let ServeChild { process, mut stdout } = self;
        let output = tokio::time::timeout(limit, process.wait_with_output())
            .await
            .map_err(|_| LaunchError::StillRunning(limit))?
            .map_err(LaunchError::Wait)?;
        // Only what was read before the pipe closed counts, so wait for it.
        let _ = tokio::time::timeout(STDOUT_CLOSE_LIMIT, stdout.wait_for(|s| s.closed)).await;
        let seen = stdout.borrow().clone();
        Ok(ServeOutput {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            listening: seen.listening,
            other_stdout: seen.other,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        node: NodeConfig,
    }

    fn args_of(command: &Command) -> Vec<String> {
        command.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// (key, Some(value)) for a variable set, (key, None) for one removed.
    fn env_of(command: &Command) -> Vec<(String, Option<String>)> {
        command
            .as_std()
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect()
    }

    #[test]
    fn the_listening_line_reads_back_and_is_the_json_it_always_was() {
        let listening = Listening {
            node_id: 7,
            http_addr: "127.0.0.1:8081".parse().unwrap(),
            raft_addr: "[::1]:5001".parse().unwrap(),
        };
        let line = listening.to_string();
        assert_eq!(line, r#"{"node_id":7,"http_addr":"127.0.0.1:8081","raft_addr":"[::1]:5001"}"#);
        assert_eq!(Listening::parse(&format!("{line}\n")), Some(listening));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["http_addr"], "127.0.0.1:8081");
        assert_eq!(Listening::parse("starting up"), None);
        assert_eq!(Listening::parse(r#"{"node_id":7}"#), None);
    }

    #[test]
    fn every_setter_writes_a_serve_flag_that_parses_to_its_value() {
        let command = ServeCommand::new("/bin/gameraft")
            .id(3)
            .http_addr("127.0.0.1:0".parse().unwrap())
            .raft_addr("127.0.0.2:5000".parse().unwrap())
            .advertise_host("node-3.local")
            .join("http://10.0.0.1:8080")
            .data_dir("/tmp/some dir")
            .in_memory()
            .args(["--heartbeat-ms", "100"])
            .into_command_from([]);
        assert_eq!(command.as_std().get_program(), "/bin/gameraft");
        let args = args_of(&command);
        assert_eq!(args[0], "serve");
        let config = Serve::try_parse_from(&args).expect("serve accepts every flag the builder writes").node;
        assert_eq!(config.identity.id, Some(3));
        assert_eq!(config.identity.http_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.identity.raft_addr, "127.0.0.2:5000".parse().unwrap());
        assert_eq!(config.identity.advertise_host.as_deref(), Some("node-3.local"));
        assert_eq!(config.identity.join.as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/some dir"));
        assert!(config.storage.in_memory);
        assert_eq!(config.raft.heartbeat_ms, 100);

        let founding = ServeCommand::new("gameraft").bootstrap().into_command_from([]);
        assert!(Serve::try_parse_from(args_of(&founding)).unwrap().node.identity.bootstrap);
    }

    #[test]
    fn a_wrapper_runs_the_binary() {
        let command = ServeCommand::new("/bin/gameraft").via(["ip", "netns", "exec", "n1"]).id(1).into_command_from([]);
        assert_eq!(command.as_std().get_program(), "ip");
        assert_eq!(args_of(&command), ["netns", "exec", "n1", "/bin/gameraft", "serve", "--id=1"]);
    }

    #[test]
    fn every_serve_variable_and_every_gameraft_variable_is_cleared_unless_set() {
        let parent =
            ["PATH", "GAMERAFT_FAIL_FSYNC_FLAG", "GAMERAFT_SOMETHING_NEW", "RUST_LOG", "HOME"].map(OsString::from);
        let command = ServeCommand::new("gameraft")
            .env("RUST_LOG", "debug")
            .env("GAMERAFT_FAIL_FSYNC_FLAG", "/tmp/flag")
            .env_remove("RUST_BACKTRACE")
            .into_command_from(parent);
        let env = env_of(&command);
        let removed: Vec<&str> = env.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_str()).collect();
        // Every variable a serve flag reads, whatever its name.
        let flag_vars: Vec<String> =
            serve_flags().get_arguments().filter_map(Arg::get_env).map(|v| v.to_string_lossy().into_owned()).collect();
        for design in ["WORKER_ID", "HTTP_ADDR", "RAFT_ADDR", "ADVERTISE_HOST", "MASTER_URL", "DATA_DIR"] {
            assert!(flag_vars.iter().any(|v| v == design), "{design} is a serve variable");
        }
        for var in &flag_vars {
            assert!(removed.contains(&var.as_str()), "{var} is left to the node: {env:?}");
        }
        assert!(flag_vars.iter().any(|v| v == "GAMERAFT_HEARTBEAT_MS"));
        assert!(removed.contains(&"GAMERAFT_SOMETHING_NEW"), "a GAMERAFT_ variable no flag reads: {env:?}");
        assert!(removed.contains(&"RUST_BACKTRACE"));
        for kept in ["PATH", "HOME"] {
            assert!(env.iter().all(|(k, _)| k != kept), "{kept} is inherited: {env:?}");
        }
        assert!(env.contains(&("RUST_LOG".into(), Some("debug".into()))), "{env:?}");
        assert!(env.contains(&("GAMERAFT_FAIL_FSYNC_FLAG".into(), Some("/tmp/flag".into()))), "set wins: {env:?}");
    }

    /// A command that takes `--nodes` and every `serve` flag but `--id`.
    fn passing_on(args: &[&str]) -> Vec<String> {
        let flags: Vec<Arg> = serve_flags().get_arguments().filter(|a| a.get_id() != "id").cloned().collect();
        let command = clap::Command::new("cluster").arg(Arg::new("nodes").long("nodes")).args(flags.clone());
        let matches = command.try_get_matches_from(std::iter::once("cluster").chain(args.iter().copied())).unwrap();
        let passed = serve_args_set_in(&matches, &flags).unwrap();
        passed.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn flags_given_are_passed_on_as_serve_arguments_and_defaults_are_not() {
        let passed = passing_on(&["--nodes", "5", "--heartbeat-ms", "100", "--in-memory", "--join", "http://a:1"]);
        for expected in ["--heartbeat-ms=100", "--in-memory", "--join=http://a:1"] {
            assert!(passed.iter().any(|a| a == expected), "{expected} in {passed:?}");
        }
        assert!(!passed.iter().any(|a| a.starts_with("--nodes")), "not a serve flag: {passed:?}");
        assert!(!passed.iter().any(|a| a.starts_with("--election-timeout")), "a default: {passed:?}");
        // What is passed on means to serve what it meant to the command.
        let config = Serve::try_parse_from(std::iter::once("serve".to_string()).chain(passed)).unwrap().node;
        assert_eq!(config.raft.heartbeat_ms, 100);
        assert!(config.storage.in_memory);
        let matches = serve_flags().try_get_matches_from(["serve", "--heartbeat-ms", "100"]).unwrap();
        assert_eq!(NodeConfig::from_arg_matches(&matches).unwrap().raft.heartbeat_ms, 100);
    }
}
