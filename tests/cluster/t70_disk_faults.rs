//! A disk that fails: an fsync error must stop the node before it
//! acknowledges anything it could not persist, with a log line saying why.
//!
//! Faults come from `support/fail_fsync.c`, an LD_PRELOAD shim built here
//! with the system C compiler: while a flag file exists, `fsync` and
//! `fdatasync` fail with EIO, as a failing disk makes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{event, tag_of, wait_for, TestCluster};

/// Builds the shim once per test binary run; returns the library's path.
fn build_shim(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/support/fail_fsync.c");
    let library = dir.join("fail_fsync.so");
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run the C compiler (cc)");
    assert!(status.success(), "building {} failed", source.display());
    library
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_fsync_stops_the_node_and_acknowledges_nothing_unpersisted() {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("disk-faults");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let shim = build_shim(&work);
    let flag = work.join("fail-fsync");

    let mut cluster = TestCluster::empty("disk-faults", &[])
        .with_env("LD_PRELOAD", shim.to_str().unwrap())
        .with_env("GAMERAFT_FAIL_FSYNC_FLAG", flag.to_str().unwrap());
    cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    assert_eq!(cluster.leader().await, 1);
    for tag in 0..5 {
        assert_eq!(cluster.client(1).post_event(&event(tag)).await.unwrap().status, 200);
    }

    eprintln!("--- the disk starts failing fsync: the next write is not acknowledged and the node stops");
    std::fs::write(&flag, b"").unwrap();
    let answer = cluster.client(1).post_event(&event(5)).await;
    match &answer {
        Ok(resp) => {
            assert_eq!(resp.status, 504, "a write whose fsync failed must not succeed: {resp:?}");
            assert_eq!(resp.body["error"], "outcome_unknown", "{resp:?}");
        }
        Err(err) => eprintln!("the node closed the connection instead of answering: {err}"),
    }
    let (stopped, exit) = cluster.wait_exit(1, Duration::from_secs(30)).await;
    assert!(!exit.success(), "the node must exit with an error, got {exit:?}");
    let log = std::fs::read_to_string(cluster.log_path(1)).unwrap();
    assert!(log.contains("log storage write failed; this node stops"), "no clear log line in:\n{log}");

    eprintln!("--- the disk is healthy again: the node restarts with every acknowledged event");
    std::fs::remove_file(&flag).unwrap();
    cluster.restart(&stopped).await;
    let events = wait_for("the restarted node to serve its events", Duration::from_secs(30), || async {
        cluster.client(1).events().await.ok()
    })
    .await;
    let tags: Vec<u64> = events.events.iter().map(tag_of).collect();
    // The unacknowledged write may have reached the file before its fsync
    // failed; it may be there, once, or not at all.
    assert!(tags == (0..5).collect::<Vec<_>>() || tags == (0..6).collect::<Vec<_>>(), "{tags:?}");
}
