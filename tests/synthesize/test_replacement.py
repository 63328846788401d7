"""n_sessions counts accepted sessions: rejected ones are replaced from the next seeds in further rounds, bounded by
the attempt cap, the seed pool and the budget. Run through the real OpenAI client against a loopback endpoint that
writes mi_plain transcripts (some in the wrong language, so the filters reject them)."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re

import polars as pl
import pytest

from counseltune.llm import make_client
from counseltune.schemas.tables import CuratedDialogs, Quarantine
from counseltune.synthesize.run import synthesize
from counseltune.tables.io import read_table
from tests.fidelity.test_judge_loopback import ScriptedOpenAI
from tests.llm.conftest import KEY_ENV, SECRET, remote_config
from tests.synthesize.helpers import processed_dir

N_SESSIONS = 4
PARAMS = {"synthesize": {
    "seed": 11,
    "filters": {"min_turns": 4, "max_turns": 40, "min_language_share": 0.7, "near_threshold": 0.85, "shingle_chars": 5},
    "attempts": {"max_factor": 3.0, "max_seed_uses": None},
    "generators": {"mi_plain": {"method": "MI", "n_sessions": N_SESSIONS, "language": "zh", "turns": [6, 8],
                                "session_max_tokens": 200}},
}}
HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def _digest(body: dict) -> bytes:  # as a sampling model: the same prompt with another seed is another session
    return hashlib.sha256(json.dumps([body["messages"], body.get("seed")], ensure_ascii=False).encode()).digest()


def transcript(body: dict, english: bool = False) -> str:
    """A zh MI transcript of the asked length, a function of the request (distinct per session)."""
    asked = re.search(r"(\d+)", body["messages"][-1]["content"])
    rng = random.Random(_digest(body))
    lines = []
    for i in range(int(asked.group(1)) if asked else 8):
        words = (" ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(6)) if english
                 else "".join(rng.choice(HAN) for _ in range(16)))
        lines.append(("来访者：" if i % 2 == 0 else "咨询师：") + words + "。")
    return "\n".join(lines)


def every_third_english(body: dict) -> str:
    return transcript(body, english=_digest(body)[0] % 3 == 0)


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    servers = []

    def start(respond, **kwargs) -> ScriptedOpenAI:
        server = ScriptedOpenAI(respond=respond, **kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    return processed_dir(tmp_path_factory.mktemp("data") / "processed", with_annomi=False)  # 3 zh train seeds


def client_for(server, cache, **overrides):
    return make_client(remote_config(server, cache, timeout_s=10.0, **overrides), stage="synthesize[mi_plain]")


def run(params, processed, out, client):
    stats = synthesize(params, "mi_plain", processed, out, client)
    return stats, read_table(out / "dialogs.parquet", CuratedDialogs), read_table(out / "quarantine.parquet", Quarantine)


def test_rejected_sessions_are_replaced_until_n_sessions_are_accepted(endpoint, processed, tmp_path):
    server = endpoint(every_third_english)
    stats, dialogs, quarantine = run(PARAMS, processed, tmp_path / "out", client_for(server, tmp_path / "cache"))

    assert stats["stop_reason"] == "target_reached" and stats["n_requested"] == N_SESSIONS
    assert dialogs.height == stats["n_accepted"] == N_SESSIONS
    assert stats["n_attempted"] == N_SESSIONS + quarantine.height > N_SESSIONS  # some were rejected, and replaced
    assert len(stats["attempt_rounds"]) >= 2 and stats["attempt_rounds"][0]["attempted"] == N_SESSIONS
    assert sum(r["attempted"] for r in stats["attempt_rounds"]) == stats["n_attempted"] == len(server.log)
    assert set(quarantine["reason"]) == {"wrong_language"} and stats["n_quarantined"] == quarantine.height
    ids = dialogs["dialog_id"].to_list() + quarantine["record"].to_list()
    assert len(set(ids)) == stats["n_attempted"]  # every attempt is accepted or quarantined, each under its own id
    assert stats["seed_pool"] == 3 and stats["seed_reuses"] == stats["n_attempted"] - 3  # cycling is counted


def without_cache_counts(meta: str) -> dict:
    data = json.loads(meta)
    data["usage"].pop("cached")  # how many of the session's replies came from the cache: all of them, the 2nd time
    return data


def test_a_rerun_reproduces_the_sessions_and_sends_nothing(endpoint, processed, tmp_path):
    server = endpoint(every_third_english)
    first, dialogs, quarantine = run(PARAMS, processed, tmp_path / "a", client_for(server, tmp_path / "cache"))
    sent = len(server.log)
    again = client_for(server, tmp_path / "cache")
    second, dialogs2, quarantine2 = run(PARAMS, processed, tmp_path / "b", again)

    assert len(server.log) == sent and again.usage.requests == 0
    assert dialogs2.drop("meta").equals(dialogs.drop("meta")) and quarantine2.equals(quarantine)
    assert [without_cache_counts(m) for m in dialogs2["meta"]] == [without_cache_counts(m) for m in dialogs["meta"]]
    assert {k: v for k, v in second.items() if k != "usage"} == {k: v for k, v in first.items() if k != "usage"}


def test_the_attempt_cap_stops_the_rounds_with_the_counts_right(endpoint, processed, tmp_path):
    server = endpoint(lambda body: transcript(body, english=True))  # every session fails the language filter
    params = copy.deepcopy(PARAMS)
    params["synthesize"]["attempts"]["max_factor"] = 1.5  # ceil(1.5 x 4) = 6 attempts
    stats, dialogs, quarantine = run(params, processed, tmp_path / "out", client_for(server, tmp_path / "cache"))

    assert stats["stop_reason"] == "attempt_cap" and stats["max_attempts"] == 6
    assert stats["attempt_rounds"] == [{"attempted": 4, "accepted": 0}, {"attempted": 2, "accepted": 0}]
    assert (stats["n_attempted"], stats["n_accepted"], stats["n_quarantined"]) == (6, 0, 6) == (len(server.log), dialogs.height, quarantine.height)
    assert stats["quarantine_reasons"] == {"wrong_language": 6} and "max_factor" in stats["stop_detail"]


def test_a_replacement_may_not_duplicate_an_accepted_session(endpoint, processed, tmp_path):
    fixed = transcript({"messages": [{"content": "8"}], "seed": 0})  # every session the same transcript
    server = endpoint(lambda body: fixed)
    stats, dialogs, quarantine = run(PARAMS, processed, tmp_path / "out", client_for(server, tmp_path / "cache"))

    assert dialogs.height == 1 and stats["stop_reason"] == "attempt_cap" and stats["n_attempted"] == 12
    later = quarantine.filter(pl.col("record").str.extract(r"-(\d+)$").cast(pl.Int64) >= N_SESSIONS)
    assert later.height == 8 and set(later["reason"]) == {"exact_duplicate"}  # replacements vs the first round's
    assert all(dialogs["dialog_id"][0] in d for d in later["detail"])


def test_a_used_up_seed_pool_is_the_stop_reason_never_a_silent_reuse(endpoint, processed, tmp_path):
    server = endpoint(every_third_english)
    params = copy.deepcopy(PARAMS)
    params["synthesize"]["attempts"]["max_seed_uses"] = 1  # 3 zh train seeds for 4 sessions
    stats, dialogs, _ = run(params, processed, tmp_path / "out", client_for(server, tmp_path / "cache"))

    assert stats["stop_reason"] == "seed_pool_exhausted" and "max_seed_uses" in stats["stop_detail"]
    assert stats["n_attempted"] == stats["seeds_used"] == 3 and stats["seed_reuses"] == 0
    assert dialogs.height == stats["n_accepted"] < N_SESSIONS


def test_the_budget_stops_the_rounds_cleanly_and_a_larger_one_pays_only_the_rest(endpoint, processed, tmp_path):
    server = endpoint(every_third_english)
    # $0.001 a prompt token: each request reserves ~$0.9 in the worst case, so $2 stops the first round part-way
    stats, dialogs, quarantine = run(PARAMS, processed, tmp_path / "a",
                                     client_for(server, tmp_path / "cache", budget_usd=2.0, concurrency=1))
    paid = server.paid()
    assert stats["stop_reason"] == "budget" and "llm.remote.budget_usd" in stats["stop_detail"]
    assert 0 < paid < N_SESSIONS and stats["n_unfinished"] == N_SESSIONS - paid
    assert dialogs.height == stats["n_accepted"] and stats["n_attempted"] == N_SESSIONS
    unfinished = quarantine.filter(pl.col("reason") == "llm_budget_stop")
    assert unfinished.height == stats["n_unfinished"]  # reported, never lost
    assert stats["usage"]["cost_usd"] <= 2.0

    ledger_dir = tmp_path / "cache"
    stats2, dialogs2, _ = run(PARAMS, processed, tmp_path / "b", client_for(server, ledger_dir, budget_usd=100.0))
    assert stats2["stop_reason"] == "target_reached" and dialogs2.height == N_SESSIONS
    bodies = [json.dumps(e.body, sort_keys=True) for e in server.log if e.status == 200]
    assert len(bodies) == len(set(bodies))  # nothing paid twice: the first run's answers came from the cache
