"""The SFT mix takes a params-given share of each generator's accepted synthetic sessions, the same every run."""

from __future__ import annotations

import copy

import pytest

from counseltune.schemas.tables import CuratedDialogs, Turns
from counseltune.tables.io import write_table
from counseltune.train.mix import synthetic_tables
from tests.conftest import dialog_rows, frames


def write_generator(root, generator: str, n: int) -> None:
    pairs = [dialog_rows(f"synthetic:{generator}:{i}", [("client", "我睡不好。"), ("counselor", "听起来你很累。")],
                         source=f"synthetic:{generator}") for i in range(n)]
    dialogs, turns = frames(*pairs)
    write_table(dialogs.with_columns(split=dialogs["split"].fill_null("train")), root / generator / "dialogs.parquet",
                CuratedDialogs)
    write_table(turns, root / generator / "turns.parquet", Turns)


@pytest.fixture
def synthetic(tmp_path):
    write_generator(tmp_path, "mi_planned", 40)
    write_generator(tmp_path, "cbt_session", 10)
    return tmp_path


def with_mix(params: dict, **shares) -> dict:
    params = copy.deepcopy(params)
    params["sft"]["synthetic"] = shares
    return params


def test_share_zero_leaves_a_generator_out_and_one_takes_all(params, synthetic):
    mixed = dict(synthetic_tables(with_mix(params, mi_planned=1.0, cbt_session=0.0), synthetic))
    assert list(mixed) == ["mi_planned"]
    dialogs, turns = mixed["mi_planned"]
    assert dialogs.height == 40 and set(dialogs["split"]) == {"train"} and turns.height == 80


def test_a_larger_share_keeps_every_session_a_smaller_one_chose(params, synthetic):
    small = dict(synthetic_tables(with_mix(params, mi_planned=0.25), synthetic))["mi_planned"][0]
    large = dict(synthetic_tables(with_mix(params, mi_planned=0.75), synthetic))["mi_planned"][0]
    again = dict(synthetic_tables(with_mix(params, mi_planned=0.25), synthetic))["mi_planned"][0]
    assert 0 < small.height < large.height < 40
    assert set(small["dialog_id"]) <= set(large["dialog_id"]) and small.equals(again)


def test_a_mixed_in_generator_that_was_not_made_says_which_stage_to_run(params, tmp_path):
    with pytest.raises(FileNotFoundError, match="synthesize stage"):
        synthetic_tables(with_mix(params, cbt_answer=1.0), tmp_path)
