"""The synthesize stage against a real loopback OpenAI-compatible server: killed with SIGKILL halfway and
re-run, or stopped by its budget and re-run with a larger one, it never pays twice for a request. Every turn
goes out with its schema as strict json_schema."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from counseltune.config import load_params
from tests.llm.conftest import KEY_ENV, SECRET
from tests.llm.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
N_SESSIONS = 3


def stage_params(server: FakeOpenAI, cache: Path, budget_usd: float = 100.0) -> dict:
    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["llm"]["backend"] = "openai"
    params["llm"]["remote"].update(model="fake-model", base_url=server.url, key_env=KEY_ENV, timeout_s=60,
                                   max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=4,
                                   budget_usd=budget_usd)
    params["llm"]["prices"]["fake-model"] = {"input_per_m": 1000.0, "output_per_m": 2000.0}
    params["llm"]["cache_dir"] = str(cache)
    params["synthesize"]["generators"]["mi_planned"].update(n_sessions=N_SESSIONS, turns=[4, 4])
    return params


def start_stage(tmp: Path, params: dict, processed: Path) -> subprocess.Popen:
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    planner = tmp / "planner.json"
    if not planner.exists():
        subprocess.run([sys.executable, "-m", "counseltune.cli", "plan-behaviors", "--params", str(tmp / "params.yaml"),
                        "--processed", str(processed), "--out", str(planner)], check=True, capture_output=True)
    cmd = [sys.executable, "-m", "counseltune.cli", "synthesize", "--params", str(tmp / "params.yaml"),
           "--generator", "mi_planned", "--processed", str(processed), "--planner", str(planner),
           "--out-dir", str(tmp / "out"), "--stats", str(tmp / "stats.json")]
    env = {**os.environ, KEY_ENV: SECRET, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def turns_asked_with_their_schema(server: FakeOpenAI) -> bool:
    """Each turn request carries a strict json_schema: one bounded utterance, plus the planned code (counselor) or
    talk type (client) as a one-value enum; and no repetition_penalty (a local decode setting)."""
    for entry in server.log:
        fmt = entry.body.get("response_format") or {}
        if fmt.get("type") != "json_schema" or not fmt["json_schema"]["strict"] or "repetition_penalty" in entry.body:
            return False
        schema = fmt["json_schema"]["schema"]
        label = "code" if fmt["json_schema"]["name"] == "mi_planned_counselor_turn" else "talk"
        if (schema["required"] != sorted([label, "utterance"]) or len(schema["properties"][label]["enum"]) != 1
                or not 16 <= schema["properties"]["utterance"]["maxLength"] <= 4 * entry.body["max_tokens"]):
            return False
    return bool(server.log)


def answered_once(server: FakeOpenAI) -> bool:
    counts = Counter(server.bodies())
    return bool(counts) and set(counts.values()) == {1}


@pytest.fixture
def server():
    with FakeOpenAI(latency_s=0.01) as fake:
        yield fake


def test_killed_halfway_and_rerun_pays_every_request_once(server, processed_sample, tmp_path):
    params = stage_params(server, tmp_path / "cache")
    first_round = N_SESSIONS
    server.script(*["ok"] * (first_round + 1), default="hang")  # round 1 answered, round 2 partly, then hangs
    server.hang_s = 60
    child = start_stage(tmp_path, params, processed_sample)
    try:
        # killed once round 2's first reply is in the cache (answered is not enough: the client may not have
        # written it yet) while the next request hangs in flight
        cache = tmp_path / "cache"
        wait_for(lambda: server.paid() == first_round + 1 and server.in_flight >= 1
                 and len(list(cache.rglob("*.json"))) == first_round + 1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert not (tmp_path / "out" / "dialogs.parquet").exists()

    server.script(default="ok")
    rerun = start_stage(tmp_path, params, processed_sample)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_requested"] == N_SESSIONS and stats["usage"]["cache_hits"] == first_round + 1
    assert answered_once(server) and turns_asked_with_their_schema(server)
    assert SECRET not in out + err + (tmp_path / "stats.json").read_text()


def test_the_budget_stops_the_stage_and_a_larger_one_pays_only_the_rest(server, processed_sample, tmp_path):
    params = stage_params(server, tmp_path / "cache", budget_usd=2.0)  # $0.001 a prompt token: a few requests
    stopped = start_stage(tmp_path, params, processed_sample)
    _, err = stopped.communicate(timeout=300)
    # a clean stop: what was accepted is written, the reason is in the stats and said once on stderr
    assert stopped.returncode == 0 and "stopped short (budget)" in err and "llm.remote.budget_usd" in err
    assert json.loads((tmp_path / "stats.json").read_text())["stop_reason"] == "budget"
    assert "Traceback" not in err
    paid_before = server.paid()
    assert 0 < paid_before < N_SESSIONS * 4

    params["llm"]["remote"]["budget_usd"] = 1000.0
    resumed = start_stage(tmp_path, params, processed_sample)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert answered_once(server) and server.paid() > paid_before
