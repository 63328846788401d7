"""MITI 4.2.1 summary scores, thresholds and the corpus-code mapping, checked against hand-computed values."""

from __future__ import annotations

import pytest
from counseltune.schemas.tables import MI_BEHAVIORS, MI_CODES

from counseltune.instruments import miti

ALL_CODED = {key: 0 for key in miti.COUNT_KEYS}


def counts(**values) -> dict:
    return {**ALL_CODED, **values}


def test_summary_scores_hand_computed():
    scores = miti.summary_scores(
        counts(question=10, simple_reflection=6, complex_reflection=9, affirm=2, seeking_collaboration=1,
               emphasizing_autonomy=1, confront=1, persuade=3),
        {"cultivating_change_talk": 4, "softening_sustain_talk": 3, "partnership": 4, "empathy": 3},
    )
    assert scores == {
        "technical": 3.5, "relational": 3.5, "reflection_to_question": 1.5,
        "percent_complex_reflection": 0.6, "total_mi_adherent": 4, "total_mi_non_adherent": 4,
        "mia_share": pytest.approx(4 / 8),
    }
    assert miti.grade_all(scores) == {
        "technical": "fair", "relational": "fair", "reflection_to_question": "fair",
        "percent_complex_reflection": "good", "total_mi_adherent": None, "total_mi_non_adherent": None,
        "mia_share": None,  # no published threshold; the share is not a MITI 4.2.1 score at all
    }


def test_miti_4_2_1_totals_from_the_manual_definitions():
    # MITI 4.2.1: Total MI-Adherent = Seeking Collaboration + Affirm + Emphasizing Autonomy;
    # Total MI-Non-Adherent = Confront + Persuade. Persuade with Permission and Giving Information are in neither.
    scores = miti.summary_scores(counts(affirm=3, seeking_collaboration=2, emphasizing_autonomy=1, confront=1,
                                        persuade=2, persuade_with_permission=4, giving_information=5, question=6))
    assert scores["total_mi_adherent"] == 3 + 2 + 1 == 6
    assert scores["total_mi_non_adherent"] == 1 + 2 == 3
    assert scores["mia_share"] == pytest.approx(6 / 9)
    assert set(miti.MITI_SUMMARY_SCORES) == {"technical", "relational", "reflection_to_question",
                                             "percent_complex_reflection", "total_mi_adherent", "total_mi_non_adherent"}
    assert "mia_share" not in miti.MITI_SUMMARY_SCORES and "percent_mi_adherent" not in scores
    assert "not a MITI 4.2.1 score" in miti.SCORE_LABELS["mia_share"]
    # zero MIA and MINA utterances: totals are true zeros, the share is undefined
    none = miti.summary_scores(counts(question=2))
    assert (none["total_mi_adherent"], none["total_mi_non_adherent"], none["mia_share"]) == (0, 0, None)
    assert miti.per_session(6, 4) == 1.5 and miti.per_session(None, 4) is None and miti.per_session(3, 0) is None


def test_questions_from_subtypes_when_question_not_counted():
    scores = miti.summary_scores({"open_question": 3, "closed_question": 1, "simple_reflection": 4, "complex_reflection": 4})
    assert scores["reflection_to_question"] == 2.0
    assert miti.grade("reflection_to_question", scores["reflection_to_question"]) == "good"


def test_zero_questions_gives_no_ratio_not_a_crash():
    scores = miti.summary_scores(counts(question=0, simple_reflection=3, complex_reflection=1))
    assert scores["reflection_to_question"] is None
    assert miti.grade("reflection_to_question", None) is None
    assert scores["percent_complex_reflection"] == 0.25


def test_zero_reflections():
    scores = miti.summary_scores(counts(question=4))
    assert scores["reflection_to_question"] == 0.0
    assert miti.grade("reflection_to_question", 0.0) == "below_fair"
    assert scores["percent_complex_reflection"] is None  # 0 / 0
    assert scores["mia_share"] is None  # no MIA and no MINA utterance


def test_not_coded_is_none_not_zero():
    # an embedded coder without affirm/confront/... counts: the totals must not become 0, the share not 0 or 1
    scores = miti.summary_scores({"question": 5, "simple_reflection": 2, "complex_reflection": 3, "affirm": None})
    assert scores["mia_share"] is None and scores["total_mi_adherent"] is None
    assert scores["total_mi_non_adherent"] is None
    assert scores["technical"] is None and scores["relational"] is None
    assert scores["reflection_to_question"] == 1.0


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("technical", 2.999, "below_fair"), ("technical", 3.0, "fair"), ("technical", 4.0, "good"),
    ("relational", 3.0, "below_fair"), ("relational", 3.5, "fair"), ("relational", (3.5 + 4.5) / 2, "good"),
    ("reflection_to_question", 0.99, "below_fair"), ("reflection_to_question", 1.0, "fair"),
    ("reflection_to_question", 1.99, "fair"), ("reflection_to_question", 2.0, "good"),
    ("percent_complex_reflection", 0.39, "below_fair"), ("percent_complex_reflection", 0.4, "fair"),
    ("percent_complex_reflection", 2 / 5, "fair"), ("percent_complex_reflection", 0.5, "good"),
    ("mia_share", 1.0, None), ("total_mi_adherent", 12, None),
])
def test_threshold_edges(name, value, expected):
    assert miti.grade(name, value) == expected


def test_float_noise_does_not_drop_a_grade():
    assert miti.grade("percent_complex_reflection", 0.1 + 0.1 + 0.1 + 0.1) == "fair"  # 0.4000000000000001
    assert miti.grade("percent_complex_reflection", 0.7 - 0.3) == "fair"  # 0.39999999999999997


@pytest.mark.parametrize(("bad", "message"), [
    ({"questions": 3}, "unknown MITI count key"),
    ({"question": -1}, "not a non-negative whole number"),
    ({"question": 1.5}, "not a non-negative whole number"),
])
def test_bad_counts_are_rejected(bad, message):
    with pytest.raises(miti.MitiError, match=message):
        miti.summary_scores(bad)


@pytest.mark.parametrize(("bad", "message"), [
    ({"empathy": 6}, "outside MITI's 1-5 range"),
    ({"empathy": 0}, "outside MITI's 1-5 range"),
    ({"warmth": 3}, "unknown MITI global score"),
])
def test_bad_global_scores_are_rejected(bad, message):
    with pytest.raises(miti.MitiError, match=message):
        miti.summary_scores({}, bad)


def test_grade_rejects_unknown_score_and_nan():
    with pytest.raises(miti.MitiError, match="unknown summary score"):
        miti.grade("spirit", 3.0)
    with pytest.raises(miti.MitiError, match="NaN"):
        miti.grade("technical", float("nan"))


def test_every_corpus_code_is_mapped_or_explained():
    assert set(miti.CORPUS_TO_MITI) | set(miti.UNMAPPABLE) >= set(MI_CODES)
    assert set(miti.BEHAVIOR_TO_MITI) == set(MI_BEHAVIORS)
    assert set(miti.CORPUS_TO_MITI.values()) <= set(miti.BEHAVIOR_CODES)
    # the codes no corpus label yields are exactly the MITI codes nothing maps onto
    reachable = set(miti.CORPUS_TO_MITI.values()) | {v for v in miti.BEHAVIOR_TO_MITI.values() if v}
    assert set(miti.NOT_CODED_FROM_CORPUS) == set(miti.BEHAVIOR_CODES) - reachable - {"other"}


@pytest.mark.parametrize(("behavior", "code", "expected"), [
    ("question", "open_question", "question"), ("question", None, "question"),
    ("reflection", "complex_reflection", "complex_reflection"), ("reflection", None, None),
    ("therapist_input", "information", "giving_information"), ("therapist_input", "advice", None),
    ("other", "affirm", "affirm"), ("other", None, None), (None, None, None),
])
def test_miti_code(behavior, code, expected):
    assert miti.miti_code(behavior, code) == expected


def test_miti_code_rejects_unknown_codes():
    with pytest.raises(miti.MitiError, match="unknown mi_behavior 'statement'"):
        miti.miti_code("statement", None)
    with pytest.raises(miti.MitiError, match="unknown mi_code 'reframe'"):
        miti.miti_code("other", "reframe")
