//! The table goes to stdout only once everything is measured, so progress on
//! stderr never interleaves with it and it can be pasted as it is.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use gameraft::api::MAX_PAGE_LIMIT;

use crate::generate::Generated;
use crate::held::{HeldFigures, JoinFigures, StartTimes};
use crate::throughput::ThroughputReport;
use crate::{APPLY_BATCH, LARGE, RSS_TARGET_MIB, RUN, SMALL, WARMUP};

pub struct Report {
    pub throughput: ThroughputReport,
    pub small_gen: Generated,
    pub large_gen: Generated,
    pub small: HeldFigures,
    pub large: HeldFigures,
    pub restart_after_kill: StartTimes,
    pub join: JoinFigures,
    pub fsync: Duration,
    pub root: PathBuf,
    pub total: Duration,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let w = &mut out;
        let _ = writeln!(w, "\n## gameraft durability benchmark\n");
        let _ = writeln!(w, "rerun:   cargo bench --bench durability");
        let _ = writeln!(
            w,
            "machine: {cores} cores, {} RAM; bench-profile (optimised) binary; nodes on 127.0.0.1; data in {}",
            mem_total(),
            self.root.display()
        );
        let _ = writeln!(
            w,
            "disk:    4 KiB append + fdatasync in the data directory's file system, median {} (200 samples)",
            ms(self.fsync)
        );
        let _ = writeln!(w, "note:    the load generator runs on the same {cores} cores as the node(s) it measures");
        let _ = writeln!(w, "whole run: {:.0?}\n", self.total);

        let t = &self.throughput;
        let _ = writeln!(
            w,
            "### 1. Single-node POST /events (critical, fsync per append, default config), {}s per row after a {}s \
             warm-up",
            RUN.as_secs(),
            WARMUP.as_secs()
        );
        let _ = writeln!(
            w,
            "| clients | events/s | median | p99 | max | acknowledged | errors | node CPU | load-gen CPU |"
        );
        let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &t.runs {
            let _ = writeln!(
                w,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {:.2} cores | {:.2} cores |",
                r.clients,
                r.ok as f64 / r.elapsed.as_secs_f64(),
                ms(r.median),
                ms(r.p99),
                ms(r.max),
                r.ok,
                r.errors,
                r.node_cpu,
                r.bench_cpu
            );
        }
        for r in t.runs.iter().filter(|r| r.errors > 0) {
            let _ = writeln!(w, "first error at {} clients: {}", r.clients, r.first_error.as_deref().unwrap_or("?"));
        }
        let check = if t.final_count == t.acknowledged { "ok" } else { "MISMATCH" };
        let _ = writeln!(
            w,
            "check: /status event_count {} after {} acknowledged writes (warm-up {}): {check}",
            t.final_count, t.acknowledged, t.warmup_ok
        );
        let _ = writeln!(
            w,
            "node memory after the runs: VmRSS {}, VmHWM {} (peak since start, under write load)\n",
            mib(t.mem.rss_kib * 1024),
            mib(t.mem.hwm_kib * 1024)
        );

        let _ = writeln!(
            w,
            "### Data directories for 2-4: GENERATED THROUGH THE STORAGE API, not HTTP\n\
             (GameStateMachine::apply in batches of {APPLY_BATCH}, snapshot built, vote saved, log purged up to the \
             snapshot: the node starts from a snapshot with an empty log)"
        );
        let _ = writeln!(w, "| events | generated in | events.dat (= snapshot size) |");
        let _ = writeln!(w, "|---:|---:|---:|");
        for (events, gen) in [(SMALL, &self.small_gen), (LARGE, &self.large_gen)] {
            let _ = writeln!(w, "| {events} | {} | {} |", secs(gen.elapsed), mib(gen.dat_bytes));
        }
        let _ = writeln!(w);

        let _ = writeln!(w, "### 2. Starting a node on an existing data directory (times from spawning the process)");
        let _ = writeln!(w, "| events | start | address line | /ready 200 | first acknowledged write |");
        let _ = writeln!(w, "|---:|---|---:|---:|---:|");
        for (events, s) in [
            (self.small.events, &self.small.start),
            (self.large.events, &self.large.start),
            (self.large.events, &self.restart_after_kill),
        ] {
            let _ = writeln!(
                w,
                "| {events} | {} | {} | {} | {} |",
                s.label,
                ms(s.to_stdout),
                result_ms(&s.to_ready),
                result_ms(&s.to_first_write)
            );
        }
        for (events, s) in [
            (self.small.events, &self.small.start),
            (self.large.events, &self.large.start),
            (self.large.events, &self.restart_after_kill),
        ] {
            for failed in [&s.to_ready, &s.to_first_write].into_iter().filter_map(|r| r.as_ref().err()) {
                let _ = writeln!(w, "START PROBLEM ({events} events, {}): {failed}", s.label);
            }
        }
        let _ = writeln!(w);

        let _ = writeln!(
            w,
            "### 3. Node memory holding the events (target: < {RSS_TARGET_MIB:.0} MiB, independent of the event count)"
        );
        let reset = if self.small.hwm_reset && self.large.hwm_reset {
            "VmHWM reset (clear_refs 5) before each read phase, so each phase's VmHWM is its own peak"
        } else {
            "VmHWM could NOT be reset: it is the peak since the process started"
        };
        let _ = writeln!(w, "({reset}; max VmRSS sampled every 10 ms)");
        let _ = writeln!(w, "| events | phase | time | body | max VmRSS | VmHWM | under target |");
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---|");
        for h in [&self.small, &self.large] {
            let idle_ok = verdict(h.idle.hwm_kib.max(h.idle.rss_kib));
            let _ = writeln!(
                w,
                "| {} | idle after start (VmRSS now; VmHWM incl. start-up) | - | - | {} | {} | {idle_ok} |",
                h.events,
                mib(h.idle.rss_kib * 1024),
                mib(h.idle.hwm_kib * 1024)
            );
            for (phase, r) in [
                ("full GET /events (streamed, parsed, checked)".to_string(), &h.full),
                (format!("paging, {} pages of {MAX_PAGE_LIMIT}", h.pages), &h.paged),
            ] {
                let _ = writeln!(
                    w,
                    "| {} | {phase} | {} | {} | {} | {} | {} |",
                    h.events,
                    secs(r.elapsed),
                    mib(r.body_bytes),
                    mib(r.max_rss_kib * 1024),
                    mib(r.hwm_kib * 1024),
                    verdict(r.hwm_kib.max(r.max_rss_kib))
                );
            }
        }
        let _ = writeln!(w);

        let j = &self.join;
        let _ = writeln!(
            w,
            "### 4. A fresh node joins the {}-event node (--join, empty data dir; snapshot install in chunks)",
            self.large.events
        );
        let _ = writeln!(w, "| step (from spawning the joiner) | time |");
        let _ = writeln!(w, "|---|---:|");
        let _ = writeln!(w, "| address line | {} |", ms(j.to_stdout));
        let _ = writeln!(w, "| joiner's /status event_count = all events | {} |", result_ms(&j.to_full_count));
        let _ = writeln!(w, "| leader lists it as voter | {} |", result_ms(&j.to_voter));
        let reset = if j.hwm_reset { "leader's VmHWM reset before the join" } else { "leader's VmHWM since its start" };
        let _ = writeln!(
            w,
            "memory during the join ({reset}): leader max VmRSS {} / VmHWM {}; joiner max VmRSS {} / VmHWM {}",
            mib(j.leader_max_rss_kib * 1024),
            mib(j.leader_hwm_kib * 1024),
            mib(j.joiner_max_rss_kib * 1024),
            mib(j.joiner_hwm_kib * 1024)
        );
        for failed in [&j.to_full_count, &j.to_voter].into_iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(w, "JOIN PROBLEM: {failed}");
        }
        out
    }
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(|| "? ".to_string(), |kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
}

fn verdict(kib: u64) -> &'static str {
    if (kib as f64) / 1024.0 < RSS_TARGET_MIB {
        "yes"
    } else {
        "NO"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn result_ms(r: &Result<Duration, String>) -> String {
    match r {
        Ok(d) if *d >= Duration::from_secs(1) => secs(*d),
        Ok(d) => ms(*d),
        Err(_) => "FAILED (see below / stderr)".to_string(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
