"""Recall and false-positive rate of the privacy guard on a labelled set of zh/en/ko strings.

tests/llm/data/pii_labelled.jsonl (written by make_pii_labelled.py beside it): one row per string: text, language,
kind ("control" for strings without PII), pii (the identifiers, verbatim), redacted (the expected text), batch.
"tuning" rows were written with the rules; "fresh" rows after them and not tuned on; "probe" rows are false alarms
found afterwards on new sentences and on data/sample, then fixed. Controls are chosen to look like PII: 我是学生,
王者荣耀, 李老师, "I'm sad", "call me tomorrow", 저는 주부입니다, dates, prices, counts, a bad check digit.
Decided: "I'm Sarah's friend" names Sarah (a third party's name is PII too); a surname with a title alone (李老师)
is not; a nickname without a surname (大家都叫我小雨) is a known miss.

An item counts as recalled when none of its identifiers is left in the output; a control is a false positive when
its output differs from its input. Measured 2026-12-02 with redact.py as committed with this test:

    language  recall (PII items)   false positives (controls)
    zh        62/63  = 98.4%       0/55  = 0.0%
    en        40/40  = 100.0%      0/42  = 0.0%
    ko        34/34  = 100.0%      0/35  = 0.0%
    all      136/137 = 99.3%       0/132 = 0.0%    (redacted text exactly as labelled: 136/137)

The fresh batch before its two misses were fixed ("Everyone calls me Bella", "동생 이름은 김하은이에요"): recall
24/26 = 92.3%, 0/28 false positives. The guard before this change: recall 37/137 = 27.0%, false positives 4/132.
More in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from counseltune.llm import Redactor

ROWS = [json.loads(line) for line in (Path(__file__).parent / "data" / "pii_labelled.jsonl").read_text("utf-8").splitlines()]
LANGUAGES = ("zh", "en", "ko")


def test_the_set_is_big_enough_and_well_formed():
    controls = [r for r in ROWS if r["kind"] == "control"]
    assert len(ROWS) >= 150 and len(controls) >= 50
    assert {r["language"] for r in ROWS} == set(LANGUAGES)
    for r in ROWS:
        assert (r["kind"] == "control") == (not r["pii"]) and all(p in r["text"] for p in r["pii"]), r
        assert r["kind"] != "control" or r["redacted"] == r["text"], r


@pytest.fixture(scope="module")
def outputs():
    redactor = Redactor()
    return [redactor.redact(r["text"])[0] for r in ROWS]


def test_recall_at_least_95_percent_and_false_positives_at_most_2_percent(outputs):
    recalled, items, false_pos, controls = Counter(), Counter(), Counter(), Counter()
    misses = []
    for row, out in zip(ROWS, outputs):
        lang = row["language"]
        if row["pii"]:
            items[lang] += 1
            if all(p not in out for p in row["pii"]):
                recalled[lang] += 1
            else:
                misses.append((row["text"], out))
        else:
            controls[lang] += 1
            if out != row["text"]:
                false_pos[lang] += 1
                misses.append((row["text"], out))
    for lang in LANGUAGES:
        print(f"{lang}: recall {recalled[lang]}/{items[lang]} = {recalled[lang] / items[lang]:.1%}, "
              f"false positives {false_pos[lang]}/{controls[lang]} = {false_pos[lang] / controls[lang]:.1%}")
    recall = sum(recalled.values()) / sum(items.values())
    fpr = sum(false_pos.values()) / sum(controls.values())
    print(f"all: recall {recall:.1%}, false-positive rate {fpr:.1%}; misses: {misses}")
    assert recall >= 0.95 and fpr <= 0.02, misses


def test_the_placeholders_land_where_the_labels_say(outputs):
    wrong = [(r["text"], out) for r, out in zip(ROWS, outputs) if r["pii"] and out != r["redacted"]]
    assert len(wrong) <= 0.05 * sum(1 for r in ROWS if r["pii"]), wrong
