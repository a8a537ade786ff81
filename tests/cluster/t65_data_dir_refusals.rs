//! A data directory that cannot be used (another node's, in use, corrupt,
//! unwritable, unreadable) is refused at start with a message that says
//! why, and left exactly as it was: never silently reinitialised.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gameraft::client::Client;
use gameraft::launcher::{ServeChild, ServeCommand};
use tokio::time::Instant;

use crate::harness::{event, wait_for};

/// An empty directory for one refusal case.
fn case_dir(case: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-data").join(format!("refused-{case}"));
    if dir.exists() {
        // A run that died before its guard could clear the immutable flag.
        let _ = std::process::Command::new("chattr").arg("-i").arg(&dir).status();
        std::fs::remove_dir_all(&dir).expect("remove old case dir");
    }
    let _ = std::fs::remove_file(dir.with_extension("log"));
    dir
}

/// Node `id` founding a cluster on `dir` (or resuming on it), its log to
/// `stderr`; without backtraces, so that a refusal's message is all its log
/// says.
fn serve(id: u64, dir: &Path, stderr: Stdio) -> ServeChild {
    ServeCommand::new(env!("CARGO_BIN_EXE_gameraft"))
        .id(id)
        .http_addr(([127, 0, 0, 1], 0).into())
        .raft_addr(([127, 0, 0, 1], 0).into())
        .bootstrap()
        .data_dir(dir)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("RUST_LOG", "info")
        .stderr(stderr)
        .spawn()
        .expect("spawn gameraft serve")
}

/// Node `id` alone on `dir` (it bootstraps, or resumes), once it leads. Its
/// log goes to `<dir>.log`.
async fn start_alone(id: u64, dir: &Path) -> (ServeChild, Client) {
    let log_path = dir.with_extension("log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open node log");
    let mut child = serve(id, dir, log.into());
    let listening = child
        .listening(Duration::from_secs(20))
        .await
        .unwrap_or_else(|err| panic!("node {id} did not start: {err}; see {}", log_path.display()));
    let client = Client::new(format!("http://{}", listening.http_addr)).expect("client");
    wait_for("the lone node to lead", Duration::from_secs(20), || async {
        client.status().await.ok().filter(|s| s.is_leader).map(|_| ())
    })
    .await;
    (child, client)
}

/// A data directory a node has used: node `id` bootstrapped on it, committed
/// `events` events, and was SIGKILLed.
async fn used_dir(case: &str, id: u64, events: u64) -> PathBuf {
    let dir = case_dir(case);
    let (mut child, client) = start_alone(id, &dir).await;
    for tag in 0..events {
        assert_eq!(client.post_event(&event(tag)).await.expect("write").status, 200);
    }
    child.process.kill().await.expect("SIGKILL");
    dir
}

/// Starts node `id` on `dir`, which must be refused: the process exits
/// non-zero within 10 s without having listened. Returns its stderr.
async fn refused(id: u64, dir: &Path) -> String {
    let started = Instant::now();
    let output = serve(id, dir, Stdio::piped())
        .wait_output(Duration::from_secs(10))
        .await
        .unwrap_or_else(|err| panic!("node {id} on {} neither started nor exited: {err}", dir.display()));
    let stderr = output.stderr;
    assert!(!output.status.success(), "node {id} on {} started:\n{stderr}", dir.display());
    assert!(output.listening.is_none(), "node {id} printed its listening line before exiting:\n{stderr}");
    assert!(output.other_stdout.is_empty(), "node {id} printed {:?} on stdout:\n{stderr}", output.other_stdout);
    eprintln!("refused in {:.0?} ({}): {}", started.elapsed(), output.status, stderr.trim());
    stderr
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dir_of_another_node_is_refused() {
    let dir = used_dir("other-node", 1, 3).await;
    let node_file = read(&dir.join("node.json"));
    let stderr = refused(2, &dir).await;
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
    assert_eq!(read(&dir.join("node.json")), node_file, "node.json was rewritten");
    // Untouched: its own node resumes on it with its events.
    let (_node, client) = start_alone(1, &dir).await;
    assert_eq!(client.events().await.unwrap().count, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dir_in_use_by_a_running_node_is_refused() {
    let dir = case_dir("in-use");
    let (mut holder, client) = start_alone(1, &dir).await;
    assert_eq!(client.post_event(&event(1)).await.unwrap().status, 200);
    let node_file = read(&dir.join("node.json"));
    let stderr = refused(1, &dir).await;
    let pid = holder.pid().unwrap();
    assert!(stderr.contains("in use by another gameraft process"), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "the message names the holder, pid {pid}: {stderr}");
    assert_eq!(read(&dir.join("node.json")), node_file);
    // The holder was not disturbed.
    assert_eq!(client.events().await.unwrap().count, 1);
    assert_eq!(client.post_event(&event(2)).await.unwrap().status, 200);
    holder.process.kill().await.unwrap();
    // Once the holder is gone (SIGKILL releases its lock), the directory is free.
    let (_node, client) = start_alone(1, &dir).await;
    assert_eq!(client.events().await.unwrap().count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_node_file_is_refused() {
    let dir = used_dir("corrupt-node-file", 1, 3).await;
    let garbage = b"\x00\x17garbage, not JSON {".to_vec();
    std::fs::write(dir.join("node.json"), &garbage).unwrap();
    let stderr = refused(1, &dir).await;
    assert!(stderr.contains("is corrupt") && stderr.contains("node.json is not valid"), "{stderr}");
    assert_eq!(read(&dir.join("node.json")), garbage, "the corrupt node.json was replaced");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_state_pointer_is_refused() {
    let dir = used_dir("corrupt-current", 1, 3).await;
    let node_file = read(&dir.join("node.json"));
    let current = dir.join("state").join("CURRENT");
    assert!(read(&current).starts_with(b"gen-"), "state/CURRENT is where the layout says");
    std::fs::write(&current, b"junk\n").unwrap();
    let stderr = refused(1, &dir).await;
    assert!(stderr.contains("CURRENT is corrupt") && stderr.contains("names no generation"), "{stderr}");
    assert_eq!(read(&current), b"junk\n", "state/CURRENT was rewritten");
    assert_eq!(read(&dir.join("node.json")), node_file);
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_log_segment_before_the_last_is_refused() {
    let dir = used_dir("damaged-segment", 1, 20).await;
    let node_file = read(&dir.join("node.json"));
    let log_dir = dir.join("raft-log");
    let segments: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "one segment: {segments:?}");
    // Damage a byte in the middle of the only segment, then give it a
    // (valid, empty) successor: damage before the last segment cannot be a
    // torn write, so it must be refused, not cut off.
    let segment = &segments[0];
    let mut bytes = read(segment);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(segment, &bytes).unwrap();
    std::fs::write(log_dir.join(format!("{:020}.seg", 1_000_000)), b"").unwrap();
    let stderr = refused(1, &dir).await;
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains("is corrupt") && stderr.contains(name), "{stderr}");
    assert_eq!(read(segment), bytes, "the damaged segment was changed");
    assert_eq!(read(&dir.join("node.json")), node_file);
}

/// Makes a directory immutable (`chattr +i`) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Self {
        let status = std::process::Command::new("chattr").arg("+i").arg(dir).status().expect("run chattr");
        assert!(status.success(), "chattr +i {} failed", dir.display());
        Self(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let status = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("chattr -i {} failed: {status:?}; remove the flag by hand", self.0.display());
        }
    }
}

/// Restores a directory's mode when dropped.
struct ModeGuard(PathBuf, u32);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(self.1));
    }
}

fn running_as_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_data_dir_is_refused() {
    let dir = used_dir("unwritable", 1, 3).await;
    let node_file = read(&dir.join("node.json"));
    {
        // Root ignores permission bits: make the directory immutable instead.
        let _immutable = running_as_root().then(|| Immutable::set(&dir));
        let _mode = (!running_as_root()).then(|| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            ModeGuard(dir.clone(), 0o755)
        });
        let stderr = refused(1, &dir).await;
        assert!(stderr.contains("is not writable"), "{stderr}");
    }
    assert_eq!(read(&dir.join("node.json")), node_file);
    let (_node, client) = start_alone(1, &dir).await;
    assert_eq!(client.events().await.unwrap().count, 3, "writable again, the node resumes with its events");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_node_file_is_refused() {
    let dir = used_dir("unreadable", 1, 3).await;
    let node_file = dir.join("node.json");
    std::fs::remove_file(&node_file).unwrap();
    std::fs::create_dir(&node_file).unwrap();
    let stderr = refused(1, &dir).await;
    assert!(stderr.contains("cannot read") && stderr.contains("node.json"), "{stderr}");
    assert!(node_file.is_dir(), "node.json was replaced");
    assert_eq!(std::fs::read_dir(&node_file).unwrap().count(), 0, "something was written into node.json/");
}
