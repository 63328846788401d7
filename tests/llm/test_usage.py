"""Accounting: the worst-case estimate the budget uses, and the usage file and summary."""

from __future__ import annotations

import json

from counseltune.llm import ChatRequest, Usage, write_usage
from counseltune.llm.config import Price
from counseltune.llm.usage import Budget, estimate_tokens, worst_case_cost


def test_the_estimate_is_half_the_ascii_characters_and_one_per_han_character():
    assert estimate_tokens("abcd") == 2 and estimate_tokens("你好") == 2 and estimate_tokens("hi 你好") == 4


def test_worst_case_cost_prices_the_estimated_prompt_and_all_of_max_tokens():
    request = ChatRequest.of([{"role": "user", "content": "x" * 20}], max_tokens=100)
    assert worst_case_cost(request, Price(1e6, 2e6)) == (10 + 4) * 1 + 100 * 2


def test_the_budget_counts_spent_and_reserved():
    usage = Usage(cost_usd=0.5)
    budget = Budget(1.0, usage)
    first = budget.reserve(0.3)
    assert first and not budget.reserve(0.3)
    budget.release(first)
    assert budget.reserve(0.5) and not budget.reserve(0.01)


def test_two_clients_on_one_ledger_share_one_budget(tmp_path):
    """The study's budget_usd caps the run: a second client (another fidelity job's judge) sees the first's spend."""
    from counseltune.llm.ledger import SpendLedger

    judge = Budget(1.0, Usage(), SpendLedger(tmp_path / "spend.ledger", 1.0), booked_as=("fidelity[a]", "gpt"))
    client = Budget(1.0, Usage(), SpendLedger(tmp_path / "spend.ledger", 1.0), booked_as=("fidelity[b]", "gpt"))
    ticket = judge.reserve(0.7)
    ticket.cost_usd = 0.6
    judge.release(ticket)
    assert client.reserve(0.5) is None and client.reserve(0.4) is not None
    assert SpendLedger(tmp_path / "spend.ledger", 1.0).spent()["by_stage_model"] == {"fidelity[a]|gpt": 0.6}


def test_write_usage_writes_json_and_returns_a_one_line_summary(tmp_path):
    usage = Usage(requests=12, cache_hits=30, tokens_in=4000, tokens_out=900, cost_usd=0.0123,
                  failures={"http_5xx": 1}, attempt_errors={"http_5xx": 3, "http_429": 1}, redactions=2,
                  redactions_by_kind={"phone": 2})
    line = write_usage(tmp_path / "usage.json", usage, stage="synthesize", model="gpt-x")
    data = json.loads((tmp_path / "usage.json").read_text(encoding="utf-8"))
    assert data["stage"] == "synthesize" and data["model"] == "gpt-x" and data["requests"] == 12
    assert data["failures"] == {"http_5xx": 1} and data["redactions_by_kind"] == {"phone": 2}
    assert "\n" not in line
    assert line == ("llm [synthesize]: 12 requests sent (4 failed attempts), 30 cache hits, 4,000 tokens in / 900 out, "
                    "$0.0123, 1 failed (http_5xx 1), 2 redactions")


def test_the_run_summary_adds_up_every_stage(tmp_path):
    from counseltune.llm.usage import run_summary

    for name, requests in (("mi_planned", 3), ("cbt_session", 4)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"usage": {"requests": requests, "cache_hits": 1,
                                                                     "cost_usd": 0.5}}))
    (tmp_path / "other.json").write_text(json.dumps({"n": 1}))
    lines = run_summary(sorted(tmp_path.glob("*.json"))).splitlines()
    assert len(lines) == 3 and "[cbt_session]: 4 requests" in lines[0]
    assert "[all stages]: 7 requests" in lines[2] and "2 cache hits" in lines[2] and "$1.0000" in lines[2]
