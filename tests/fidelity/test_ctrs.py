"""The CTRS judge through a real client and a loopback endpoint."""

from __future__ import annotations

import pytest

from counseltune.fidelity.judges.ctrs import ITEMS, TOTAL_MAX, ctrs_schema, judge_ctrs
from counseltune.fidelity.judges.ctrs_prompts import ctrs_system
from counseltune.fidelity.judges.sessions import Session

from .test_judge_loopback import JUDGE


def session(dialog_id: str, marker: str = "", language: str = "en") -> Session:
    return Session(dialog_id, language, (
        (0, "client", f"I keep thinking I will fail my exams ({dialog_id}). {marker}".strip()),
        (1, "counselor", "What is the evidence for that thought?"),
    ))


def test_eleven_items_scored_and_summed(loopback):
    server, client_for = loopback
    judge = client_for(JUDGE)
    result = judge_ctrs(judge, [session("toy:a"), session("toy:b", language="zh"), session("toy:c", language="ko")])

    assert judge.calls == [3]
    assert result.items.height == 3 * 11 and set(result.items["item"]) == set(ITEMS)
    assert result.totals["total"].to_list() == [44, 44, 44] and all(result.totals["competent"])
    report = result.report()
    assert report["judged"] == 3 and report["failed"] == 0 and report["mean_total"] == 44.0
    assert all(e.body["response_format"]["type"] == "json_schema" and e.body["temperature"] == 0
               and e.body["response_format"]["json_schema"]["schema"] == ctrs_schema() for e in server.log)


def test_missing_item_is_reasked_then_exhausted_is_a_failure(loopback):
    server, client_for = loopback
    result = judge_ctrs(client_for(JUDGE), [session("toy:once", "BAD1"), session("toy:never", "BADALL")],
                        max_reasks=1)
    assert result.totals["dialog_id"].to_list() == ["toy:once"]
    assert result.outcome.failures == {"schema_invalid": 1} and result.outcome.reasks == 2
    assert "'agenda' is a required property" in result.failures.row(0, named=True)["detail"]
    assert len(server.log) == 4


def test_rerun_is_free(loopback):
    server, client_for = loopback
    judge_ctrs(client_for(JUDGE), [session("toy:a"), session("toy:b", "BAD1")])
    sent = len(server.log)
    judge_ctrs(client_for(JUDGE), [session("toy:a"), session("toy:b", "BAD1")])
    assert len(server.log) == sent == 3


@pytest.mark.parametrize("language", ["en", "zh", "ko"])
def test_every_prompt_names_every_item(language):
    prompt = ctrs_system(language)
    assert all(f"- {item}: " in prompt for item in ITEMS)
    assert len(ITEMS) == 11 and TOTAL_MAX == 66
    assert ctrs_schema()["properties"]["items"]["required"] == list(ITEMS)


@pytest.mark.parametrize("language", ["en", "zh", "ko"])
def test_every_prompt_gives_the_manuals_anchors_for_0_2_4_6_of_every_item(language):
    from counseltune.fidelity.judges.ctrs_anchors import ANCHOR_LEVELS, CTRS_ANCHORS

    prompt = ctrs_system(language)
    assert ANCHOR_LEVELS == (0, 2, 4, 6) and set(CTRS_ANCHORS) == set(ITEMS)
    blocks = prompt.split("\n- ")[1:]  # one block per item: its gloss, then its anchor lines
    assert [b.split(":", 1)[0] for b in blocks] == list(ITEMS)
    for item, block in zip(ITEMS, blocks):
        anchors = CTRS_ANCHORS[item][language]
        assert len(anchors) == 4 and len(set(anchors)) == 4 and all(a.strip() for a in anchors), item
        for level, text in zip(ANCHOR_LEVELS, anchors):
            assert f"\n    {level} = {text}" in block, (item, level)
