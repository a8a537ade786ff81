"""Helpers for the benches (vs_etcd.py, hostile_load.py): child processes, JSON over HTTP, wrk, machine facts.

Standard library only. Nothing here knows about gameraft or etcd.
"""
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

# No proxy for 127.0.0.1, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STOP_GRACE_S = 5.0


def cargo_target_dir(root):
    """Where cargo puts its builds for the workspace at `root`: $CARGO_TARGET_DIR (relative
    to `root`, where the benches run cargo) or `root/target`."""
    return root / os.environ.get("CARGO_TARGET_DIR", "target")


def http_json(method, url, body=None, timeout=2.0):
    """One request; returns (status, parsed JSON or None). Status 0: no answer."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (OSError, http.client.HTTPException):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def wait_until(check, timeout_s, what, interval_s=0.05):
    """Poll check() until it returns something truthy; return it. Raise on deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def port_in_use(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Procs:
    """Every server process this run started, by name, so each can be stopped by pid."""

    def __init__(self):
        self.live = {}  # name -> Popen

    def start(self, name, cmd, log_path):
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.live[name] = proc
        return proc

    def pid(self, name):
        return self.live[name].pid

    def sigkill(self, name):
        """SIGKILL now and return the kill instant (monotonic); reap afterwards with reap()."""
        proc = self.live[name]
        os.kill(proc.pid, signal.SIGKILL)
        return time.monotonic()

    def reap(self, name):
        self.live.pop(name).wait()

    def stop_all(self):
        """SIGTERM every live process, wait up to STOP_GRACE_S, then SIGKILL the rest."""
        procs = list(self.live.values())
        self.live.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def install_signal_handlers():
    """SIGINT/SIGTERM become SystemExit, so `finally` blocks stop the servers."""
    def handler(signum, _frame):
        ignore_signals()
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def ignore_signals():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def guarded_main(args, run, saved):
    """Runs `run(args, procs, results)` and exits: 0, 1 if it returned problems, 2 on an
    error, 128+N on signal N. Whatever happens the servers in `procs` are stopped and, if
    `run` gathered any, the results go to `args.out/results.json` and `saved(args)` says
    where they are."""
    install_signal_handlers()
    procs, results, status = Procs(), {}, 0
    try:
        problems = run(args, procs, results)
        if problems:
            print(f"FAILED: {len(problems)} verification problem(s); see the table above")
            status = 1
    except (Exception, SystemExit) as err:  # noqa: BLE001 - report, clean up, exit non-zero
        if isinstance(err, SystemExit) and not isinstance(err.code, int):
            raise
        if isinstance(err, SystemExit):
            print(f"interrupted (exit {err.code}); stopping the servers", file=sys.stderr)
            status = err.code
        else:
            print(f"ERROR: {type(err).__name__}: {err}", file=sys.stderr)
            status = 2
    finally:
        ignore_signals()  # a second Ctrl-C must not interrupt the clean-up
        procs.stop_all()
        if results:
            (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
            saved(args)
    sys.exit(status)


def run_wrk(script, url, conns, secs, script_args):
    """Run wrk with a bench-vs-etcd/*.lua script; return the JSON line its done() printed."""
    threads = 1 if conns == 1 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{secs}s", "--latency",
           "-s", str(script), url, "--", *map(str, script_args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["per_s"] = result["ok"] / (result["duration_us"] / 1e6)
            result["cmd"] = " ".join(cmd)
            return result
    raise RuntimeError(f"wrk printed no JSON line (exit {out.returncode}): "
                       f"{out.stdout[-500:]} {out.stderr[-500:]}")


class RssSampler:
    """Background thread: max VmRSS (KiB) of each named pid, sampled every 100 ms."""

    def __init__(self, pids):
        self.pids, self.peak_kib = pids, {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak_kib[name] = max(self.peak_kib[name], vm_rss_kib(pid))
            self._stop.wait(0.1)

    def peak_mib(self):
        return {name: round(kib / 1024, 1) for name, kib in self.peak_kib.items()}


def vm_rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_busy_fraction(secs=2.0):
    """Fraction of all CPUs' time not idle (nor iowait) over `secs`, from /proc/stat."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]
    total0, idle0 = sample()
    time.sleep(secs)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def fdatasync_ms(directory, writes=200, size=200):
    """Median ms of write(size bytes) + fdatasync in `directory`: the floor of a durable commit."""
    path = Path(directory) / "fdatasync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    times, buf = [], b"x" * size
    try:
        for _ in range(writes):
            start = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def git_commit():
    commit = first_line(["git", "rev-parse", "--short", "HEAD"])
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    return commit + ("-dirty" if status.stdout.strip() else "")


def machine():
    model = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release()}


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_ms(us):
    ms = us / 1000
    return f"{ms:.2f} ms" if ms < 1 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
