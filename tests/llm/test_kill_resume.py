"""A run killed with SIGKILL mid-batch resumes without paying again for anything it had received."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from counseltune.llm import Reply, make_client

from .conftest import remote_config, user_requests

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import json, sys
from counseltune.llm import make_client
from tests.llm.conftest import user_requests
make_client(json.loads(sys.argv[1])).complete(user_requests(int(sys.argv[2])))
"""


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sigkill_halfway_then_rerun_pays_each_request_once(fake_server, api_key, tmp_path):
    n, answered = 12, 5
    # The first 5 requests are answered; the rest hang, so the kill lands with 3 requests in flight.
    server = fake_server(latency_s=0.02, faults=["ok"] * answered, default="hang", hang_s=60)
    cache = tmp_path / "cache"
    config = remote_config(server, cache, concurrency=3, timeout_s=60)
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config), str(n)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(cache.rglob("*.json"))) == answered and server.in_flight == 3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert server.paid() == answered

    server.script(default="ok")
    client = make_client(config)
    results = client.complete(user_requests(n))

    assert all(isinstance(r, Reply) for r in results)
    assert client.usage.cache_hits == answered and client.usage.requests == n - answered
    answered_once = Counter(server.bodies())
    assert len(answered_once) == n and set(answered_once.values()) == {1}
    for entry in cache.rglob("*.json"):  # every entry whole
        assert json.loads(entry.read_text(encoding="utf-8"))["reply"]["text"]
