"""What the CI scripts share to talk to a running cluster: one HTTP call that
returns (status, body) whatever the status, and polling with a deadline."""

import json
import time
import urllib.error
import urllib.request


def http(method, url, body=None, token=None, timeout=10):
    """(status, parsed JSON) on 2xx; (status, the body as text) otherwise."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_until(what, limit_s, check):
    """Calls check() every 200 ms until it returns something true, which it
    returns; raises once limit_s has passed."""
    deadline = time.monotonic() + limit_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit_s}s waiting for {what}")
        time.sleep(0.2)
