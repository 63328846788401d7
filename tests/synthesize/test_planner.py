"""Planner: fitted on the AnnoMI sample; add-k smoothing, backoff, seeded sampling, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from counseltune.schemas.tables import CLIENT_TALK, MI_BEHAVIORS, MI_CODES

from counseltune.synthesize.planner import NO_TALK, START, Planner, PlannerError, fit
from tests.conftest import dialog_rows, frames
from tests.synthesize.helpers import annomi_turns


@pytest.fixture(scope="module")
def planner() -> Planner:
    return fit(annomi_turns()[1])


def coded(dialog_id: str, turns: list[tuple[str, str | None]]) -> tuple[dict, list[dict]]:
    """A toy dialog: (role, code-or-talk) per turn; counselor codes are MI codes, client ones talk types."""
    dialog, rows = dialog_rows(dialog_id, [(role, f"utterance {i}") for i, (role, _) in enumerate(turns)])
    for row, (role, label) in zip(rows, turns):
        if role == "counselor" and label:
            row["mi_code"], row["mi_behavior"] = label, "question" if label.endswith("question") else "reflection"
        elif role == "client":
            row["client_talk"] = label
    return dialog, rows


def test_fits_the_annomi_sample_codes(planner):
    assert planner.fitted_on["dialogs"] >= 5 and planner.fitted_on["counselor_turns"] > 100
    assert set(planner.codes) <= set(MI_CODES) | set(MI_BEHAVIORS)
    assert {"open_question", "simple_reflection", "complex_reflection"} <= set(planner.codes)


@pytest.mark.parametrize("previous", [START, "open_question", "complex_reflection", "never_seen_code"])
@pytest.mark.parametrize("talk", [NO_TALK, "change", "sustain", "neutral"])
def test_every_distribution_sums_to_one(planner, previous, talk):
    codes = planner.code_probabilities(previous, talk)
    assert list(codes) == planner.codes
    assert sum(codes.values()) == pytest.approx(1.0)
    assert all(p > 0 for p in codes.values())  # add-k: nothing is impossible
    talks = planner.talk_probabilities(previous)
    assert list(talks) == CLIENT_TALK and sum(talks.values()) == pytest.approx(1.0)


def test_add_k_smoothing_and_backoff_to_the_marginal():
    # open_question follows START twice, simple_reflection follows open_question|change three times
    _, turns = frames(
        coded("toy:1", [("counselor", "open_question"), ("client", "change"), ("counselor", "simple_reflection")]),
        coded("toy:2", [("counselor", "open_question"), ("client", "change"), ("counselor", "simple_reflection"),
                        ("client", "change"), ("counselor", "simple_reflection")]),
    )
    planner = fit(turns, k=1.0, min_context_count=2)
    assert planner.codes == ["open_question", "simple_reflection"]
    # seen context (2 observations >= min 2): (2 + 1) / (2 + 1 * 2)
    assert planner.code_table.level_for([f"{START}|{NO_TALK}", START]) == 0
    assert planner.code_probabilities(START, NO_TALK)["open_question"] == pytest.approx(3 / 4)
    # simple_reflection|change was seen once: backs off to 'simple_reflection' (seen once too), then the marginal
    assert planner.code_table.level_for(["simple_reflection|change", "simple_reflection"]) == 2
    marginal = planner.code_probabilities("simple_reflection", "change")
    assert marginal["open_question"] == pytest.approx((2 + 1) / (5 + 2))  # 2 of 5 counselor turns
    assert planner.code_probabilities("unheard_of", "sustain") == marginal
    # talk model: change after open_question twice, after simple_reflection once
    assert planner.talk_probabilities("open_question")["change"] == pytest.approx((2 + 1) / (2 + 3))


def test_an_uncoded_turn_makes_the_context_unknown_not_wrong():
    _, turns = frames(
        coded("toy:1", [("counselor", None), ("client", "change"), ("counselor", "open_question")]),
        coded("toy:2", [("counselor", "open_question"), ("client", None), ("counselor", "simple_reflection")]),
    )
    planner = fit(turns, k=0.5, min_context_count=1)
    levels = planner.code_table.counts
    assert sum(sum(c.values()) for c in levels[2].values()) == 3       # the marginal sees every coded turn
    assert "open_question|<none>" not in levels[0] and "open_question" in levels[1]  # talk unknown: level 1 only
    assert not any(k.startswith("None") for k in levels[0])               # after an uncoded turn: marginal only
    assert sum(sum(c.values()) for c in planner.talk_table.counts[1].values()) == 1  # the uncoded talk is skipped


def test_no_coded_turns_is_an_error():
    _, turns = frames(dialog_rows("toy:1", [("client", "hi"), ("counselor", "hello")]))
    with pytest.raises(PlannerError, match="no coded counselor turns"):
        fit(turns)


def test_seeded_sampling_is_reproducible_and_alternates(planner):
    first = planner.sample(9, np.random.default_rng(42))
    assert first == planner.sample(9, np.random.default_rng(42))
    assert [t.role for t in first] == ["client", "counselor"] * 4 + ["client"]
    assert all(t.talk in CLIENT_TALK and t.code is None for t in first if t.role == "client")
    assert all(t.code in planner.codes and t.talk is None for t in first if t.role == "counselor")
    others = {tuple(planner.sample(9, np.random.default_rng(s))) for s in range(10)}
    assert len(others) > 1
    assert planner.sample(3, np.random.default_rng(0), first_role="counselor")[0].role == "counselor"


def test_sampling_follows_the_estimated_distribution(planner):
    rng = np.random.default_rng(0)
    draws = [planner.sample(2, rng)[1].code for _ in range(4000)]
    talk_first = planner.talk_probabilities(START)
    expected = sum(p * planner.code_probabilities(START, t)["open_question"] for t, p in talk_first.items())
    assert draws.count("open_question") / len(draws) == pytest.approx(expected, abs=0.03)


def test_save_and_load_round_trip(planner, tmp_path):
    path = tmp_path / "planner" / "planner.json"
    planner.save(path)
    loaded = Planner.load(path)
    assert loaded.codes == planner.codes and loaded.fitted_on == planner.fitted_on
    for previous in [START, "open_question", "simple_reflection"]:
        assert loaded.code_probabilities(previous, "change") == planner.code_probabilities(previous, "change")
        assert loaded.talk_probabilities(previous) == planner.talk_probabilities(previous)
    assert loaded.sample(12, np.random.default_rng(5)) == planner.sample(12, np.random.default_rng(5))
    assert json.loads(path.read_text())["format"] == "counseltune-planner/1"


def test_loading_a_wrong_file_is_a_planner_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    (tmp_path / "broken.json").write_text("{not json")
    for name in ["bad.json", "broken.json", "missing.json"]:
        with pytest.raises(PlannerError):
            Planner.load(tmp_path / name)


def test_fit_ignores_dialogs_without_codes(planner):
    _, plain = frames(dialog_rows("toy:1", [("client", "hi"), ("counselor", "hello")]))
    combined = fit(pl.concat([annomi_turns()[1], plain]))
    assert combined.fitted_on == planner.fitted_on
