#!/usr/bin/env python3
"""Side-by-side benchmark: a 3-node gameraft cluster against a 3-node etcd cluster.

What it measures, on one machine, each cluster with durable storage (fsync per commit):
  * durable writes/s and p50/p99 latency at several client concurrencies, driven by the
    same load generator (wrk, same thread/connection counts, same duration, ~same body:
    a 120-byte payload with a unique id) against each system's leader over HTTP/JSON
    (gameraft's POST /events, etcd's gRPC JSON gateway POST /v3/kv/put). Levels run
    gameraft then etcd back to back, so machine drift hits both alike;
  * gameraft extras: ephemeral events/s, paged reads/s at the leader and at a follower;
  * leader failover unavailability (SIGKILL the leader, time until a survivor accepts a
    write) and peak RSS per node, for both.

Nothing is taken on trust: after every write run the script checks, from the servers'
own state, that the writes wrk counted as successful are really there, exactly once
(gameraft: GET /log request ids, dense positions, all nodes at the same event count;
etcd: key count under the run's prefix equals the revision delta). A failed check marks
the row FAILED and makes the exit status non-zero. Errors never count as throughput.

Run from the repo root:  python3 bench-vs-etcd/vs_etcd.py [--secs 10] [--levels 1,16,64,256]
"""
import argparse
import base64
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (cargo_target_dir, cpu_busy_fraction, fdatasync_ms, first_line, fmt_int,  # noqa: E402
                     fmt_ms, git_commit, guarded_main, http_json, machine, port_in_use,
                     RssSampler, run_wrk, wait_until)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench-vs-etcd"
GAMERAFT_BIN = cargo_target_dir(ROOT) / "release" / "gameraft"
# Away from the usual dev ports (8081-8083/5001-5003, etcd 2379/12379...).
GAMERAFT_HTTP_PORTS = {1: 18081, 2: 18082, 3: 18083}
GAMERAFT_RAFT_PORTS = {1: 15001, 2: 15002, 3: 15003}
ETCD_CLIENT_PORTS = {1: 42379, 2: 52379, 3: 62379}
ETCD_PEER_PORTS = {1: 42380, 2: 52380, 3: 62380}
EXTRA_CONNS = 64          # connections for the ephemeral / read rows
BUSY_WARN = 0.10          # warn if the machine is busier than this before starting
CONVERGE_S = 30           # followers must catch up within this after a run
START_S = 60              # a cluster (or a restarted node) must be ready within this
FAILOVER_GIVE_UP_S = 60   # a failover with no accepted write by then is a failure
FAILOVER_TRY_EVERY_S = 0.02  # a new try of the failover write starts this often
FAILOVER_TRY_S = 10.0     # one try's timeout: long enough to wait out an election


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


class Cluster:
    """What both 3-node clusters share: their processes, data dir and the count check."""
    name = ""

    def __init__(self, procs, out):
        self.procs, self.dir, self.ids = procs, out / self.name, [1, 2, 3]

    def proc_name(self, i):
        raise NotImplementedError

    def pids(self):
        return {self.proc_name(i): self.procs.pid(self.proc_name(i)) for i in self.ids}


def count_problems(what, n, ok, conns):
    """A run's writes found in the servers must be what wrk counted, plus at most the
    `conns` requests still in flight when it stopped (they may commit uncounted)."""
    if ok <= n <= ok + conns:
        return []
    return [f"{n} {what}, wrk counted {ok} ok (allowed {ok}..{ok + conns})"]


class Gameraft(Cluster):
    name, short, write_script = "gameraft", "g", BENCH / "gameraft_write.lua"
    # Another bench may start its cluster on other ports (hostile_load.py does).
    http_ports, raft_ports = GAMERAFT_HTTP_PORTS, GAMERAFT_RAFT_PORTS

    def url(self, i):
        return f"http://127.0.0.1:{self.http_ports[i]}"

    def proc_name(self, i):
        return f"gameraft-{i}"

    def start_node(self, i):
        cmd = [str(GAMERAFT_BIN), "serve", "--id", str(i),
               "--http-addr", f"127.0.0.1:{self.http_ports[i]}",
               "--raft-addr", f"127.0.0.1:{self.raft_ports[i]}",
               "--data-dir", str(self.dir / f"node-{i}")]
        # Node 1 founds the cluster; on a restart either flag is ignored.
        cmd += ["--bootstrap"] if i == 1 else ["--join", self.url(1)]
        self.procs.start(self.proc_name(i), cmd, self.dir / f"node-{i}.log")

    def start(self):
        self.dir.mkdir(parents=True)
        for i in self.ids:  # one join at a time: wait for each voter before the next
            self.start_node(i)
            wait_until(lambda: self.voters() >= i, START_S, f"gameraft node {i} to be a voter")
        wait_until(self.settled, START_S, "a gameraft leader seen by all 3 nodes")

    def status(self, i):
        st, body = http_json("GET", self.url(i) + "/status", timeout=1.0)
        return body if st == 200 else None

    def voters(self):
        st, body = http_json("GET", self.url(1) + "/nodes", timeout=1.0)
        return sum(n["role"] == "voter" for n in body["nodes"]) if st == 200 else 0

    def settled(self):
        """All 3 answer, agree on a leader that says it leads, and hold the same events."""
        sts = [self.status(i) for i in self.ids]
        if not all(sts) or len({(s["current_leader"], s["event_count"]) for s in sts}) != 1:
            return None
        lead = sts[0]["current_leader"]
        return lead in self.ids and sts[lead - 1]["is_leader"]

    def leader(self):
        def find():
            for i in self.ids:
                st = self.status(i)
                lead = st and st.get("current_leader")
                if lead in self.ids and (self.status(lead) or {}).get("is_leader"):
                    return lead
            return None
        return wait_until(find, START_S, "a gameraft leader")

    def total(self, i):
        st, body = http_json("GET", self.url(i) + "/events?from=0&limit=1", timeout=5.0)
        if st != 200:
            raise RuntimeError(f"gameraft node {i}: GET /events answered {st}")
        return body["total"]

    write_mark = total

    def write_one(self, i, request_id, timeout):
        event = {"Critical": {"GameStateChange": {"state": "failover", "timestamp": 1}}}
        return http_json("POST", self.url(i) + "/events",
                         {"event": event, "request_id": request_id}, timeout=timeout)[0]

    def verify_writes(self, leader, before, runid, ok, conns):
        """Problems found (empty: verified) and the facts they were judged on."""
        wait_until(self.settled, CONVERGE_S, "all gameraft nodes at the same event_count")
        ids, problems, prev, frm = [], [], before - 1, before
        while True:
            st, page = http_json("GET", f"{self.url(leader)}/log?from={frm}&limit=10000",
                                 timeout=30.0)
            if st != 200:
                return [f"GET /log?from={frm} answered {st}"], {}
            for entry in page["entries"]:
                if entry["position"] != prev + 1 and len(problems) < 5:
                    problems.append(f"position {entry['position']} follows {prev}")
                prev = entry["position"]
                if (entry.get("request_id") or "").startswith(runid + "-"):
                    ids.append(entry["request_id"])
            if not page["entries"] or page["next"] >= page["total"]:
                break
            frm = page["next"]
        n, unique = len(ids), len(set(ids))
        if unique != n:
            problems.append(f"{n - unique} request ids appear more than once")
        problems += count_problems("events with the run's ids", n, ok, conns)
        return problems, {"before": before, "after": prev + 1, "run_events": n}


class Etcd(Cluster):
    name, short, write_script = "etcd", "e", BENCH / "etcd_write.lua"

    def url(self, i):
        return f"http://127.0.0.1:{ETCD_CLIENT_PORTS[i]}"

    def proc_name(self, i):
        return f"etcd-m{i}"

    def start_node(self, i, state="existing"):
        peers = ",".join(f"m{j}=http://127.0.0.1:{ETCD_PEER_PORTS[j]}" for j in self.ids)
        peer = f"http://127.0.0.1:{ETCD_PEER_PORTS[i]}"
        cmd = ["etcd", "--name", f"m{i}", "--data-dir", str(self.dir / f"m{i}"),
               "--listen-client-urls", self.url(i), "--advertise-client-urls", self.url(i),
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", peers, "--initial-cluster-state", state,
               "--initial-cluster-token", "gameraft-bench"]
        self.procs.start(self.proc_name(i), cmd, self.dir / f"m{i}.log")

    def start(self):
        self.dir.mkdir(parents=True)
        for i in self.ids:
            self.start_node(i, state="new")
        wait_until(self.settled, START_S, "an etcd leader seen by all 3 members")

    def status(self, i):
        st, body = http_json("POST", self.url(i) + "/v3/maintenance/status", {}, timeout=1.0)
        return body if st == 200 else None

    def settled(self):
        """All 3 answer, agree on a live leader, and are at the same revision."""
        sts = [self.status(i) for i in self.ids]
        if not all(sts):
            return None
        members = {s["header"]["member_id"] for s in sts}
        leads = {s.get("leader") for s in sts}
        revs = {s["header"].get("revision") for s in sts}
        return len(leads) == 1 and leads <= members and len(revs) == 1

    def leader(self):
        def find():
            sts = {i: self.status(i) for i in self.ids}
            by_member = {s["header"]["member_id"]: i for i, s in sts.items() if s}
            for s in sts.values():
                if s and s.get("leader") in by_member:
                    return by_member[s["leader"]]
            return None
        return wait_until(find, START_S, "an etcd leader")

    def range_count(self, i, key, range_end=None):
        body = {"key": b64(key), "count_only": True}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        st, resp = http_json("POST", self.url(i) + "/v3/kv/range", body, timeout=10.0)
        if st != 200:
            raise RuntimeError(f"etcd m{i}: range answered {st}")
        return int(resp.get("count", 0)), int(resp["header"]["revision"])

    def write_mark(self, i):
        return self.range_count(i, b"\0")[1]

    def write_one(self, i, key, timeout):
        return http_json("POST", self.url(i) + "/v3/kv/put",
                         {"key": b64(key), "value": b64("failover")}, timeout=timeout)[0]

    def verify_writes(self, leader, before, runid, ok, conns):
        prefix = (runid + "-").encode()
        range_end = prefix[:-1] + bytes([prefix[-1] + 1])
        count, after = self.range_count(leader, prefix, range_end)
        problems = []
        if count != after - before:
            problems.append(f"{count} keys under the run's prefix, revision moved {after - before}")
        problems += count_problems("keys", count, ok, conns)
        return problems, {"before": before, "after": after, "run_keys": count}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--secs", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--levels", default="1,16,64,256", help="connection counts (default 1,16,64,256)")
    p.add_argument("--skip-build", action="store_true", help="use the existing release binary")
    p.add_argument("--out", default=None, help="output dir (default target/bench-vs-etcd)")
    p.add_argument("--failovers", type=int, default=5, help="failover runs per system (default 5)")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per level and system; the table shows their medians (default 3)")
    args = p.parse_args()
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.out = Path(args.out).resolve() if args.out else ROOT / "target" / "bench-vs-etcd"
    return args


# The Debian package of each tool the benches run.
PACKAGES = {"etcd": "etcd-server", "wrk": "wrk"}


def ensure_tools(tools=("etcd", "wrk")):
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    packages = [PACKAGES[tool] for tool in missing]
    if os.geteuid() != 0:
        sys.exit(f"{' and '.join(missing)} not installed. Install them first, e.g. "
                 f"`sudo apt-get install -y {' '.join(packages)}`, or run this script as root.")
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, stdout=subprocess.DEVNULL, check=True)


def check_ports():
    ports = [*GAMERAFT_HTTP_PORTS.values(), *GAMERAFT_RAFT_PORTS.values(),
             *ETCD_CLIENT_PORTS.values(), *ETCD_PEER_PORTS.values()]
    taken = [p for p in ports if port_in_use(p)]
    if taken:
        sys.exit(f"vs_etcd: ports {taken} on 127.0.0.1 are in use; stop what holds them "
                 "or change the *_PORTS constants at the top of bench-vs-etcd/vs_etcd.py")


def write_run(system, conns, secs, sample_rss):
    """One wrk write run against the leader, then its verification. Returns the row."""
    leader = system.leader()
    runid = f"{system.short}-c{conns}-{secrets.token_hex(4)}"
    before = system.write_mark(leader)
    sampler = RssSampler(system.pids()) if sample_rss else nullcontext()
    with sampler:
        res = run_wrk(system.write_script, system.url(leader), conns, secs, [runid])
    problems, facts = system.verify_writes(leader, before, runid, res["ok"], conns)
    row = {**res, **facts, "runid": runid, "leader": leader, "problems": problems}
    if sample_rss:
        row["peak_rss_mib"] = sampler.peak_mib()
    print(f"  {system.name:8} c={conns:<4} {fmt_int(res['per_s']):>8} writes/s  "
          f"p50 {fmt_ms(res['p50_us'])}  p99 {fmt_ms(res['p99_us'])}  bad {res['bad']} "
          f"errors {res['errors']}  {'FAILED: ' + '; '.join(problems) if problems else 'verified'}",
          flush=True)
    return row


def median_row(runs):
    """One level's row from its rounds: the median of each figure; every problem; peak RSS."""
    row = {"rounds": runs, "problems": [p for r in runs for p in r["problems"]]}
    for key in ("per_s", "p50_us", "p99_us"):
        row[key] = statistics.median(r[key] for r in runs)
    if all("peak_rss_mib" in r for r in runs):
        row["peak_rss_mib"] = {name: max(r["peak_rss_mib"][name] for r in runs)
                               for name in runs[0]["peak_rss_mib"]}
    return row


def gameraft_extras(gr, secs):
    """Ephemeral events/s at the leader, reads/s at the leader and at one follower."""
    leader = gr.leader()
    follower = next(i for i in gr.ids if i != leader)
    rows, before = {}, gr.total(leader)
    runid = f"g-eph-{secrets.token_hex(4)}"
    res = run_wrk(BENCH / "gameraft_ephemeral.lua", gr.url(leader), EXTRA_CONNS, secs, [runid])
    after = gr.total(leader)
    res["problems"] = [] if after == before else [f"ephemeral run changed the log: {before} -> {after}"]
    rows["ephemeral"] = res
    for label, node in (("read_leader", leader), ("read_follower", follower)):
        total = gr.total(node)
        runid = f"g-read-{secrets.token_hex(4)}"
        res = run_wrk(BENCH / "gameraft_read.lua", gr.url(node), EXTRA_CONNS, secs, [runid, total])
        res.update(node=node, events_in_log=total, problems=[])
        rows[label] = res
    for label, res in rows.items():
        print(f"  gameraft {label:13} {fmt_int(res['per_s']):>8}/s  p50 {fmt_ms(res['p50_us'])}  "
              f"p99 {fmt_ms(res['p99_us'])}  bad {res['bad']}", flush=True)
    return rows


def failover_once(system, procs):
    """SIGKILL the leader; seconds until a survivor accepts a write; restart the node.

    A new try of the same write starts every FAILOVER_TRY_EVERY_S, alternating between the
    survivors, each with a FAILOVER_TRY_S timeout, and the first 200 ends the measurement: so
    neither a request stuck on the dead leader nor a quick error delays the figure, for
    either system; it is the earliest a client could have had a new write acknowledged.
    """
    leader = system.leader()
    survivors = [i for i in system.ids if i != leader]
    write_id = f"failover-{secrets.token_hex(6)}"  # same id on every try: one write
    tries = []  # (seconds after the kill, node, HTTP status or 0 for no answer, seconds taken)
    lock, accepted, answered_at = threading.Lock(), threading.Event(), []
    killed_at = procs.sigkill(system.proc_name(leader))

    def attempt(node):
        at = time.monotonic() - killed_at
        status = system.write_one(node, write_id, FAILOVER_TRY_S)
        done = time.monotonic() - killed_at
        with lock:
            tries.append((round(at, 3), node, status, round(done - at, 3)))
            if status == 200 and not accepted.is_set():
                answered_at.append(done)
                accepted.set()

    n = 0
    while not accepted.wait(FAILOVER_TRY_EVERY_S):
        if time.monotonic() - killed_at > FAILOVER_GIVE_UP_S:
            raise RuntimeError(f"{system.name}: no write accepted {FAILOVER_GIVE_UP_S} s after "
                               f"killing leader {leader}")
        threading.Thread(target=attempt, args=(survivors[n % len(survivors)],), daemon=True).start()
        n += 1
    unavailable_s = answered_at[0]
    procs.reap(system.proc_name(leader))
    system.start_node(leader)
    wait_until(system.settled, START_S, f"{system.name} to settle after restarting {leader}")
    with lock:
        tries.sort()
        shown = tries if len(tries) <= 6 else tries[:3] + ["..."] + tries[-3:]
    print(f"  {system.name:8} failover: killed leader {leader}, write accepted after "
          f"{unavailable_s:.3f} s; {n} tries (s after kill, node, status, s taken): {shown}",
          flush=True)
    return {"killed": leader, "seconds": unavailable_s, "tries": tries}


def summarize_failovers(runs):
    secs = [r["seconds"] for r in runs]
    return {"runs": runs, "median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs)}


def render(info, rows, extras, failovers, top):
    """The markdown report."""
    lines = [f"gameraft {info['commit']} vs etcd {info['etcd']}, wrk {info['wrk']}, {info['date']}, "
             f"{info['nproc']} cores {info['cpu']}, kernel {info['kernel']}, "
             f"fdatasync {info['fdatasync_ms']:.2f} ms, idle before: {info['busy_pct']:.0f}% busy, "
             f"{info['secs']} s per run, median of {info['rounds']} rounds per level", "",
             "| connections | gameraft writes/s | p50 | p99 | etcd writes/s | p50 | p99 "
             "| writes ratio | verified |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for conns, (g, e) in rows.items():
        ratio = f"{g['per_s'] / e['per_s']:.1f}x" if e["per_s"] else "n/a"
        bad = [f"{name}: {p}" for name, r in (("gameraft", g), ("etcd", e)) for p in r["problems"]]
        lines.append(f"| {conns} | {fmt_int(g['per_s'])} | {fmt_ms(g['p50_us'])} | "
                     f"{fmt_ms(g['p99_us'])} | {fmt_int(e['per_s'])} | {fmt_ms(e['p50_us'])} | "
                     f"{fmt_ms(e['p99_us'])} | {ratio} | {'FAILED: ' + '; '.join(bad) if bad else 'yes'} |")

    def rate(r):
        note = "; FAILED: " + "; ".join(r["problems"]) if r["problems"] else ""
        return f"{fmt_int(r['per_s'])}/s (p50 {fmt_ms(r['p50_us'])}, p99 {fmt_ms(r['p99_us'])}){note}"

    def fo(f):
        return (f"{f['median_s']:.2f} s ({f['min_s']:.2f}-{f['max_s']:.2f} s)" if f else "n/a")

    def rss(r):
        return " / ".join(f"{v:.0f}" for v in r["peak_rss_mib"].values()) + " MiB"

    n_fo = len((failovers.get("gameraft") or {}).get("runs", []))
    lines += ["", f"| extra ({EXTRA_CONNS} connections, {info['secs']} s) | gameraft | etcd |",
              "|---|---|---|",
              f"| ephemeral events/s at the leader | {rate(extras['ephemeral'])} | n/a |",
              f"| reads/s at the leader (GET /events, 100 per page) | {rate(extras['read_leader'])} | n/a |",
              f"| reads/s at a follower (same) | {rate(extras['read_follower'])} | n/a |",
              f"| leader failover unavailability, median (min-max) of {n_fo} | "
              f"{fo(failovers.get('gameraft'))} | {fo(failovers.get('etcd'))} |",
              f"| peak RSS per node (1 / 2 / 3) during the {top}-connection write run | "
              f"{rss(rows[top][0])} | {rss(rows[top][1])} |"]
    return "\n".join(lines) + "\n"


def run(args, procs, results):
    os.chdir(ROOT)
    ensure_tools()
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "gameraft"], check=True)
    if not GAMERAFT_BIN.exists():
        sys.exit(f"vs_etcd: {GAMERAFT_BIN} missing; run without --skip-build")
    etcd_line, wrk_line = first_line(["etcd", "--version"]), first_line(["wrk", "-v"])
    info = {"commit": git_commit(), "etcd": etcd_line.split()[-1], "wrk": wrk_line.split()[1],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "secs": args.secs, "rounds": args.rounds, **machine()}
    print(f"{etcd_line}\n{wrk_line}\ngameraft {info['commit']}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    for sub in ("gameraft", "etcd"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    for stale in ("results.md", "results.json"):
        (args.out / stale).unlink(missing_ok=True)
    check_ports()
    busy = cpu_busy_fraction(2.0)
    info["busy_pct"], info["fdatasync_ms"] = busy * 100, fdatasync_ms(args.out)
    print(f"machine busy before start: {busy:.0%}, fdatasync median {info['fdatasync_ms']:.2f} ms"
          f" (the floor of a durable commit)", flush=True)
    if busy > BUSY_WARN:
        print(f"WARNING: the machine is {busy:.0%} busy before the benchmark; numbers will be noisy")
    results["info"] = info

    gr, etcd = Gameraft(procs, args.out), Etcd(procs, args.out)
    gr.start()
    etcd.start()
    print(f"clusters up: gameraft leader {gr.leader()}, etcd leader m{etcd.leader()}", flush=True)

    top = max(args.levels)
    rows, results["writes"] = {}, {}
    for conns in args.levels:
        # Rounds alternate the systems, so a disturbance of the machine lands on
        # one round of one system, and the median sets it aside.
        rounds = [tuple(write_run(s, conns, args.secs, conns == top) for s in (gr, etcd))
                  for _ in range(args.rounds)]
        rows[conns] = tuple(median_row([r[k] for r in rounds]) for k in (0, 1))
        results["writes"][str(conns)] = dict(zip(("gameraft", "etcd"), rows[conns]))

    extras = gameraft_extras(gr, args.secs)
    results["gameraft_extras"] = extras

    runs = results["failover_runs"] = {"gameraft": [], "etcd": []}
    for _ in range(args.failovers):
        for system in (gr, etcd):
            runs[system.name].append(failover_once(system, procs))
    failovers = {name: summarize_failovers(r) for name, r in runs.items() if r}
    results["failovers"] = failovers

    report = render(info, rows, extras, failovers, top)
    (args.out / "results.md").write_text(report)
    print("\n" + report)
    problems = [p for g, e in rows.values() for p in g["problems"] + e["problems"]]
    problems += [p for r in extras.values() for p in r["problems"]]
    return problems


def saved(args):
    written = [f.name for f in (args.out / "results.md", args.out / "results.json") if f.exists()]
    print(f"{' and '.join(written)} in {args.out}; server logs and data dirs "
          f"in {args.out}/gameraft and {args.out}/etcd")


def main():
    guarded_main(parse_args(), run, saved)


if __name__ == "__main__":
    main()
