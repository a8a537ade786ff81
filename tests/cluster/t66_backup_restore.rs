//! Backup and restore: `gameraft backup` takes a consistent copy of a
//! cluster's events while it takes writes; `gameraft restore` makes the
//! first node of a new cluster from it, which others join.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gameraft::auth::{hash_hex, new_token};
use gameraft::backup::download::check_file;
use gameraft::client::Client;

use crate::harness::{event, post_with_id, wait_for, TestCluster};

/// Runs the real binary with `args`; its exit status, stdout and stderr.
async fn gameraft(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gameraft"));
    command.args(args).env_remove("GAMERAFT_TOKEN").env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("gameraft {args:?} did not end within 60s"))
        .expect("run gameraft");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Writes with request ids `w-<tag>` through `client` until `stop`, one after
/// the other; records the tags acknowledged (200), in order.
fn write_load(client: Client, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<u64>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tag = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(resp) = post_with_id(&client, &event(tag), &format!("w-{tag}")).await {
                if resp.status == 200 {
                    acked.lock().expect("lock").push(tag);
                }
            }
            tag += 1;
        }
    })
}

fn acked_count(acked: &Mutex<Vec<u64>>) -> usize {
    acked.lock().expect("lock").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_into_a_new_cluster_holding_exactly_its_events() {
    let source = TestCluster::start("backup-source", 3).await;
    let leader = source.leader().await;
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let load = write_load(source.client(leader).clone(), stop.clone(), acked.clone());
    wait_for("writes to be under way", Duration::from_secs(30), || async { (acked_count(&acked) >= 30).then_some(()) })
        .await;

    // The backup, from the leader, while the writes go on.
    let acked_before: Vec<u64> = acked.lock().expect("lock").clone();
    let file = source.data_dir_of(0).with_extension("backup");
    let url = format!("http://{}", source.node(leader).http_addr);
    let (ok, stdout, stderr) = gameraft(&["backup", "--from", &url, path(&file)], &[]).await;
    assert!(ok, "gameraft backup failed: {stderr}");
    assert!(stdout.contains("events up to log index"), "{stdout}");
    let (header, bytes) = check_file(&file).expect("the backup reads back");
    assert!(!file.with_extension("backup.tmp").exists(), "the temporary file is gone");
    let during = acked_count(&acked);
    // Two more: the first may have been applied before the backup's point
    // and answered after it; the second was sent after that answer.
    wait_for("writes to go on after the backup", Duration::from_secs(30), || async {
        (acked_count(&acked) > during + 1).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("the write load ends");
    eprintln!("backup: {} events, {bytes} bytes", header.event_count);

    // Exactly a prefix of the source's list, holding every write
    // acknowledged before the backup started.
    let count = usize::try_from(header.event_count).expect("count fits");
    let source_events = source.client(leader).events().await.expect("GET /events").events;
    assert!(source_events.len() > count, "writes went on after the backup: the source holds more");
    let backed_up = &source_events[..count];
    let tags: Vec<u64> = backed_up.iter().map(crate::harness::tag_of).collect();
    for tag in &acked_before {
        assert!(tags.contains(tag), "write {tag} was acknowledged before the backup but is not in it");
    }

    // A new cluster: its first node from the backup, two others join it.
    let mut restored = TestCluster::empty("backup-restored", &[]);
    let new_dir = restored.data_dir_of(11);
    let (ok, stdout, stderr) =
        gameraft(&["restore", path(&file), "--data-dir", path(&new_dir), "--id", "11"], &[]).await;
    assert!(ok, "gameraft restore failed: {stderr}");
    assert!(stdout.contains("node 11 of new cluster"), "{stdout}");
    // Neither --bootstrap nor --join: it resumes from its data directory.
    restored.spawn_forming(11, "127.0.0.1:0", "127.0.0.1:0").await;
    for id in [12, 13] {
        let join = format!("http://{}", restored.node(11).http_addr);
        restored.spawn(id, Some(join), "127.0.0.1:0", "127.0.0.1:0").await;
    }
    assert_eq!(restored.wait_for_voters(3).await, 11, "the restored node leads its new cluster");
    let new_events = restored.converged_events(count).await;
    assert_eq!(new_events.len(), count);
    for (position, (new, old)) in new_events.iter().zip(backed_up).enumerate() {
        assert_eq!(new, old, "event {position} differs from the source's");
    }

    // The new cluster takes writes at the next position, and still knows
    // the request ids of the writes before the backup.
    let resp = post_with_id(restored.client(12), &event(1_000_000), "after-restore").await.expect("POST /events");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["position"].as_u64(), Some(header.event_count), "{}", resp.body);
    let first = acked_before[0];
    let again = post_with_id(restored.client(11), &event(first), &format!("w-{first}")).await.expect("POST /events");
    assert_eq!((again.status, again.body["duplicate"].as_bool()), (200, Some(true)), "{}", again.body);
    restored.converged_events(count + 1).await;

    // The two clusters are strangers: their cluster ids differ.
    let cluster_id = |dir: &Path| -> String {
        let node: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("node.json")).expect("node.json")).expect("JSON");
        node["cluster_id"].as_str().expect("a cluster id").to_string()
    };
    assert_ne!(cluster_id(&new_dir), cluster_id(&source.data_dir_of(1)));
}

/// The refusals: a backup without an admin token (nothing written), a
/// restore into a used directory (left as it was), and restores of a cut or
/// damaged file (nothing left behind). The source runs `--in-memory`,
/// which serves backups too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_needs_an_admin_token_and_restore_refuses_used_directories_and_damaged_files() {
    let (admin, reader) = (new_token(), new_token());
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    let lines = format!("admin {} ops\nread {} dashboard\n", hash_hex(&admin), hash_hex(&reader));
    std::fs::write(&tokens, lines).expect("write tokens file");
    let tokens_arg = format!("--auth-tokens-file={}", tokens.display());
    let join_arg = format!("--join-token={admin}");
    let mut cluster =
        TestCluster::empty("backup-refusals", &["--in-memory", &tokens_arg, &join_arg]).with_client_token(&admin);
    cluster.spawn(1, None, "127.0.0.1:0", "127.0.0.1:0").await;
    cluster.wait_for_voters(1).await;
    for tag in 0..5 {
        let resp = post_with_id(cluster.client(1), &event(tag), &format!("r-{tag}")).await.expect("POST /events");
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    let url = format!("http://{}", cluster.node(1).http_addr);
    let file = dir.path().join("events.backup");

    // Without a token, or with a read token: refused, one line, no file.
    for (token, status) in [(None, "401"), (Some(reader.as_str()), "403")] {
        let env: Vec<(&str, &str)> = token.map(|t| ("GAMERAFT_TOKEN", t)).into_iter().collect();
        let (ok, _, stderr) = gameraft(&["backup", "--from", &url, path(&file)], &env).await;
        assert!(!ok, "a backup with {token:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(&format!("answered {status}")), "{stderr}");
        assert!(!file.exists() && !dir.path().join("events.backup.tmp").exists(), "nothing is written");
    }
    let as_reader = Client::with_token(&url, &reader).expect("client").get("/backup").await.expect("GET /backup");
    assert_eq!((as_reader.status, as_reader.body["error"].as_str()), (403, Some("forbidden")), "{}", as_reader.body);
    let anonymous = Client::new(&url).expect("client").get("/backup").await.expect("GET /backup");
    assert_eq!((anonymous.status, anonymous.body["error"].as_str()), (401, Some("unauthorized")));

    // With the admin token: the five events.
    let (ok, _, stderr) = gameraft(&["backup", "--from", &url, path(&file)], &[("GAMERAFT_TOKEN", &admin)]).await;
    assert!(ok, "{stderr}");
    let (header, _) = check_file(&file).expect("the backup reads back");
    assert_eq!(header.event_count, 5);

    // A used data directory is left as it was.
    let used = dir.path().join("used");
    std::fs::create_dir(&used).expect("mkdir");
    std::fs::write(used.join("keep"), b"data").expect("write");
    let (ok, _, stderr) = gameraft(&["restore", path(&file), "--data-dir", path(&used)], &[]).await;
    assert!(!ok && stderr.contains("is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&used).expect("read dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["keep"], "the used directory is untouched");

    // A cut file, a changed event byte, and a changed byte whose file
    // checksum was made to match (the record's own CRC catches it): refused,
    // and nothing is left where the directory would have been.
    let bytes = std::fs::read(&file).expect("read backup");
    let events_end = bytes.len() - 4;
    let mut changed = bytes.clone();
    changed[events_end - 3] ^= 0x01;
    let mut resealed = changed.clone();
    let events_start = events_end - usize::try_from(header.dat_len).expect("fits");
    let crc = crc32fast::hash(&resealed[events_start..events_end]);
    resealed[events_end..].copy_from_slice(&crc.to_le_bytes());
    let damaged = [
        ("cut", bytes[..bytes.len() - 100].to_vec(), "cut short"),
        ("changed", changed, "checksum"),
        ("resealed", resealed, "damaged"),
    ];
    for (name, bytes, says) in damaged {
        let bad = dir.path().join(format!("{name}.backup"));
        std::fs::write(&bad, bytes).expect("write damaged copy");
        let target = dir.path().join(format!("restored-{name}"));
        let (ok, _, stderr) = gameraft(&["restore", path(&bad), "--data-dir", path(&target)], &[]).await;
        assert!(!ok, "restoring the {name} backup succeeded");
        assert!(stderr.contains(says) && stderr.trim().lines().count() == 1, "{name}: {stderr}");
        assert!(!target.exists(), "{name}: {} was left behind", target.display());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    }
}
