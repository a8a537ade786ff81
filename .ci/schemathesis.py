#!/usr/bin/env python3
"""Schemathesis against a running 3-node cluster, then a check of what it committed.

- A venv under the cargo target directory (target/ci-venv) gets a pinned
  Schemathesis from PyPI (once; kept while the version matches).
- `gameraft cluster --secure` (the debug build, built if missing) starts 3 nodes
  on free ports in a temporary directory, with client tokens and peer TLS; its
  printed node lines give their addresses, and every request carries the admin
  token it made. Requests sent to a follower are forwarded to the leader over
  the peer TLS.
- /openapi.json is fetched and checked to be an OpenAPI 3.1 document; then
  Schemathesis runs against the leader, and again against a follower, with a
  bounded number of examples per operation, checking that no answer is a 5xx
  and that each answer's status, content type and body are the document's.
  `POST /nodes` and `DELETE /nodes/{id}` are left out: with the admin token,
  generated ones would change the membership under the run (their answers, and
  the 401 and 403 ones, are checked by src/api/tests/openapi.rs).
- Every request and answer is recorded (HAR). Afterwards, once the nodes agree
  (all hold the same GET /log): each committed event was appended by a POST
  /events answered 2xx (or 504 `outcome_unknown`, which may or may not commit),
  as many times as such answers say (a retry under a client's request id is
  answered `"duplicate": true` and appends nothing), and each one answered 2xx
  is there.

Prints how many requests Schemathesis made and how long it took. Exits non-zero
on any failure, with the end of the node logs.
"""

import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from cluster_http import http, wait_until

SCHEMATHESIS = "4.32.5"
# Test cases per operation and phase. 8 operations are run (the document's own
# and the 2 left out are not): about 1,600 requests and half a minute per run
# on 2 cores.
MAX_EXAMPLES = 200
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Membership changes, left out (see above): their operation ids.
EXCLUDED_OPERATIONS = ("join", "remove")
FORM_LIMIT_S = 120
CONVERGE_LIMIT_S = 30
ASSIGNED_ID = re.compile(r"^auto-\d+-[0-9a-f]{32}$")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def venv_schemathesis():
    """The path of a `schemathesis` of the pinned version, installing it if needed."""
    venv = os.path.join(TARGET, "ci-venv")
    exe = os.path.join(venv, "bin", "schemathesis")
    if os.path.exists(exe):
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        if version.split()[-1:] == [SCHEMATHESIS]:
            return exe
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(
        [os.path.join(venv, "bin", "pip"), "install", "-q", f"schemathesis=={SCHEMATHESIS}"], check=True
    )
    return exe


def gameraft():
    # The README run's build: after it in .ci/run, this builds nothing.
    exe = os.path.join(TARGET, "release", "gameraft")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "gameraft"], cwd=ROOT, check=True)
    return exe


def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_base_ports(nodes):
    """(http, raft) base ports with `nodes` free ports from each."""
    for _ in range(100):
        http, raft = random.randrange(20000, 30000), random.randrange(30000, 40000)
        if all(free(http + i) and free(raft + i) for i in range(nodes)):
            return http, raft
    raise RuntimeError("found no free ports")


# The admin token of the cluster under test, sent with every request.
TOKEN = {"value": None}


class Cluster:
    """`gameraft cluster` in its own process group, and the nodes it printed."""

    def __init__(self, exe, workdir):
        http_base, raft_base = free_base_ports(3)
        self.output = open(os.path.join(workdir, "cluster.out"), "w+")
        self.dir = os.path.join(workdir, "cluster")
        command = [exe, "cluster", "--nodes", "3", "--secure", "--dir", self.dir]
        command += ["--base-http-port", str(http_base), "--base-raft-port", str(raft_base)]
        print("$ " + " ".join(command), flush=True)
        self.proc = subprocess.Popen(command, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True)
        self.urls, self.leader = wait_until("the cluster to form", FORM_LIMIT_S, self.formed)
        with open(os.path.join(self.dir, "secure", "admin-token")) as file:
            TOKEN["value"] = file.read().strip()
        print(f"cluster formed: {self.urls}, leader is node {self.leader}", flush=True)

    def formed(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"gameraft cluster exited with {self.proc.returncode} before it formed")
        self.output.seek(0)
        text = self.output.read()
        leader = re.search(r"leader is node (\d+)", text)
        nodes = re.findall(r"^  node (\d+)  (http://\S+)", text, re.MULTILINE)
        if not leader or len(nodes) < 3:
            return None
        return {int(id): url for id, url in nodes}, int(leader.group(1))

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def logs(self):
        self.output.seek(0)
        text = self.output.read()[-3000:]
        for name in sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []:
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as log:
                    text += f"\n--- {name} (end)\n" + log.read()[-3000:]
        return text


def fetch_document(url):
    status, document = http("GET", url + "/openapi.json", token=TOKEN["value"])
    if status != 200 or not isinstance(document, dict) or not document.get("openapi", "").startswith("3.1"):
        raise RuntimeError(f"GET /openapi.json answered {status}: {str(document)[:500]}")
    operations = sum(1 for item in document["paths"].values() for key in item if key in ("get", "post", "delete"))
    print(f"GET {url}/openapi.json: OpenAPI {document['openapi']}, {operations} operations", flush=True)
    return document


def run_schemathesis(exe, url, workdir, har):
    command = [exe, "run", url + "/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES)]
    command += ["--header", f"Authorization: Bearer {TOKEN['value']}"]
    for operation in EXCLUDED_OPERATIONS:
        command += ["--exclude-operation-id", operation]
    # Unsanitized: the check below needs the Idempotency-Key headers as sent.
    command += ["--report", "har", "--report-har-path", har, "--output-sanitize", "false", "--request-timeout", "30"]
    print("$ " + " ".join(command).replace(TOKEN["value"], "<admin token>"), flush=True)
    started = time.monotonic()
    # In the work directory: Schemathesis keeps a cache of failures in its own.
    code = subprocess.run(command, cwd=workdir, env=dict(os.environ, NO_COLOR="1")).returncode
    elapsed = time.monotonic() - started
    with open(har, encoding="utf-8") as file:
        entries = json.load(file)["log"]["entries"]
    print(f"schemathesis against {url}: {len(entries)} requests in {elapsed:.0f} s, exit {code}", flush=True)
    if code != 0:
        raise RuntimeError(f"schemathesis found failures against {url} (exit {code})")
    return entries


def header(request, name):
    for item in request.get("headers", []):
        if item["name"].lower() == name.lower():
            return item["value"]
    return None


def canonical(event):
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


def sent_events(entries):
    """Critical events of POST /events requests, by what their answers say.

    Returns (appended, maybe): multisets of (client request id or None,
    canonical event). `appended` counts the 2xx answers that appended the
    event: every one without a client id, and those with one that are not
    `"duplicate": true`. `maybe` counts the 504 answers (the write may or may
    not have committed).
    """
    appended, maybe = collections.Counter(), collections.Counter()
    for entry in entries:
        request, response = entry["request"], entry["response"]
        status = response["status"]
        if request["method"] != "POST" or not request["url"].split("?")[0].endswith("/events"):
            continue
        if not (200 <= status < 300 or status == 504):
            continue
        text = request.get("postData", {}).get("text", "")
        try:
            body = json.loads(text)
            event = body["event"]
            answer = json.loads(response["content"]["text"]) if status < 300 else {}
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"POST /events answered {status} to a body that is no event: {text[:300]!r}")
        if "Critical" not in event:
            continue
        client_id = body.get("request_id") or header(request, "Idempotency-Key")
        key = (client_id, canonical(event))
        if status == 504:
            maybe[key] += 1
        elif answer.get("duplicate") is not True:
            appended[key] += 1
    return appended, maybe


def read_log(url):
    entries, start = [], 0
    while True:
        status, page = http("GET", f"{url}/log?from={start}&limit=10000", token=TOKEN["value"])
        if status != 200:
            raise RuntimeError(f"GET {url}/log answered {status}: {page}")
        entries += page["entries"]
        start = page["next"]
        if start >= page["total"]:
            return entries


def check_commits(urls, leader, entries):
    appended, maybe = sent_events(entries)

    def converged():
        committed = http("GET", leader + "/status", token=TOKEN["value"])[1]["event_count"]
        logs = [read_log(url) for url in urls.values()]
        return logs if all(log == logs[0] for log in logs) and len(logs[0]) >= committed else None

    log = wait_until("every node to hold the same log", CONVERGE_LIMIT_S, converged)[0]
    committed, unmatched = collections.Counter(), []
    for entry in log:
        key = (entry["request_id"], canonical(entry["event"]))
        if key in appended or key in maybe:
            committed[key] += 1
        elif key[0] is not None and ASSIGNED_ID.match(key[0]):
            # The node assigned the id: the client sent none.
            committed[(None, key[1])] += 1
        else:
            unmatched.append(entry)
    if unmatched:
        raise RuntimeError(f"committed, but no write of it was answered 2xx (or 504): {json.dumps(unmatched[:5])}")
    wrong = [
        (key, committed[key], appended[key], maybe[key])
        for key in set(committed) | set(appended)
        if not appended[key] <= committed[key] <= appended[key] + maybe[key]
    ]
    if wrong:
        raise RuntimeError(f"(request id, event), times committed, 2xx answers that appended it, 504s: {wrong[:5]}")
    print(
        f"GET /log on {len(urls)} nodes: the same {len(log)} events, each appended by a POST /events answered "
        f"2xx ({sum(appended.values())} such answers, {sum(maybe.values())} answered 504)",
        flush=True,
    )


def main():
    schemathesis = venv_schemathesis()
    exe = gameraft()
    workdir = tempfile.mkdtemp(prefix="schemathesis-", dir=TARGET)
    cluster = None
    try:
        cluster = Cluster(exe, workdir)
        leader = cluster.urls[cluster.leader]
        follower = next(url for id, url in sorted(cluster.urls.items()) if id != cluster.leader)
        fetch_document(leader)
        entries, started = [], time.monotonic()
        for name, url in (("leader", leader), ("follower", follower)):
            print(f"--- schemathesis against the {name}, {url}", flush=True)
            entries += run_schemathesis(schemathesis, url, workdir, os.path.join(workdir, f"{name}.har"))
        elapsed = time.monotonic() - started
        check_commits(cluster.urls, leader, entries)
        print(f"schemathesis {SCHEMATHESIS}: {len(entries)} requests in {elapsed:.0f} s, no failures", flush=True)
    except Exception as err:  # any failure: show what the nodes logged
        if cluster is not None:
            print(cluster.logs())
        print(f"FAILED: {err} (requests and node logs kept in {workdir})", flush=True)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
