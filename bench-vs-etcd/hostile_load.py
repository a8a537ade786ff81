#!/usr/bin/env python3
"""Hostile load against a 3-node gameraft cluster: does it keep committing, and within what memory?

It starts a durable 3-node cluster from the release binary on loopback (flag defaults), runs one
writer of sequential critical writes (each with a request id) against the leader throughout,
and after a baseline puts on, all at once (mostly on the leader, also on the followers):

  * idle TCP connections (5,000): half send nothing, half a partial request header; each one
    the server closes is opened again at once, so the flood lasts the whole load phase;
  * GET /events readers that never read (600): a 4 KiB receive buffer, the request, silence;
  * PlayerMove ephemeral events for distinct random player ids (100,000), as fast as a few
    keep-alive connections go, some through the followers;
  * a new connection's GET /health to every node each second (what a new client sees).

Then the load is removed and the writer goes on. The report gives the writer's p50/p99 and
writes/s per phase (before, during, after), errors by kind, each node's peak RSS (VmHWM) and
open descriptors, and checks, from the servers' own state: every node process is alive; each
answers /health, /status and a read; every acknowledged write is in GET /log on every node,
once. It fails (exit 1) if a check fails, if the writer went more than --max-stall-s without
an acknowledged write, or if a node's peak RSS exceeds the memory bound (`memory_bound`: the
formula is in docs/performance.md). Exit 2: an error (a cluster that does not start).

Run from the repo root:  python3 bench-vs-etcd/hostile_load.py [--skip-build]
"""
import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import resource
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (git_commit, guarded_main, http_json, machine, port_in_use, wait_until)  # noqa: E402
from vs_etcd import GAMERAFT_BIN, ROOT, Gameraft  # noqa: E402

HTTP_PORTS = {1: 28081, 2: 28082, 3: 28083}
RAFT_PORTS = {1: 25001, 2: 25002, 3: 25003}
CONNECT_S = 10.0        # a connect (of the flood, a probe, a client) gives up after this
REQUEST_S = 30.0        # one HTTP request gives up after this
CONVERGE_S = 30         # after the load, every node must hold the same events within this
READER_RCVBUF = 4096    # the stalled readers' receive buffer
TCP_ESTABLISHED = 1     # tcp_info.tcpi_state

# The memory bound of one node, from the serve flags' defaults and the code's own constants;
# docs/performance.md ("Under hostile load") explains each term:
#   bound = base + max_connections x per_connection + max_players x per_player
#           + recent_actions x (max_body_bytes + per_action) + request ids held x per_request_id
#   per_connection = hyper_buffer + 3 x (stream_chunk + max_entry) + connection_state
#   max_entry = max(write_batch_max_bytes, max_body_bytes + 128 + 64) + 512
KIB, MIB = 1024, 1024 * 1024
BOUND = {
    # flag defaults (src/config/api.rs, src/config/batching.rs)
    "max_connections": 1024,
    "max_players": 100_000,
    "recent_actions": 1024,
    "max_body_bytes": 64 * KIB,
    "write_batch_max_bytes": 128 * KIB,
    # the code's constants
    "base": 64 * MIB,              # runtime, Raft, stores, their threads; ~20-40 MiB measured
    "hyper_buffer": 64 * KIB,      # api/http_server.rs CONNECTION_BUFFER_BYTES
    "stream_chunk": 64 * KIB,      # api/events.rs STREAM_CHUNK_BYTES
    "connection_state": 16 * KIB,  # the connection's task, hyper's state, the socket
    "per_player": 256,             # two B-tree entries (position, age), nodes half full
    "per_action": 128,
    "per_request_id": 256,         # docs/performance.md: about 210 bytes per id held
}


def max_entry_bytes(b=BOUND):
    """The largest log entry, hence event-file record (config::NodeConfig::max_entry_bytes)."""
    return max(b["write_batch_max_bytes"], b["max_body_bytes"] + 128 + 64) + 512


def per_connection_bytes(b=BOUND):
    """A stalled GET /events, the costliest connection: hyper's buffer, the chunk hyper took, one
    queued and one being built, each up to a chunk and one record. (A POST: hyper's buffer and a
    few copies of a 64 KiB body, less.)"""
    return b["hyper_buffer"] + 3 * (b["stream_chunk"] + max_entry_bytes(b)) + b["connection_state"]


def memory_bound(request_ids, b=BOUND):
    return (b["base"] + b["max_connections"] * per_connection_bytes(b)
            + b["max_players"] * b["per_player"]
            + b["recent_actions"] * (b["max_body_bytes"] + b["per_action"])
            + request_ids * b["per_request_id"])


class Cluster(Gameraft):
    """vs_etcd's gameraft cluster, on ports of its own."""
    http_ports, raft_ports = HTTP_PORTS, RAFT_PORTS

    def addr(self, i):
        return ("127.0.0.1", self.http_ports[i])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-build", action="store_true", help="use the existing release binary")
    p.add_argument("--out", default=None, help="data dirs, logs, results (default: a new temp dir)")
    p.add_argument("--before-s", type=float, default=10.0, help="baseline phase (10 s)")
    p.add_argument("--load-s", type=float, default=40.0,
                   help="load phase, at least (40 s: past the 10 s read timeout and the 30 s "
                        "stalled-reader timeout); longer if the moves take longer")
    p.add_argument("--after-s", type=float, default=10.0, help="phase after the load (10 s)")
    p.add_argument("--idle", type=int, default=5000, help="idle connections (5,000)")
    p.add_argument("--readers", type=int, default=600, help="GET /events readers that never read")
    p.add_argument("--moves", type=int, default=100_000, help="PlayerMove events (100,000)")
    p.add_argument("--move-conns", type=int, default=6,
                   help="keep-alive connections sending moves (6: 4 to the leader, 1 per follower)")
    p.add_argument("--seed-events", type=int, default=20_000,
                   help="events written before the baseline (20,000), so that GET /events is large")
    p.add_argument("--seed-event-bytes", type=int, default=512,
                   help="size of each seed event's state string (512)")
    p.add_argument("--max-stall-s", type=float, default=10.0,
                   help="fail if the writer goes this long without an acknowledged write")
    args = p.parse_args()
    args.out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="gameraft-hostile-"))
    return args


def raise_open_files(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        sys.exit(f"hostile_load: needs {needed} open files, the hard limit is {hard} (ulimit -Hn)")
    return hard


# --- the writer: sequential critical writes, each retried with its id until acknowledged ------

class Writer(threading.Thread):
    def __init__(self, addr, runid):
        super().__init__(daemon=True)
        self.addr, self.runid = addr, runid
        self.acks = []          # (sent at, acknowledged at, request id), monotonic seconds
        self.errors = []        # (at, kind)
        self.stop = threading.Event()

    def run(self):
        conn, n = None, 0
        while not self.stop.is_set():
            rid = f"{self.runid}-{n}"
            event = {"Critical": {"ScoreUpdate": {"player_id": n, "score": n % 1000, "timestamp": n}}}
            body = json.dumps({"event": event, "request_id": rid})
            sent = time.monotonic()
            while not self.stop.is_set():
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(*self.addr, timeout=REQUEST_S)
                    conn.request("POST", "/events", body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status == 200:
                        self.acks.append((sent, time.monotonic(), rid))
                        break
                    self.errors.append((time.monotonic(), f"HTTP {resp.status} {error_code(data)}"))
                except TimeoutError:
                    self.errors.append((time.monotonic(), "timeout"))
                    conn = close_quietly(conn)
                except (OSError, http.client.HTTPException) as err:
                    self.errors.append((time.monotonic(), type(err).__name__))
                    conn = close_quietly(conn)
                self.stop.wait(0.05)  # a pause before the retry (same id: at most once)
            n += 1
        close_quietly(conn)


def error_code(data):
    try:
        return json.loads(data).get("error", "?")
    except (ValueError, AttributeError):
        return "?"


def close_quietly(conn):
    if conn is not None:
        conn.close()
    return None


# --- the server side, sampled ---------------------------------------------------------------

class NodeSampler(threading.Thread):
    """Every 200 ms: each node's VmRSS, VmHWM and open descriptors, and whether it still runs."""

    def __init__(self, procs, names, ports):
        super().__init__(daemon=True)
        self.procs, self.names, self.ports = procs, names, ports
        self.samples = []   # (at, name, rss_kib, hwm_kib, fds, threads, alive)
        self.stalled = []   # (at, {port: connections}), each second
        self.tcp_mem = []   # (at, pages of the kernel's TCP buffers, machine-wide), each second
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.wait(0.2):
            now = time.monotonic()
            for name in self.names:
                self.samples.append((now, name, *proc_status(self.procs.live[name])))
            if n % 5 == 0:
                self.stalled.append((now, stalled_connections(self.ports)))
                self.tcp_mem.append((now, tcp_mem_pages()))
            n += 1

    def peak(self, name, key, start=0.0, end=float("inf")):
        col = {"rss": 2, "hwm": 3, "fds": 4, "threads": 5}[key]
        vals = [s[col] for s in self.samples if s[1] == name and start <= s[0] < end]
        return max(vals, default=0)

    def exited(self):
        return sorted({s[1] for s in self.samples if not s[6]})


def tcp_mem_pages():
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1])
    return 0


def stalled_connections(ports):
    """Per local port: the server's established connections with unsent data queued that a
    process still holds (inode not 0): readers that stopped reading, not yet cut off."""
    counts = {port: 0 for port in ports}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return counts
    for line in lines:
        f = line.split()
        port = int(f[1].split(":")[1], 16)
        if port in counts and f[3] == "01" and int(f[4].split(":")[0], 16) > 0 and f[9] != "0":
            counts[port] += 1
    return counts


def proc_status(proc):
    """(VmRSS KiB, VmHWM KiB, open fds, threads, alive)"""
    rss = hwm = fds = threads = 0
    alive = proc.poll() is None
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    except OSError:
        alive = False
    return rss, hwm, fds, threads, alive


# --- the load, in a process of its own (so the writer's figures are not the load's GIL) ------

async def http_call(reader, writer, method, path, body=b""):
    """One HTTP/1.1 request on a keep-alive connection: (status, body bytes, server closes)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + body)
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("closed before an answer")
    status, length, close = int(line.split()[1]), 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        key = key.strip().lower()
        if key == "content-length":
            length = int(value)
        elif key == "connection" and "close" in value.lower():
            close = True
    return status, (await reader.readexactly(length) if length else b""), close


def kind_of(err):
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    return type(err).__name__


async def connect(addr, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, addr), CONNECT_S)
    except BaseException:
        sock.close()
        raise
    return sock


async def idle_connection(addr, partial, stop, stats):
    """Holds a connection that never completes a request; opens another when it is closed."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            sock = await connect(addr)
        except (OSError, asyncio.TimeoutError) as err:
            stats["idle connect: " + kind_of(err)] += 1
            if not isinstance(err, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
            continue
        stats["idle connected"] += 1
        try:
            if partial:
                await loop.sock_sendall(sock, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            read = asyncio.ensure_future(loop.sock_recv(sock, 1))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                stats["idle closed by the server"] += 1
            for task in (read, stopped):
                task.cancel()
        except OSError as err:
            stats["idle: " + kind_of(err)] += 1
        finally:
            sock.close()


async def stalled_reader(addr, stop, stats, held):
    """GET /events, then never read; connects again until it gets in."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            sock = await connect(addr, rcvbuf=READER_RCVBUF)
        except (OSError, asyncio.TimeoutError) as err:
            stats["reader connect: " + kind_of(err)] += 1
            if not isinstance(err, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
            continue
        try:
            await loop.sock_sendall(sock, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        except OSError as err:
            stats["reader send: " + kind_of(err)] += 1
            sock.close()
            continue
        stats["readers sent their request"] += 1
        held.append(sock)
        await stop.wait()


def tcp_state(sock):
    try:
        return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]
    except OSError:
        return -1


async def move_sender(addr, players, stats):
    reader = writer = None
    for player in players:
        event = {"PlayerMove": {"player_id": player, "x": 1.5, "y": 0.0, "z": -2.0, "timestamp": 1}}
        body = json.dumps({"event": {"Ephemeral": event}}).encode()
        for _attempt in range(3):
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), CONNECT_S)
                status, data, close = await asyncio.wait_for(
                    http_call(reader, writer, "POST", "/events", body), REQUEST_S)
                if close:
                    writer.close()
                    writer = None
                if status == 200:
                    stats["moves ok"] += 1
                else:
                    stats[f"moves: HTTP {status} {error_code(data)}"] += 1
                break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
                stats["moves: " + kind_of(err)] += 1
                if writer is not None:
                    writer.close()
                writer = None
    if writer is not None:
        writer.close()


async def health_probes(addrs, stop, probes):
    """Each second, a new connection's GET /health to every node: (node, seconds or None)."""
    async def probe(node, addr):
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), CONNECT_S)
            try:
                status, _, _ = await asyncio.wait_for(http_call(reader, writer, "GET", "/health"),
                                                      REQUEST_S)
            finally:
                writer.close()
            probes.append((node, time.monotonic() - start if status == 200 else None))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            probes.append((node, None))
    tasks = []
    while not stop.is_set():
        tasks += [asyncio.ensure_future(probe(node, addr)) for node, addr in addrs.items()]
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    await asyncio.gather(*tasks)


def spread(count, leader, followers, leader_share):
    """Targets for `count` connections: `leader_share` of them on the leader, the rest evenly."""
    on_leader = round(count * leader_share)
    return [leader] * on_leader + [followers[k % len(followers)] for k in range(count - on_leader)]


async def hostile_load(plan):
    addrs = {int(k): tuple(v) for k, v in plan["addrs"].items()}
    leader, followers = plan["leader"], [n for n in addrs if n != plan["leader"]]
    stats, probes, held = Counter(), [], []
    stop = asyncio.Event()
    started = time.monotonic()
    # The legitimate clients connect first (as clients already connected would be), then
    # the flood and the readers arrive all at once.
    players = random.sample(range(1, 1 << 53), plan["moves"])
    conns = plan["move_conns"]
    targets = [leader] * max(1, conns - len(followers)) + followers[:max(0, conns - 1)]
    moves = [asyncio.ensure_future(move_sender(addrs[t], players[k::len(targets)], stats))
             for k, t in enumerate(targets)]
    readers = [asyncio.ensure_future(stalled_reader(addrs[t], stop, stats, held))
               for t in spread(plan["readers"], leader, followers, 2 / 3)]
    flood = [asyncio.ensure_future(idle_connection(addrs[t], k % 2 == 1, stop, stats))
             for k, t in enumerate(spread(plan["idle"], leader, followers, 0.6))]
    probing = asyncio.ensure_future(health_probes(addrs, stop, probes))
    await asyncio.gather(*moves)
    moves_s = time.monotonic() - started
    left = plan["load_s"] - moves_s
    if left > 0:
        await asyncio.sleep(left)
    states = Counter("established" if tcp_state(s) == TCP_ESTABLISHED else "not established"
                     for s in held)
    stop.set()
    await asyncio.gather(*flood, *readers, probing)
    for sock in held:
        sock.close()
    return {"stats": dict(stats), "probes": probes, "moves_s": moves_s,
            "readers_at_end": dict(states), "load_s": time.monotonic() - started}


async def seed(addr, count, state_bytes, conns):
    """`count` critical events with a `state_bytes` state each, over `conns` connections, so
    that a full GET /events is far larger than what the kernel's socket buffers hold."""
    state = "s" * state_bytes
    failures = Counter()

    async def one_connection(numbers):
        reader = writer = None
        for n in numbers:
            event = {"Critical": {"GameStateChange": {"state": state, "timestamp": n}}}
            body = json.dumps({"event": event, "request_id": f"seed-{n}"}).encode()
            while True:  # the same id until acknowledged
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr),
                                                                CONNECT_S)
                    status, data, close = await asyncio.wait_for(
                        http_call(reader, writer, "POST", "/events", body), REQUEST_S)
                    if close:
                        writer.close()
                        writer = None
                    if status == 200:
                        break
                    failures[f"HTTP {status} {error_code(data)}"] += 1
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
                    failures[kind_of(err)] += 1
                    if writer is not None:
                        writer.close()
                    writer = None
                if sum(failures.values()) > 100:
                    raise RuntimeError(f"seeding keeps failing: {dict(failures)}")
        if writer is not None:
            writer.close()
    await asyncio.gather(*(one_connection(range(k, count, conns)) for k in range(conns)))
    return {"failures": dict(failures)}


def seed_process(addr, count, state_bytes, pipe):
    try:
        pipe.send(asyncio.run(seed(tuple(addr), count, state_bytes, 32)))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        pipe.send({"error": f"{type(err).__name__}: {err}"})


def in_process(target, *args):
    """Runs target(*args, pipe) in a new process (spawned, not forked: this process runs
    threads), so that its Python work does not share a GIL with the writer; returns what it
    sent."""
    spawn = multiprocessing.get_context("spawn")
    parent_end, child_end = spawn.Pipe(duplex=False)
    child = spawn.Process(target=target, args=(*args, child_end), daemon=True)
    child.start()
    result = parent_end.recv()
    child.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__} failed: {result['error']}")
    return result


def load_process(plan, pipe):
    try:
        pipe.send(asyncio.run(hostile_load(plan)))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        pipe.send({"error": f"{type(err).__name__}: {err}"})


# --- checks afterwards, from the servers' state ------------------------------------------------

def logged_ids(cluster, node, prefix):
    """Every request id starting with `prefix` in GET /log of `node`, in order."""
    ids, frm = [], 0
    while True:
        st, page = http_json("GET", f"{cluster.url(node)}/log?from={frm}&limit=10000", timeout=30.0)
        if st != 200:
            raise RuntimeError(f"node {node}: GET /log?from={frm} answered {st}")
        ids += [e["request_id"] for e in page["entries"]
                if (e.get("request_id") or "").startswith(prefix)]
        if not page["entries"] or page["next"] >= page["total"]:
            return ids
        frm = page["next"]


def verify(cluster, procs, writer, runid):
    problems, facts = [], {}
    for i in cluster.ids:
        if procs.live[cluster.proc_name(i)].poll() is not None:
            problems.append(f"node {i} exited (status {procs.live[cluster.proc_name(i)].returncode})")
    for i in cluster.ids:
        answers = {path: http_json("GET", cluster.url(i) + path, timeout=10.0)[0]
                   for path in ("/health", "/status", "/events?from=0&limit=1")}
        facts[f"node {i} answers"] = answers
        problems += [f"node {i}: GET {p} answered {st}" for p, st in answers.items() if st != 200]
    if problems:
        return problems, facts
    try:
        wait_until(cluster.settled, CONVERGE_S, "every node at the same event count")
    except TimeoutError as err:
        problems.append(str(err))
    acked = [rid for _, _, rid in writer.acks]
    for i in cluster.ids:
        ids = logged_ids(cluster, i, runid + "-")
        counts = Counter(ids)
        missing = [rid for rid in acked if rid not in counts]
        twice = [rid for rid, n in counts.items() if n > 1]
        facts[f"node {i} log"] = {"run ids": len(ids), "missing acked": len(missing),
                                  "twice": len(twice)}
        if missing:
            problems.append(f"node {i}: {len(missing)} acknowledged writes missing from GET /log, "
                            f"e.g. {missing[:3]}")
        if twice:
            problems.append(f"node {i}: {len(twice)} request ids twice in GET /log")
    return problems, facts


# --- figures ------------------------------------------------------------------------------

def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def phase_figures(writer, phases):
    rows = {}
    for name, (start, end) in phases.items():
        lat = sorted(done - sent for sent, done, _ in writer.acks if start <= done < end)
        errs = Counter(kind for at, kind in writer.errors if start <= at < end)
        rows[name] = {"seconds": end - start, "writes": len(lat),
                      "per_s": len(lat) / (end - start) if end > start else 0.0,
                      "p50_ms": ms(percentile(lat, 0.50)), "p99_ms": ms(percentile(lat, 0.99)),
                      "max_ms": ms(lat[-1] if lat else None), "errors": dict(errs)}
    return rows


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def longest_gap(writer, start, end):
    """Longest time in [start, end) with no write acknowledged."""
    marks = [start] + [done for _, done, _ in writer.acks if start <= done < end] + [end]
    return max(b - a for a, b in zip(marks, marks[1:]))


def probe_figures(probes, names):
    out = {}
    for node in names:
        times = sorted(t for n, t in probes if n == node and t is not None)
        failed = sum(1 for n, t in probes if n == node and t is None)
        out[node] = {"answered": len(times), "failed": failed,
                     "p50_ms": ms(percentile(times, 0.5)), "max_ms": ms(times[-1] if times else None)}
    return out


def render(info, rows, nodes, load, probes, bound_mib, problems):
    fmt = lambda v, unit="": "-" if v is None else f"{v:,.1f}{unit}"  # noqa: E731
    lines = [f"gameraft {info['commit']}, {info['date']}, {info['nproc']} cores {info['cpu']}, "
             f"kernel {info['kernel']}; load: {info['plan']}", "",
             "| phase | seconds | acknowledged writes | writes/s | p50 | p99 | max | writer errors |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        errs = ", ".join(f"{k} x{v}" for k, v in sorted(r["errors"].items())) or "none"
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['writes']:,} | {r['per_s']:,.0f} | "
                     f"{fmt(r['p50_ms'], ' ms')} | {fmt(r['p99_ms'], ' ms')} | "
                     f"{fmt(r['max_ms'], ' ms')} | {errs} |")
    lines += ["", "| node | role | RSS before the load | peak RSS (VmHWM) | peak open fds "
              "| peak threads | new-connection /health during the load: answered, failed, p50, max |",
              "|---|---|---:|---:|---:|---:|---|"]
    for n in nodes:
        p = probes[n["name"]]
        lines.append(f"| {n['id']} | {n['role']} | {n['before_rss_mib']:.1f} MiB | {n['hwm_mib']:.1f} MiB "
                     f"| {n['fds']:,} | {n['threads']} | {p['answered']}, {p['failed']}, {fmt(p['p50_ms'], ' ms')}, "
                     f"{fmt(p['max_ms'], ' ms')} |")
    lines += ["", f"memory bound per node: {bound_mib:.0f} MiB ({per_connection_bytes() / KIB:.0f} KiB "
              f"per connection); kernel TCP buffers, machine-wide, at most {info['tcp_mem_mib']:.0f} MiB "
              f"during the load; load phase {load['load_s']:.1f} s, "
              f"moves sent in {load['moves_s']:.1f} s",
              "load counters: " + ", ".join(f"{k} {v:,}" for k, v in sorted(load["stats"].items())),
              "stalled readers at the end of the load: "
              + ", ".join(f"{k} {v}" for k, v in sorted(load["readers_at_end"].items())),
              "", "checks: " + ("all passed" if not problems else "FAILED: " + "; ".join(problems))]
    return "\n".join(lines) + "\n"


def run(args, procs, results):
    os.chdir(ROOT)
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "gameraft"], check=True)
    if not GAMERAFT_BIN.exists():
        sys.exit(f"hostile_load: {GAMERAFT_BIN} missing; run without --skip-build")
    raise_open_files(args.idle + args.readers + args.move_conns + 512)
    taken = [p for p in [*HTTP_PORTS.values(), *RAFT_PORTS.values()] if port_in_use(p)]
    if taken:
        sys.exit(f"hostile_load: ports {taken} on 127.0.0.1 are in use")
    plan_text = (f"{args.seed_events:,} events of {args.seed_event_bytes} bytes seeded; "
                 f"{args.idle:,} idle connections, {args.readers} readers that never read, "
                 f"{args.moves:,} PlayerMoves over {args.move_conns} connections")
    info = {"commit": git_commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "plan": plan_text, "out": str(args.out), **machine()}
    results["info"] = info
    print(f"gameraft {info['commit']}; data, logs and results in {args.out}", flush=True)

    cluster = Cluster(procs, args.out)
    cluster.start()
    leader = cluster.leader()
    term_before = cluster.status(leader)["current_term"]
    names = {i: cluster.proc_name(i) for i in cluster.ids}
    started = time.monotonic()
    seeded = in_process(seed_process, cluster.addr(leader), args.seed_events, args.seed_event_bytes)
    results["seed"] = {**seeded, "seconds": time.monotonic() - started}
    print(f"seeded {args.seed_events:,} events of {args.seed_event_bytes} bytes in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    runid = f"hostile-{secrets.token_hex(4)}"
    writer = Writer(cluster.addr(leader), runid)
    sampler = NodeSampler(procs, list(names.values()), list(HTTP_PORTS.values()))
    sampler.start()
    t0 = time.monotonic()
    writer.start()
    print(f"cluster up, leader {leader}; baseline {args.before_s:.0f} s", flush=True)
    time.sleep(args.before_s)

    plan = {"addrs": {i: cluster.addr(i) for i in cluster.ids}, "leader": leader,
            "idle": args.idle, "readers": args.readers, "moves": args.moves,
            "move_conns": args.move_conns, "load_s": args.load_s}
    print(f"load on: {plan_text}", flush=True)
    t1 = time.monotonic()
    load = in_process(load_process, plan)
    t2 = time.monotonic()
    print(f"load off after {t2 - t1:.1f} s; after-phase {args.after_s:.0f} s", flush=True)
    time.sleep(args.after_s)
    t3 = time.monotonic()
    writer.stop.set()
    writer.join()
    sampler.stop.set()
    sampler.join()

    phases = {"before": (t0, t1), "during": (t1, t2), "after": (t2, t3)}
    rows = phase_figures(writer, phases)
    problems, facts = verify(cluster, procs, writer, runid)
    problems += [f"node process {name} exited during the run" for name in sampler.exited()]
    term_after = (cluster.status(leader) or {}).get("current_term")
    gap = longest_gap(writer, t0, t3)
    if gap > args.max_stall_s:
        problems.append(f"the writer went {gap:.1f} s without an acknowledged write "
                        f"(over --max-stall-s {args.max_stall_s:.0f})")
    for name, r in rows.items():
        if r["writes"] == 0:
            problems.append(f"no write acknowledged in the {name} phase")
    bound = memory_bound(len(writer.acks) + args.seed_events)
    nodes = []
    for i, name in names.items():
        hwm = max(sampler.peak(name, "hwm"), proc_status(procs.live[name])[1])
        nodes.append({"id": i, "name": name, "role": "leader" if i == leader else "follower",
                      "hwm_mib": hwm / 1024, "load_rss_mib": sampler.peak(name, "rss", t1, t2) / 1024,
                      "before_rss_mib": sampler.peak(name, "rss", t1 - 1.0, t1) / 1024,
                      "fds": sampler.peak(name, "fds"), "threads": sampler.peak(name, "threads")})
        if hwm * 1024 > bound:
            problems.append(f"node {i} peak RSS {hwm / 1024:.0f} MiB is over the bound "
                            f"{bound / MIB:.0f} MiB")
    stalled = {i: [c[HTTP_PORTS[i]] for at, c in sampler.stalled if t1 <= at < t2 + 5][::5]
               for i in cluster.ids}
    page = os.sysconf("SC_PAGE_SIZE")
    info["tcp_mem_mib"] = max((m for at, m in sampler.tcp_mem if t1 <= at < t2), default=0) * page / MIB
    probes = probe_figures(load["probes"], names)
    probes = {names[i]: v for i, v in probes.items()}
    results.update({"phases": rows, "nodes": nodes, "load": load, "probes": probes,
                    "stalled_every_5s": stalled,
                    "checks": facts, "problems": problems, "bound_bytes": bound,
                    "bound_terms": BOUND, "per_connection_bytes": per_connection_bytes(),
                    "longest_gap_s": gap, "leader": leader,
                    "term_before": term_before, "term_after": term_after,
                    "acknowledged": len(writer.acks)})
    report = render(info, rows, nodes, load, probes, bound / MIB, problems)
    report += (f"longest time without an acknowledged write: {gap:.2f} s; leader {leader}, "
               f"term {term_before} before, {term_after} after\n")
    report += "".join(f"node {i}: stalled readers' connections the node holds, every 5 s from the "
                      f"load's start: {counts}\n" for i, counts in stalled.items())
    (args.out / "results.md").write_text(report)
    print("\n" + report)
    return problems


def main():
    guarded_main(parse_args(), run, lambda args: print(f"results.md and results.json in {args.out}"))


if __name__ == "__main__":
    main()
