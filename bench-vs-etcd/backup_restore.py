#!/usr/bin/env python3
"""Backup and restore, timed: how long `gameraft backup` and `gameraft restore` take for a
cluster holding N events, how soon the restored node leads with all of them, and what back-to-
back backups cost a steady write load.

    python3 bench-vs-etcd/backup_restore.py [--events 100000] [--rounds 3] [--skip-build]

A 3-node durable cluster (release build, the ports of vs_etcd.py) is filled with wrk's critical
writes until it holds at least N events. Then, for each round: a backup from the leader (the
`gameraft backup` binary, timed as a process), a restore into a new directory, and a node
started on it, timed until it leads and lists every event of the backup. Last, wrk writes for
`--load-s` seconds twice, with no backup and with backups taken back to back; both runs'
writes/s and p99 are printed. Medians of the rounds; every figure in results.json.
"""
import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (fmt_int, fmt_ms, git_commit, guarded_main, http_json, machine,  # noqa: E402
                     run_wrk, wait_until)
from vs_etcd import GAMERAFT_BIN, ROOT, START_S, Gameraft, check_ports, ensure_tools  # noqa: E402

RESTORED_HTTP, RESTORED_RAFT = 18091, 15011
FILL_CONNS, LOAD_CONNS = 64, 16


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events the cluster holds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--load-s", type=int, default=10, help="seconds of each write-load run")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench-backup")
    return p.parse_args()


def timed(cmd):
    """Runs cmd; (seconds it took, its completed process). Fails loudly on a non-zero exit."""
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {done.returncode}: {done.stderr.strip()}")
    return elapsed, done


def fill(gr, leader, events):
    """wrk writes until the cluster holds at least `events` (a 2 s run to learn the rate, then
    what that rate needs); returns the count it holds."""
    rate = None
    while (held := gr.total(leader)) < events:
        secs = 2 if rate is None else max(1, math.ceil((events - held) / rate))
        res = run_wrk(gr.write_script, gr.url(leader), FILL_CONNS, secs, [f"fill-{held}"])
        rate = max(1.0, res["ok"] / secs)
        print(f"  filled {fmt_int(res['ok'])} more events in {secs} s", flush=True)
    return gr.total(leader)


def restore_round(args, procs, gr, leader, n):
    """One backup, restore and restored start; the round's figures."""
    held = gr.total(leader)  # nothing writes meanwhile: the backup holds exactly these
    backup = args.out / f"round-{n}.backup"
    backup_s, done = timed([GAMERAFT_BIN, "backup", "--from", gr.url(leader), backup])
    print(f"  round {n}: backup {backup_s:.2f} s, {backup.stat().st_size / 1e6:.1f} MB: "
          f"{done.stdout.strip() or done.stderr.strip()}", flush=True)
    data_dir = args.out / f"restored-{n}"
    restore_s, _ = timed([GAMERAFT_BIN, "restore", backup, "--data-dir", data_dir])
    name = f"restored-{n}"
    url = f"http://127.0.0.1:{RESTORED_HTTP}"
    started = time.monotonic()
    procs.start(name, [str(GAMERAFT_BIN), "serve", "--data-dir", str(data_dir),
                       "--http-addr", f"127.0.0.1:{RESTORED_HTTP}",
                       "--raft-addr", f"127.0.0.1:{RESTORED_RAFT}"], args.out / f"{name}.log")

    def leads_with_everything():
        st, body = http_json("GET", url + "/status", timeout=1.0)
        return st == 200 and body.get("is_leader") and body.get("event_count", 0) >= held
    wait_until(leads_with_everything, START_S, "the restored node to lead with every event")
    ready_s = time.monotonic() - started
    st, body = http_json("GET", url + "/status", timeout=1.0)
    procs.sigkill(name)
    procs.reap(name)
    shutil.rmtree(data_dir, ignore_errors=True)
    row = {"backup_s": backup_s, "restore_s": restore_s, "leads_after_s": ready_s,
           "bytes": backup.stat().st_size, "events": body["event_count"], "held": held}
    backup.unlink()
    print(f"  round {n}: restore {restore_s:.2f} s, restored node led with "
          f"{fmt_int(row['events'])} events {ready_s:.2f} s after it started", flush=True)
    return row


def load_run(args, gr, leader, backups):
    """wrk writes for --load-s; with `backups`, a thread takes backups back to back meanwhile."""
    stop, taken = threading.Event(), []

    def back_to_back():
        target = args.out / "load.backup"
        while not stop.is_set():
            timed([GAMERAFT_BIN, "backup", "--from", gr.url(leader), target])
            taken.append(1)
        target.unlink(missing_ok=True)
    thread = threading.Thread(target=back_to_back) if backups else None
    if thread:
        thread.start()
    try:
        res = run_wrk(gr.write_script, gr.url(leader), LOAD_CONNS, args.load_s,
                      [f"load-{'b' if backups else 'n'}-{time.time_ns()}"])
    finally:
        stop.set()
        if thread:
            thread.join()
    row = {"per_s": res["per_s"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
           "backups": len(taken)}
    print(f"  {'with' if backups else 'without'} backups: {fmt_int(res['per_s'])} writes/s, "
          f"p50 {fmt_ms(res['p50_us'])}, p99 {fmt_ms(res['p99_us'])}"
          + (f", {len(taken)} backups" if backups else ""), flush=True)
    return row


def run(args, procs, results):
    os.chdir(ROOT)
    ensure_tools(("wrk",))
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "gameraft"], check=True)
    check_ports()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results["info"] = {"commit": git_commit(), **machine(), "events": args.events,
                       "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    gr = Gameraft(procs, args.out)
    gr.start()
    leader = gr.leader()
    held = fill(gr, leader, args.events)
    print(f"cluster holds {fmt_int(held)} events; leader node {leader}", flush=True)
    rounds = [restore_round(args, procs, gr, leader, n) for n in range(1, args.rounds + 1)]
    results["rounds"] = rounds
    load = [load_run(args, gr, leader, backups) for backups in (False, True)]
    results["load"] = {"without": load[0], "with": load[1]}
    median = {k: statistics.median(r[k] for r in rounds) for k in ("backup_s", "restore_s", "leads_after_s")}
    results["median"] = median
    report = (f"\n{fmt_int(held)} events, {rounds[0]['bytes'] / 1e6:.1f} MB backup; medians of "
              f"{len(rounds)} rounds: backup {median['backup_s']:.2f} s, restore "
              f"{median['restore_s']:.2f} s, restored node leading with every event after "
              f"{median['leads_after_s']:.2f} s.\nWrites at {LOAD_CONNS} connections: "
              f"{fmt_int(load[0]['per_s'])}/s p99 {fmt_ms(load[0]['p99_us'])} without backups, "
              f"{fmt_int(load[1]['per_s'])}/s p99 {fmt_ms(load[1]['p99_us'])} with "
              f"{load[1]['backups']} back to back.")
    print(report)
    (args.out / "results.md").write_text(report.strip() + "\n")
    problems = [f"round {n + 1}: restored {r['events']} of {r['held']} events"
                for n, r in enumerate(rounds) if r["events"] != r["held"]]
    return problems


def main():
    guarded_main(parse_args(), run, lambda args: print(f"results.md and results.json in {args.out}"))


if __name__ == "__main__":
    main()
