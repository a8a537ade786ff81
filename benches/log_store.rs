//! Log store benchmark: gameraft's `FileLogStore` against redb, by measurement.
//!
//! ```sh
//! cargo bench --bench log_store
//! ```
//!
//! Durable appends of Raft entries (each an `EventBatch::single(ScoreUpdate)`)
//! through:
//!
//! - **FileLogStore**: `RaftLogStorageExt::blocking_append`, i.e. the real
//!   `append` (segment write + `fdatasync`) and its flush callback;
//! - **redb** (2.x, cache 32 MiB): one table `u64 -> &[u8]` holding the same
//!   protobuf entry bytes, one write transaction per batch with
//!   `Durability::Immediate`, committed before the batch counts as durable;
//! - **raw file**: the floor, the same checksummed records written to a plain
//!   file with one `sync_data` per batch (no index, no segment logic).
//!
//! for batches of 1, 16 and 256 entries. Each cell runs at least 2 s of
//! appending and a minimum number of batches, in a fresh temporary directory
//! under `target/tmp` (a real disk, unlike a tmpfs `/tmp`), after a few
//! uncounted warm-up batches. Entries/s is entries divided by the time spent
//! inside the append calls (building the entries is outside the timer; the
//! protobuf encoding is inside it for every store). Latencies are per batch.
//!
//! Reopen: a store holding 100,000 entries (written in durable batches of
//! 1,000) is closed and opened again, up to knowing its last log id:
//! `FileLogStore::open` (scans and decodes every record) + `get_log_state`;
//! redb `Database::open` + a read transaction for the last key; the raw file
//! read and CRC-checked end to end. "warm" reopens straight after writing
//! (files in the page cache, as for a process restart); "cold" first drops
//! the files' pages from the guest page cache with
//! `posix_fadvise(DONTNEED)` (the host may still cache them). The size is
//! that of every file in the store's directory.
//!
//! Every cell is repeated 3 times (runs interleaved across stores) and the
//! median of the 3 is printed, with the spread of entries/s.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gameraft::disk::record;
use gameraft::event::CriticalEvent;
use gameraft::proto::pb;
use gameraft::raft_log::FileLogStore;
use gameraft::types::{Entry, EventBatch, LogId};
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::runtime::Runtime;

/// (entries per append, minimum appends per cell).
const CELLS: [(usize, usize); 3] = [(1, 2_000), (16, 500), (256, 100)];
/// Minimum time spent appending per cell.
const MIN_CELL_TIME: Duration = Duration::from_secs(2);
/// Appends before the timer starts (segment / file creation, first allocations).
const WARMUP_BATCHES: usize = 10;
const RUNS: usize = 3;
const REOPEN_ENTRIES: u64 = 100_000;
const FILL_BATCH: u64 = 1_000;
const REDB_CACHE_BYTES: usize = 32 * 1024 * 1024;
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const REDB_FILE: &str = "log.redb";
const RAW_FILE: &str = "log.raw";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Redb,
    Raw,
}

const KINDS: [Kind; 3] = [Kind::File, Kind::Redb, Kind::Raw];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "FileLogStore",
            Kind::Redb => "redb",
            Kind::Raw => "raw file (floor)",
        }
    }
}

/// An open store that appends durably.
enum Sink {
    File(FileLogStore),
    Redb(Database),
    Raw { file: File, buf: Vec<u8> },
}

impl Sink {
    fn open(kind: Kind, dir: &Path) -> Self {
        match kind {
            Kind::File => Sink::File(FileLogStore::open(dir).expect("open FileLogStore")),
            Kind::Redb => {
                let db = Database::builder()
                    .set_cache_size(REDB_CACHE_BYTES)
                    .create(dir.join(REDB_FILE))
                    .expect("create the redb database");
                let txn = db.begin_write().expect("begin the redb table-creating transaction");
                txn.open_table(TABLE).expect("create the redb table");
                txn.commit().expect("commit the redb table creation");
                Sink::Redb(db)
            }
            Kind::Raw => {
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(dir.join(RAW_FILE))
                    .expect("create the raw log file");
                Sink::Raw { file, buf: Vec::new() }
            }
        }
    }

    /// Appends `entries` and returns once they are durable.
    async fn append(&mut self, entries: Vec<Entry>) {
        match self {
            Sink::File(store) => store.blocking_append(entries).await.expect("FileLogStore append"),
            Sink::Redb(db) => {
                let mut txn = db.begin_write().expect("begin a redb write transaction");
                txn.set_durability(Durability::Immediate);
                {
                    let mut table = txn.open_table(TABLE).expect("open the redb table");
                    for entry in entries {
                        let index = entry.log_id.index;
                        let bytes = pb::Entry::from(entry).encode_to_vec();
                        table.insert(index, bytes.as_slice()).expect("redb insert");
                    }
                }
                txn.commit().expect("redb commit");
            }
            Sink::Raw { file, buf } => {
                buf.clear();
                for entry in entries {
                    record::encode(buf, &pb::Entry::from(entry).encode_to_vec()).expect("a small entry");
                }
                file.write_all(buf).expect("raw write");
                file.sync_data().expect("raw sync_data");
            }
        }
    }
}

fn entry(index: u64) -> Entry {
    let event = CriticalEvent::ScoreUpdate {
        player_id: 1_000_000 + index % 50_000,
        score: i32::try_from(index % 100_000).expect("small score"),
        timestamp: 1_764_000_000_000 + index * 7,
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
        payload: EntryPayload::Normal(EventBatch::single(event)),
    }
}

fn batch(next: &mut u64, len: usize) -> Vec<Entry> {
    let entries = (*next..*next + len as u64).map(entry).collect();
    *next += len as u64;
    entries
}

fn fresh_dir(root: &Path) -> tempfile::TempDir {
    tempfile::Builder::new().prefix("log_store-").tempdir_in(root).expect("create a temporary directory")
}

/// One run of one append cell.
struct AppendRun {
    entries_per_sec: f64,
    p50: Duration,
    p99: Duration,
    batches: usize,
}

fn append_run(rt: &Runtime, root: &Path, kind: Kind, batch_len: usize, min_batches: usize) -> AppendRun {
    let dir = fresh_dir(root);
    let mut sink = Sink::open(kind, dir.path());
    let mut latencies = rt.block_on(async {
        let mut next = 1;
        for _ in 0..WARMUP_BATCHES {
            sink.append(batch(&mut next, batch_len)).await;
        }
        let mut latencies = Vec::with_capacity(min_batches * 2);
        let mut busy = Duration::ZERO;
        while latencies.len() < min_batches || busy < MIN_CELL_TIME {
            let entries = batch(&mut next, batch_len);
            let started = Instant::now();
            sink.append(entries).await;
            let took = started.elapsed();
            busy += took;
            latencies.push(took);
        }
        latencies
    });
    drop(sink);
    let busy: Duration = latencies.iter().sum();
    latencies.sort_unstable();
    AppendRun {
        entries_per_sec: (latencies.len() * batch_len) as f64 / busy.as_secs_f64(),
        p50: percentile(&latencies, 50),
        p99: percentile(&latencies, 99),
        batches: latencies.len(),
    }
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// One run of the reopen measurement.
struct ReopenRun {
    warm: Duration,
    cold: Duration,
    apparent_bytes: u64,
    allocated_bytes: u64,
}

fn reopen_run(rt: &Runtime, root: &Path, kind: Kind) -> ReopenRun {
    let dir = fresh_dir(root);
    let mut sink = Sink::open(kind, dir.path());
    rt.block_on(async {
        let mut next = 1;
        while next <= REOPEN_ENTRIES {
            let len = FILL_BATCH.min(REOPEN_ENTRIES + 1 - next);
            sink.append(batch(&mut next, len as usize)).await;
        }
    });
    drop(sink);
    let (apparent_bytes, allocated_bytes) = dir_size(dir.path());
    let warm = reopen(rt, kind, dir.path());
    drop_page_cache(dir.path());
    let cold = reopen(rt, kind, dir.path());
    ReopenRun { warm, cold, apparent_bytes, allocated_bytes }
}

/// Opens the store in `dir` up to knowing its last log id; checks it.
fn reopen(rt: &Runtime, kind: Kind, dir: &Path) -> Duration {
    let started = Instant::now();
    let last = match kind {
        Kind::File => {
            let mut store = FileLogStore::open(dir).expect("reopen FileLogStore");
            let state = rt.block_on(store.get_log_state()).expect("FileLogStore log state");
            state.last_log_id.map(|id| id.index)
        }
        Kind::Redb => {
            let db = Database::builder()
                .set_cache_size(REDB_CACHE_BYTES)
                .open(dir.join(REDB_FILE))
                .expect("reopen the redb database");
            let txn = db.begin_read().expect("begin a redb read transaction");
            let table = txn.open_table(TABLE).expect("open the redb table");
            let last = table.last().expect("read the last redb key");
            last.map(|(key, _)| key.value())
        }
        Kind::Raw => {
            let file = File::open(dir.join(RAW_FILE)).expect("reopen the raw log file");
            let mut count = 0u64;
            let end = record::scan(BufReader::with_capacity(256 * 1024, file), 0, |_, _| {
                count += 1;
                Ok::<(), std::io::Error>(())
            })
            .expect("scan the raw log file");
            assert!(end.bad.is_none(), "raw log file has a bad record: {:?}", end.bad);
            Some(count)
        }
    };
    let took = started.elapsed();
    assert_eq!(last, Some(REOPEN_ENTRIES), "{} reopened with the wrong last entry", kind.name());
    took
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .expect("list the store directory")
        .map(|dirent| dirent.expect("read a directory entry").path())
        .filter(|path| path.is_file())
        .collect()
}

/// (apparent bytes, allocated bytes) of the files in `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    files_in(dir).iter().fold((0, 0), |(apparent, allocated), path| {
        let meta = fs::metadata(path).expect("stat a store file");
        (apparent + meta.len(), allocated + meta.blocks() * 512)
    })
}

/// Drops the (synced, so clean) pages of every file in `dir` from the page cache.
fn drop_page_cache(dir: &Path) {
    for path in files_in(dir) {
        let file = File::open(&path).expect("open a store file");
        file.sync_all().expect("sync a store file");
        posix_fadvise(file.as_raw_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).expect("posix_fadvise");
    }
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_duration(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn fmt_rate(rate: f64) -> String {
    let whole = rate.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The machine, in one line.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or_else(|| "?".into(), |kib| format!("{:.0}", kib / (1024.0 * 1024.0)));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_owned());
    format!("{cores} cores ({cpu}), {mem_gib} GiB RAM, Linux {kernel}")
}

/// File system type and device of the mount holding `path`.
fn file_system(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount).then(|| (mount.len(), format!("{fs_type} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown file system".into(), |(_, desc)| desc)
}

fn redb_version() -> String {
    let lock = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap_or_default();
    lock.split("[[package]]")
        .find(|pkg| pkg.contains("name = \"redb\"\n"))
        .and_then(|pkg| pkg.lines().find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned)))
        .unwrap_or_else(|| "2.x".into())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&root).expect("create the benchmark's temporary root");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("build the tokio runtime");

    let payload_len = pb::Entry::from(entry(REOPEN_ENTRIES)).encode_to_vec().len();
    eprintln!("log_store bench: {} runs x {} stores x {} batch sizes, >= 2 s each ...", RUNS, KINDS.len(), CELLS.len());

    // appends[cell][kind] = runs
    let mut appends: Vec<Vec<Vec<AppendRun>>> =
        CELLS.iter().map(|_| KINDS.iter().map(|_| Vec::new()).collect()).collect();
    let mut reopens: Vec<Vec<ReopenRun>> = KINDS.iter().map(|_| Vec::new()).collect();
    for run in 0..RUNS {
        for (c, &(batch_len, min_batches)) in CELLS.iter().enumerate() {
            for (k, &kind) in KINDS.iter().enumerate() {
                let result = append_run(&rt, &root, kind, batch_len, min_batches);
                eprintln!(
                    "  run {} batch {batch_len:>3} {:<16} {:>10} entries/s  p50 {:>9}  p99 {:>9}  ({} batches)",
                    run + 1,
                    kind.name(),
                    fmt_rate(result.entries_per_sec),
                    fmt_duration(result.p50),
                    fmt_duration(result.p99),
                    result.batches,
                );
                appends[c][k].push(result);
            }
        }
        for (k, &kind) in KINDS.iter().enumerate() {
            let result = reopen_run(&rt, &root, kind);
            eprintln!(
                "  run {} reopen {:<16} warm {:>9}  cold {:>9}  {}",
                run + 1,
                kind.name(),
                fmt_duration(result.warm),
                fmt_duration(result.cold),
                mib(result.allocated_bytes),
            );
            reopens[k].push(result);
        }
    }

    let mut out = String::new();
    let rule = "-".repeat(104);
    let _ = writeln!(out, "\n{rule}");
    let _ = writeln!(out, "gameraft log store: durable appends of Raft entries, FileLogStore vs redb");
    let _ = writeln!(out, "machine : {}", machine());
    let _ = writeln!(out, "disk    : {} ({})", file_system(&root), root.display());
    let _ = writeln!(out, "rerun   : cargo bench --bench log_store");
    let _ = writeln!(
        out,
        "entry   : EventBatch::single(ScoreUpdate), {payload_len} bytes protobuf (+{} bytes record header in FileLogStore/raw)",
        record::HEADER_LEN
    );
    let _ = writeln!(
        out,
        "redb    : {}, cache {} MiB, table u64 -> &[u8], one write txn per batch, Durability::Immediate",
        redb_version(),
        REDB_CACHE_BYTES / (1024 * 1024)
    );
    let _ = writeln!(
        out,
        "method  : median of {RUNS} runs, each in a fresh temp dir, >= {} s and >= N batches after {WARMUP_BATCHES} warm-up batches",
        MIN_CELL_TIME.as_secs()
    );
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "{:<18} {:>5} {:>12} {:>9} {:>10} {:>10}   entries/s of the 3 runs",
        "store", "batch", "entries/s", "vs redb", "p50/batch", "p99/batch"
    );
    for (c, &(batch_len, _)) in CELLS.iter().enumerate() {
        let rate = |k: usize| median_f64(appends[c][k].iter().map(|r| r.entries_per_sec).collect());
        let redb_rate = rate(KINDS.iter().position(|&k| k == Kind::Redb).expect("redb is measured"));
        for (k, &kind) in KINDS.iter().enumerate() {
            let runs = &appends[c][k];
            let spread = runs.iter().map(|r| fmt_rate(r.entries_per_sec)).collect::<Vec<_>>().join(" / ");
            let _ = writeln!(
                out,
                "{:<18} {:>5} {:>12} {:>8.2}x {:>10} {:>10}   {}",
                kind.name(),
                batch_len,
                fmt_rate(rate(k)),
                rate(k) / redb_rate,
                fmt_duration(median_duration(runs.iter().map(|r| r.p50).collect())),
                fmt_duration(median_duration(runs.iter().map(|r| r.p99).collect())),
                spread,
            );
        }
    }
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(
        out,
        "{:<18} {:>16} {:>16} {:>16} {:>16}",
        "reopen, 100k", "warm open", "cold open", "size (apparent)", "size (allocated)"
    );
    for (k, &kind) in KINDS.iter().enumerate() {
        let runs = &reopens[k];
        let _ = writeln!(
            out,
            "{:<18} {:>16} {:>16} {:>16} {:>16}",
            kind.name(),
            fmt_duration(median_duration(runs.iter().map(|r| r.warm).collect())),
            fmt_duration(median_duration(runs.iter().map(|r| r.cold).collect())),
            mib(median_u64(runs.iter().map(|r| r.apparent_bytes).collect())),
            mib(median_u64(runs.iter().map(|r| r.allocated_bytes).collect())),
        );
    }
    let _ = writeln!(out, "{rule}");
    print!("{out}");
}
