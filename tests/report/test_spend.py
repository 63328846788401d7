"""Spend per stage and model: two stages pay a loopback OpenAI server, each writes its part of the ledger, and the
comparison report's table and the model report's line show both, their total equal to the ledger's."""

from __future__ import annotations

import pytest

from counseltune.llm import make_client
from counseltune.llm.ledger import SpendLedger
from counseltune.llm.spend import ledger_path, write_job_spend
from counseltune.report.compare import spend_section
from counseltune.report.document import Document
from counseltune.report.model_report import spend_line
from counseltune.report.spend import read_spend, spend_table
from tests.llm.conftest import KEY_ENV, PRICE, SECRET, remote_config, user_requests
from tests.llm.fake_openai import FakeOpenAI

BUDGET = 100.0


@pytest.fixture
def paid_run(tmp_path, monkeypatch):
    """synthesize[mi_plain] pays for 3 requests and fidelity[toy]'s judge for 2; judge_validation for none."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    cache = tmp_path / "cache"
    with FakeOpenAI() as server:
        config = remote_config(server, cache, budget_usd=BUDGET)
        synth = make_client(config, stage="synthesize[mi_plain]")
        judge = make_client(config, stage="fidelity[toy] judge")
        synth.complete(user_requests(3, prefix="session"))
        judge.complete(user_requests(2, prefix="judge"))
        paid = server.paid()
    llm = {"backend": "openai", "cache_dir": str(cache), "remote": {"budget_usd": BUDGET}}
    spend = tmp_path / "metrics/spend"
    write_job_spend(llm, "synthesize[mi_plain]", spend / "synthesize/mi_plain.json")
    write_job_spend(llm, "judge_validation", spend / "judge_validation.json")
    write_job_spend(llm, "fidelity[toy]", spend / "fidelity/toy.json")
    return {"spend": spend, "ledger": SpendLedger(ledger_path(llm), BUDGET).spent(), "paid": paid,
            "usage": {"synthesize[mi_plain]": synth.usage, "fidelity[toy] judge": judge.usage}}


def test_the_report_shows_both_stages_and_the_ledgers_total(paid_run):
    table = spend_table(read_spend(paid_run["spend"]))
    assert [(r.stage, r.model, r.requests) for r in table.rows] == [("fidelity[toy] judge", "fake-model", 2),
                                                                    ("synthesize[mi_plain]", "fake-model", 3)]
    assert table.total.requests == paid_run["paid"] == 5
    assert table.total.usd == pytest.approx(paid_run["ledger"]["spent_usd"]) and table.total.usd > 0
    for row in table.rows:  # each row's tokens are its client's, and its dollars the price list's
        usage = paid_run["usage"][row.stage]
        assert (row.tokens_in, row.tokens_out) == (usage.tokens_in, usage.tokens_out)
        by_hand = (row.tokens_in * PRICE["input_per_m"] + row.tokens_out * PRICE["output_per_m"]) / 1e6
        assert row.usd == pytest.approx(by_hand) and row.share == pytest.approx(by_hand / BUDGET)
    markdown = Document("run", [spend_section(table)]).to_markdown()
    assert "| synthesize[mi_plain] | fake-model | 3 |" in markdown and "| fidelity[toy] judge | fake-model | 2 |" in markdown
    assert f"| total |  | 5 | {table.total.tokens_in} | {table.total.tokens_out} | ${table.total.usd:.4f} | $100.0000 |" in markdown


def test_a_model_report_line_shows_only_its_own_stages(paid_run):
    jobs = read_spend(paid_run["spend"])
    line = spend_line(spend_table(jobs, "fidelity[toy]"))
    assert line.startswith("LLM spend of this model's stages: fidelity[toy] judge (fake-model): 2 requests")
    assert "synthesize" not in line and "of the $100.00 budget" in line
    assert spend_line(spend_table(jobs, "fidelity[other]")) == "This model's stages paid for no LLM requests."


def test_a_run_without_paid_requests_says_so(tmp_path):
    llm = {"backend": "local", "cache_dir": str(tmp_path / "cache"), "remote": {"budget_usd": BUDGET}}
    write_job_spend(llm, "synthesize[mi_plain]", tmp_path / "spend/synthesize/mi_plain.json")
    table = spend_table(read_spend(tmp_path / "spend"))
    assert table.rows == [] and table.total.usd == 0
    assert "No paid LLM requests" in Document("run", [spend_section(table)]).to_markdown()
