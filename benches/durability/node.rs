//! Figures come from the real binary in its own process, since that is what
//! is deployed; its memory and CPU can only be read from outside, in /proc.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gameraft::launcher::{ServeChild, ServeCommand};
use gameraft::types::PeerAddr;
use tokio::task::JoinHandle;

use crate::START_LIMIT;

/// A running `gameraft serve`, killed when dropped.
pub struct Node {
    pub child: ServeChild,
    pub pid: u32,
    pub base: String,
    pub http_addr: String,
    pub log_path: PathBuf,
    pub spawned_at: Instant,
    /// From spawning to the listening line on stdout.
    pub to_stdout: Duration,
}

impl Node {
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 25)
    }
}

/// Starts `serve` and waits for its listening line.
pub async fn spawn_node(name: &str, log_dir: &Path, serve: ServeCommand) -> Node {
    let log_path = log_dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("open node log {}: {e}", log_path.display()));
    let spawned_at = Instant::now();
    let mut child = serve.env("RUST_LOG", "info").stderr(log).spawn().expect("spawn gameraft serve");
    let pid = child.pid().expect("a just-spawned child has a pid");
    let listening = child
        .listening(START_LIMIT)
        .await
        .unwrap_or_else(|err| panic!("{name} did not start: {err}\n{}", log_tail(&log_path, 25)));
    let to_stdout = spawned_at.elapsed();
    let http_addr = listening.http_addr.to_string();
    Node { child, pid, base: format!("http://{http_addr}"), http_addr, log_path, spawned_at, to_stdout }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n    ");
            format!("  last lines of {}:\n    {tail}", path.display())
        }
        Err(err) => format!("  (cannot read {}: {err})", path.display()),
    }
}

/// A port that was free a moment ago: the generated membership must name the
/// addresses the node will listen on, so they are fixed in advance.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address").port()
}

pub fn fixed_addr() -> PeerAddr {
    PeerAddr {
        raft_addr: format!("127.0.0.1:{}", free_port()),
        http_addr: format!("127.0.0.1:{}", free_port()),
        incarnation: String::new(),
    }
}

#[derive(Default, Clone, Copy)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn mem(pid: u32) -> Mem {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{path} has no {name} line"))
    };
    Mem { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
}

/// Resets VmHWM to the current RSS (Linux >= 4.0, `clear_refs` value 5), so a
/// phase's peak is its own. Returns whether the kernel accepted it.
pub fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// Samples a process's VmRSS every 10 ms and keeps the highest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(mem(pid).rss_kib);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max.max(mem(pid).rss_kib)
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the RSS sampler panicked")
    }
}

/// User + system CPU seconds of process `pid` ("self" for this one), threads
/// that already exited included.
pub fn cpu_secs(pid: &str) -> f64 {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // Fields after the command name (which may hold spaces) start at field 3.
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> f64 {
        fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or_else(|| panic!("{path}: no field {n}"))
    };
    (field(14) + field(15)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    })
}

/// `serve` for node `id` on `http_addr`/`raft_addr` with its data in
/// `data`, joining through `join` (an `http://` URL) when given, and
/// founding the cluster (`--bootstrap`) otherwise.
pub fn node_command(id: u64, http_addr: &str, raft_addr: &str, data: &Path, join: Option<&str>) -> ServeCommand {
    let addr = |addr: &str| addr.parse().unwrap_or_else(|e| panic!("{addr:?} is not an address: {e}"));
    let serve = ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
        .id(id)
        .http_addr(addr(http_addr))
        .raft_addr(addr(raft_addr))
        .data_dir(data);
    match join {
        Some(url) => serve.join(url),
        None => serve.bootstrap(),
    }
}
