"""Seed material: train split only, one language, openings or case summaries, seeded cycling selection."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest

from counseltune.synthesize.seeds import SeedError, load_seeds, select_seeds
from tests.conftest import frames
from tests.synthesize.helpers import ZH_DIALOGS, dialog_rows


@pytest.fixture
def tables():
    built = [dialog_rows(did, turns, source="toy", topic=topic) for did, _, topic, turns in ZH_DIALOGS]
    ko_dialog, ko_turns = dialog_rows("kmi:1", [("counselor", "안녕하세요."), ("client", "요즘 힘들어요.")], source="kmi")
    ko_dialog |= {"language": "ko", "meta": json.dumps({"context": "시험 준비로 불안한 대학생"}, ensure_ascii=False)}
    dialogs, turns = frames(*built, (ko_dialog, ko_turns))
    splits = [split for _, split, _, _ in ZH_DIALOGS] + ["train"]
    return dialogs.with_columns(pl.Series("split", splits)), turns


def test_only_train_dialogs_of_the_language_become_seeds(tables):
    seeds = load_seeds(*tables, language="zh")
    assert [s.dialog_id for s in seeds] == ["toy:train-1", "toy:train-2", "toy:train-3"]
    held_out = {did for did, split, _, _ in ZH_DIALOGS if split != "train"}
    assert not held_out & {s.dialog_id for s in select_seeds(seeds, 50, seed=3)}
    assert all("测试集" not in s.text and "验证集" not in s.text for s in seeds)


def test_openings_are_the_first_client_utterances(tables):
    seeds = {s.dialog_id: s for s in load_seeds(*tables, language="zh")}
    assert seeds["toy:train-1"].opening == ("我最近工作压力很大，每天加班到很晚，晚上也睡不着。", "是的，我不知道该怎么办才好。")
    # a dialog the counselor opens: still the client's first utterances
    assert seeds["toy:train-3"].opening[0] == "我总觉得自己什么都做不好，考试又没考好。"
    assert seeds["toy:train-3"].topic is None and seeds["toy:train-1"].topic == "工作压力"
    one = load_seeds(*tables, language="zh", opening_turns=1)
    assert all(len(s.opening) == 1 for s in one)
    assert seeds["toy:train-1"].profile() == " ".join(seeds["toy:train-1"].opening)
    assert seeds["toy:train-1"].profile(max_chars=5) == "我最近工作…"


def test_a_case_summary_in_meta_is_the_profile(tables):
    [seed] = load_seeds(*tables, language="ko")
    assert seed.summary == "시험 준비로 불안한 대학생"
    assert seed.profile() == seed.summary and seed.question == "요즘 힘들어요."


def test_source_filter_and_no_material(tables):
    assert load_seeds(*tables, language="ko", sources=["kmi"])
    with pytest.raises(SeedError, match="no train-split en dialogs"):
        load_seeds(*tables, language="en")
    with pytest.raises(SeedError, match="from sources"):
        load_seeds(*tables, language="zh", sources=["kmi"])


def test_selection_is_seeded_and_cycles_through_the_pool(tables):
    seeds = load_seeds(*tables, language="zh")
    first = select_seeds(seeds, 7, seed=11)
    assert first == select_seeds(seeds, 7, seed=11)
    assert len({tuple(s.dialog_id for s in select_seeds(seeds, 7, seed=k)) for k in range(8)}) > 1
    # every full cycle uses every seed once before any repeats
    assert set(first[:3]) == set(seeds) and set(first[3:6]) == set(seeds)
    assert max(Counter(s.dialog_id for s in first).values()) == 3
    assert select_seeds(seeds, 2, seed=11) == first[:2]
    assert select_seeds(seeds, 0, seed=1) == []
