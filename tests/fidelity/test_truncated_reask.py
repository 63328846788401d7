"""A judge answer cut by max_tokens, through a real client and the loopback judge: it is re-asked by the structured
layer at most max_reasks times (never retried by the client as a transport fault), every attempt is priced in the
usage and the run's spend ledger, and what is still cut after the last re-ask is a counted failure, never data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counseltune.llm.answer_bound import BYTE_LEVEL, REMOTE, answer_cap, max_answer_tokens, token_cost
from counseltune.fidelity.judges.ctrs import ctrs_schema
from counseltune.fidelity.judges.judge import judge_miti, miti_schema
from counseltune.fidelity.crisis_safety.safety import safety_schema
from counseltune.fidelity.judges.sessions import Session
from counseltune.llm.ledger import LEDGER_NAME, SpendLedger
from counseltune.config import load_params
from counseltune.study import apply_overrides, load_study

from .test_judge_loopback import JUDGE

PRICE = {"input_per_m": 30.0, "output_per_m": 60.0}  # GPT-4-0613's
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def loopback(monkeypatch, tmp_path):
    from .test_judge_loopback import serve

    yield from serve(monkeypatch, tmp_path)


def session(dialog_id: str) -> Session:
    return Session(dialog_id, "en", ((0, "counselor", "What brings you here?"), (1, "client", "I drink too much."),
                                     (2, "counselor", "You are worried about it.")))


def billed(body: dict) -> float:
    """What the loopback server billed for a 'length' answer, recomputed from the request (tests/llm/fake_openai):
    prompt tokens = characters of the messages, completion = the first half of its JSON reply."""
    prompt = sum(len(m["content"]) for m in body["messages"])
    content = json.dumps({"reply": body["messages"][-1]["content"]}, ensure_ascii=False)
    completion = len(content[: len(content) // 2])
    return (prompt * PRICE["input_per_m"] + completion * PRICE["output_per_m"]) / 1e6


def priced_judge(client_for):
    return client_for(JUDGE, prices={JUDGE: PRICE}, max_retries=3)


@pytest.mark.parametrize("max_reasks", [0, 2])
def test_an_answer_always_cut_is_reasked_max_reasks_times_each_priced_then_a_failure(loopback, tmp_path, max_reasks):
    server, client_for = loopback
    server.script(default="length")
    judge = priced_judge(client_for)
    result = judge_miti(judge, [session("toy:a")], max_reasks=max_reasks)

    asks = max_reasks + 1
    assert len(server.log) == server.paid() == asks  # one request per ask: no transport retry of a cut answer
    assert [len(e.body["messages"]) for e in server.log] == [2 + 2 * k for k in range(asks)]  # each one a re-ask
    assert judge.usage.attempt_errors == {} and judge.usage.requests == asks
    assert result.outcome.failures == {"truncated": 1} and result.codes.is_empty() and result.globals.is_empty()
    assert result.failures.row(0, named=True)["attempts"] == asks
    report = result.report()
    assert (report["asks"], report["reasks"], report["truncated"], report["paid_attempts"]) == (asks, max_reasks, asks, asks)
    expected = sum(billed(e.body) for e in server.log)
    assert report["cost_usd"] == pytest.approx(expected, abs=1e-6) and judge.usage.cost_usd == pytest.approx(expected)
    ledger = SpendLedger(tmp_path / "llm-cache" / LEDGER_NAME, 100.0).spent()
    assert ledger["spent_usd"] == pytest.approx(expected)  # every attempt is in the run's ledger too


def test_a_cut_answer_is_reasked_with_a_shorter_note_and_a_rerun_pays_nothing(loopback, tmp_path):
    server, client_for = loopback
    server.script("length")  # the first answer is cut, the re-ask answers in full
    result = judge_miti(priced_judge(client_for), [session("toy:a")], max_reasks=2)

    assert result.report()["judged"] == 1 and result.outcome.truncated == 1 and result.outcome.reasks == 1
    assert "length limit" in server.log[-1].body["messages"][-1]["content"]
    again = priced_judge(client_for)  # a new run on the same cache: the cut answer is replayed, not re-bought
    second = judge_miti(again, [session("toy:a")], max_reasks=2)
    assert len(server.log) == 2 and again.usage.requests == 0 and second.codes.equals(result.codes)


def test_the_study_caps_hold_the_longest_answer_its_schemas_allow():
    params = apply_overrides(load_params(REPO / "params.yaml"), load_study(REPO / "studies" / "mi-study.yaml"))
    judge, safety = params["fidelity"]["judge"], params["fidelity"]["safety"]
    # MITI for a 30-turn session: 15 counselor utterances (indices 1..29), and 30 at most
    assert judge["miti_max_tokens"] >= max_answer_tokens(miti_schema(list(range(1, 60, 2))))
    assert judge["ctrs_max_tokens"] >= max_answer_tokens(ctrs_schema())
    assert safety["judge_max_tokens"] >= max_answer_tokens(safety_schema())
    assert judge["max_reasks"] == 2


def test_the_bound_is_counted_by_hand_for_a_small_schema():
    schema = {"type": "object", "additionalProperties": False, "required": ["ok", "why"],
              "properties": {"ok": {"type": "boolean"}, "why": {"type": "string", "maxLength": 10}}}
    # {"ok":false,"why":"<10 chars>"}: frame 2 braces + '"ok":false' (10) + ',' + '"why":""' (8) = 21 chars
    assert max_answer_tokens(schema) == -(-21 // 2) + 10 * 2
    with pytest.raises(ValueError, match="maxLength"):
        max_answer_tokens({"type": "string"})


def test_a_local_judge_is_bounded_at_one_token_a_byte():
    schema = {"type": "object", "additionalProperties": False, "required": ["ok", "why"],
              "properties": {"ok": {"type": "boolean"}, "why": {"type": "string", "maxLength": 10}}}
    # the same 21 frame characters at one token each, 10 characters at 3 tokens (a Hangul syllable's UTF-8 bytes)
    assert max_answer_tokens(schema, BYTE_LEVEL) == 21 + 10 * 3
    assert len("한".encode()) == len("汉".encode()) == BYTE_LEVEL.tokens_per_text_char

    class Judge:  # only the backend matters to the bound
        def __init__(self, backend):
            self.config = type("Config", (), {"backend": backend})()

    assert token_cost(Judge("local")) is BYTE_LEVEL and token_cost(Judge("openai")) is REMOTE
    assert answer_cap(schema, 1000, Judge("local")) == 51 and answer_cap(schema, 1000, Judge("openai")) == 31
    assert answer_cap(schema, 40, Judge("local")) == 40


def test_the_default_safety_cap_holds_the_longest_verdict_a_local_judge_can_write():
    # the default judges locally (llm.backend: local): a Korean verdict at the 200-character bound was cut at 384
    params = load_params(REPO / "params.yaml")
    assert params["llm"]["backend"] == "local"
    assert params["fidelity"]["safety"]["judge_max_tokens"] >= max_answer_tokens(safety_schema(), BYTE_LEVEL)
