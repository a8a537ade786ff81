#!/usr/bin/env python3
"""Where the CPU goes per committed event: a system-wide `perf record` of the 64-connection
write run against a 3-node gameraft cluster, grouped by layer.

It samples every CPU (`perf record -a -e cpu-clock`, a software clock, so it works where the
hardware counters are not exposed, as on this VM), takes each sample's own function (self
time, no call graph: the release binary has no frame pointers), and sorts the functions into
layers by crate: HTTP (hyper, axum, tower, http), JSON (serde_json), Raft (openraft), gRPC
(tonic, h2, prost), storage (gameraft::storage, crc32fast), apply (gameraft::state_machine),
the API handlers and batcher (gameraft::api), the async runtime (tokio), memory (malloc, free,
memcpy), and the kernel split into network, file system/disk and scheduling. Each layer is
shown as a share of all samples and as CPU microseconds per committed event, for the leader,
the two followers together and wrk.

Run from the repo root (needs `perf`, from Debian's linux-perf, and root):
    python3 bench-vs-etcd/cpu_profile.py [--secs 10] [--conns 64] [--skip-build]
"""
import argparse
import re
import secrets
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, install_signal_handlers, run_wrk  # noqa: E402
from vs_etcd import ROOT, Gameraft, check_ports  # noqa: E402

# (layer, pattern on "dso symbol"), first match wins.
LAYERS = [
    ("HTTP (hyper, axum, tower)", r"\b(hyper|axum|tower|tower_http|http|httparse|matchit)::"),
    ("JSON (serde_json)", r"\bserde_json::|\bserde::"),
    ("Raft (openraft)", r"\bopenraft::"),
    ("gRPC (tonic, h2, prost)", r"\b(tonic|h2|prost)::"),
    ("storage (log files, crc)", r"\bgameraft::storage::|\bcrc32fast::"),
    ("apply (state machine)", r"\bgameraft::state_machine::"),
    ("API handlers, batcher", r"\bgameraft::"),
    ("async runtime (tokio)", r"\b(tokio|futures_util|futures_core|mio)::|epoll_wait"),
    ("memory (alloc, free, copy)", r"malloc|free|_int_|memmove|memcpy|memset|mi_|realloc|unlink_chunk"
                                   r"|alloc::|<alloc::|bytes::"),
    ("kernel: network (loopback TCP)", r"\[k\] .*(tcp|ip_|__ip|skb|sock|net_|__dev|dev_|loopback"
                                       r"|inet|__netif|napi|__napi|nf_|rps|sk_|__sk|raw_)"),
    ("kernel: files, fsync, disk", r"\[k\] .*(ext4|jbd2|blk|bio|virtio|vring|iomap|filemap|folio"
                                   r"|page_cache|writeback|__block|submit_|mpage|fdatasync|file_)"),
    ("kernel: scheduling, futex, syscalls", r"\[k\] "),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--secs", type=int, default=10)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench-profile")
    return p.parse_args()


def layer_of(symbol_line):
    for name, pattern in LAYERS:
        if re.search(pattern, symbol_line):
            return name
    return "other (user space)"


def perf_samples(data, pids):
    """Samples per (process group, layer) from `perf script` of one recording."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    groups = {pids["gameraft-leader"]: "leader"}
    groups.update({pid: "followers" for name, pid in pids.items() if name.startswith("gameraft-f")})
    counts = defaultdict(lambda: defaultdict(int))
    total = 0
    for line in out.splitlines():
        # "<comm> <pid>/<tid> <ip> <symbol> (<dso>)"; comm may hold spaces.
        m = re.match(r"\s*(.*?)\s+(\d+)/\d+\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
        if not m:
            continue
        comm, pid, sym, dso = m[1], int(m[2]), m[3], m[4]
        total += 1
        group = groups.get(pid) or ("wrk" if comm == "wrk" else "idle and others")
        kernel = "[k] " if "kernel" in dso else ""
        counts[group][layer_of(f"{kernel}{dso} {sym}")] += 1
    return counts, total


def main():
    args = parse_args()
    install_signal_handlers()
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "gameraft"], cwd=ROOT, check=True)
    check_ports()
    procs = Procs()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        gr = Gameraft(procs, args.out)
        shutil.rmtree(gr.dir, ignore_errors=True)
        gr.start()
        leader = gr.leader()
        followers = [i for i in gr.ids if i != leader]
        pids = {"gameraft-leader": procs.pid(gr.proc_name(leader))}
        pids.update({f"gameraft-f{i}": procs.pid(gr.proc_name(i)) for i in followers})
        data = args.out / "perf.data"
        before = gr.total(leader)
        perf = subprocess.Popen(["perf", "record", "-a", "-e", "cpu-clock", "-F", "499", "-o",
                                 str(data), "--", "sleep", str(args.secs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = run_wrk(Gameraft.write_script, gr.url(leader), args.conns, args.secs,
                         [f"p-{secrets.token_hex(4)}"])
        perf.wait()
        committed = gr.total(leader) - before
        counts, total = perf_samples(data, pids)
    finally:
        procs.stop_all()

    cpu_us = total / 499 * 1e6  # every sample is 1/499 s of one CPU
    print(f"\n{args.conns} connections, {args.secs} s: {result['per_s']:,.0f} writes/s acknowledged, "
          f"{committed:,} events committed, p50 {result['p50_us'] / 1000:.1f} ms, "
          f"p99 {result['p99_us'] / 1000:.1f} ms; {total:,} samples\n")
    groups = ["leader", "followers", "wrk", "idle and others"]
    print("| layer (self time) | " + " | ".join(groups) + " | all: CPU µs per event |")
    print("|---|" + "---:|" * (len(groups) + 1))
    layers = [name for name, _ in LAYERS] + ["other (user space)"]
    for layer in layers:
        shares = [counts[g].get(layer, 0) for g in groups]
        if not any(shares):
            continue
        per_event = sum(shares[:2]) / total * cpu_us / max(committed, 1)
        print(f"| {layer} | " + " | ".join(f"{s / total:.1%}" for s in shares) + f" | {per_event:.1f} |")
    sums = [sum(counts[g].values()) for g in groups]
    per_event = sum(sums[:2]) / total * cpu_us / max(committed, 1)
    print("| **total** | " + " | ".join(f"{s / total:.1%}" for s in sums) + f" | {per_event:.1f} |")
    print(f"\nThe last column counts the three gameraft nodes only. perf data: {data}")


if __name__ == "__main__":
    main()
