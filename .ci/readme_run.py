#!/usr/bin/env python3
"""Runs the README's run command as a new user would, and checks that it works.

The command is read from the README itself (the first line that starts with
`cargo run` and names `cluster`), so the README cannot drift from what is
tested. It is started in its own process group, like a terminal's foreground
job. Once it reports a leader:

- every example of the README's session (each `curl` command followed by its
  answer as a `# ` comment) is run in the README's order and must answer
  exactly what the README shows, but for the random part of assigned request
  ids; the `DELETE` examples (the session's last step) run at the end;
- one more critical event is written through node 1 and must be readable on
  every node;

then the group gets SIGINT (what Ctrl-C sends) and the command must exit 0
with every node process gone.

Exits non-zero, with the command's output, on any failure.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from cluster_http import http, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_DIR = os.path.join(ROOT, "gameraft-cluster")
# The first release build on 2 cores takes several minutes.
FORM_LIMIT_S = 900
HTTP_BASE = "http://127.0.0.1:{port}"
NODE_PORTS = (8081, 8082, 8083)


def readme_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        for line in readme:
            if re.match(r"^cargo run .*cluster", line):
                return line.strip()
    sys.exit("README.md has no `cargo run ... cluster` line")


def readme_examples():
    """(command, expected answer) for each answered `curl` example, in order."""
    examples, in_sh, command = [], False, None
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        for line in readme.read().splitlines():
            if line.startswith("```"):
                in_sh, command = line == "```sh", None
                continue
            if not in_sh:
                continue
            if command is not None and command.endswith("\\"):
                command = command[:-1] + " " + line.strip()
            elif line.startswith("curl "):
                command = line.strip()
            elif line.startswith("# ") and command is not None:
                examples.append((command, line[2:]))
                command = None
    if not examples:
        sys.exit("README.md has no answered curl examples")
    return examples


def normalized(answer):
    """An answer with the random part of node-assigned request ids masked."""
    return re.sub(r"auto-(\d+)-[0-9a-f]{32}", r"auto-\1-<random>", answer.strip())


def run_examples(examples):
    for command, expected in examples:
        # A read from a follower may trail the leader by a heartbeat: reads
        # (no -X) are polled for a few seconds; writes run exactly once.
        deadline = time.monotonic() + (5 if " -X " not in command else 0)
        while True:
            got = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30).stdout
            if normalized(got) == normalized(expected):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"README example {command!r}\n  README: {expected}\n  got:    {got.strip()}")
            time.sleep(0.2)
    print(f"README examples: {len(examples)} answered as shown", flush=True)


def main():
    command = readme_command()
    if os.path.exists(CLUSTER_DIR):
        sys.exit(f"{CLUSTER_DIR} exists: move it away so the README's cluster starts from nothing")
    print(f"README run command: {command}", flush=True)
    output = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        run_checks(proc, output)
        print("README run command: formed, wrote and read an event on every node, stopped on SIGINT", flush=True)
    except Exception as err:  # any failure: show what the command printed
        output.seek(0)
        print(output.read()[-6000:])
        print(f"FAILED: {err}", flush=True)
        return 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(CLUSTER_DIR, ignore_errors=True)
    return 0


def run_checks(proc, output):
    def formed():
        if proc.poll() is not None:
            raise RuntimeError(f"the command exited with {proc.returncode} before the cluster formed")
        output.seek(0)
        return re.search(r"leader is node (\d+)", output.read())

    leader = wait_until("the cluster to report a leader", FORM_LIMIT_S, formed).group(1)
    print(f"cluster formed, leader is node {leader}", flush=True)
    examples = readme_examples()
    removals = [example for example in examples if " -X DELETE " in example[0]]
    run_examples([example for example in examples if example not in removals])

    tag = int(time.time() * 1000) % (1 << 40)
    event = {"Critical": {"PlayerJoin": {"player_id": tag, "name": "readme-check", "timestamp": tag}}}
    status, body = http("POST", HTTP_BASE.format(port=NODE_PORTS[0]) + "/events", {"event": event})
    if status != 200 or not isinstance(body, dict) or body.get("success") is not True:
        raise RuntimeError(f"POST /events answered {status}: {body}")

    for port in NODE_PORTS:

        def has_event(port=port):
            status, body = http("GET", HTTP_BASE.format(port=port) + "/events")
            return status == 200 and event in body.get("events", [])

        wait_until(f"the event on the node at port {port}", 30, has_event)
    run_examples(removals)

    os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise RuntimeError("the command did not exit within 60s of SIGINT")
    if code != 0:
        raise RuntimeError(f"the command exited {code} after SIGINT")
    left = processes_in_group(proc.pid)
    if left:
        raise RuntimeError(f"node processes still running after the command exited: {left}")


def processes_in_group(pgid):
    """Pids of live processes whose process group is `pgid` (read from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        # After the command name: state, ppid, pgrp. A zombie is gone already.
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


if __name__ == "__main__":
    sys.exit(main())
