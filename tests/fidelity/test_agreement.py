"""Agreement statistics against hand-computed values (and sklearn), and agreement() on coded AnnoMI."""

from __future__ import annotations

import polars as pl
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from counseltune.fidelity.embedded_coder import agreement as ag
from counseltune.fidelity.embedded_coder.coder import code_turns
from counseltune.instruments.miti import MitiError

# 2x2 table [[20, 5], [10, 15]] (rows human, columns coder): p_o = 35/50 = 0.7,
# p_e = (25*30 + 25*20) / 50^2 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4;
# F1(a) = 2*20 / (25 + 30) = 8/11, F1(b) = 2*15 / (25 + 20) = 2/3.
HUMAN = ["a"] * 25 + ["b"] * 25
CODER = ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15


def test_hand_computed_two_by_two():
    scores = ag.agreement_scores(HUMAN, CODER, ["a", "b"])
    assert scores["confusion"] == [[20, 5], [10, 15]]
    assert scores["kappa"] == pytest.approx(0.4)
    assert scores["accuracy"] == pytest.approx(0.7)
    assert scores["per_class_f1"] == {"a": pytest.approx(8 / 11), "b": pytest.approx(2 / 3)}
    assert scores["macro_f1"] == pytest.approx((8 / 11 + 2 / 3) / 2)
    assert scores["kappa"] == pytest.approx(cohen_kappa_score(HUMAN, CODER))
    assert scores["macro_f1"] == pytest.approx(f1_score(HUMAN, CODER, average="macro"))


def test_three_classes_hand_computed():
    # human x x y y z z / coder x y y y z x: p_o = 4/6; marginals human (2,2,2), coder (2,3,1)
    # p_e = (2*2 + 2*3 + 2*1) / 36 = 1/3; kappa = (2/3 - 1/3) / (2/3) = 0.5
    human, coder = list("xxyyzz"), list("xyyyzx")
    scores = ag.agreement_scores(human, coder, ["x", "y", "z"])
    assert scores["kappa"] == pytest.approx(0.5)
    assert scores["per_class_f1"] == {"x": pytest.approx(0.5), "y": pytest.approx(0.8), "z": pytest.approx(2 / 3)}


def test_perfect_and_chance_agreement():
    assert ag.agreement_scores(list("abab"), list("abab"), "ab")["kappa"] == 1.0
    # coder says 'a' to everything: p_o = 0.5 = p_e
    assert ag.agreement_scores(list("abab"), list("aaaa"), "ab")["kappa"] == 0.0


def test_undefined_kappa_and_unused_labels():
    scores = ag.agreement_scores(["a", "a"], ["a", "a"], ["a", "b"])
    assert scores["kappa"] is None  # one label throughout: p_e = 1
    assert scores["per_class_f1"] == {"a": 1.0, "b": None}
    assert scores["macro_f1"] == 1.0  # an unused label neither helps nor hurts
    empty = ag.agreement_scores([], [], ["a", "b"])
    assert (empty["n"], empty["kappa"], empty["macro_f1"], empty["accuracy"]) == (0, None, None, None)


def test_bad_label_lists():
    with pytest.raises(ag.AgreementError, match="differ in length"):
        ag.agreement_scores(["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(ag.AgreementError, match=r"label\(s\) \['c'\] not in the label set"):
        ag.agreement_scores(["a"], ["c"], ["a", "b"])


def test_agreement_on_coded_annomi(sample_tables, sample_split, sample_coder):
    _, turns = sample_tables
    held_out = turns.filter(pl.col("dialog_id").is_in(sample_split["test"]))
    report = ag.agreement(held_out, code_turns(sample_coder, held_out))
    assert set(report) == set(ag.FAMILIES)
    n_coded = held_out.filter(pl.col("mi_behavior").is_not_null()).height
    assert report["behavior"]["n"] == report["code"]["n"] == n_coded  # every AnnoMI question/reflection has a subtype
    n_questions = held_out.filter(pl.col("mi_behavior") == "question").height
    assert report["question_subtype"]["n"] == n_questions
    for scores in report.values():
        assert sum(map(sum, scores["confusion"])) == scores["n"]
        assert -1 <= scores["kappa"] <= 1 and 0 <= scores["macro_f1"] <= 1


def test_agreement_input_errors(sample_tables, sample_coder):
    _, turns = sample_tables
    one = turns.filter(pl.col("dialog_id") == turns["dialog_id"][0])
    coded = code_turns(sample_coder, one)
    with pytest.raises(ag.AgreementError, match="unknown label family"):
        ag.agreement(one, coded, ["sentiment"])
    with pytest.raises(ag.AgreementError, match="no human-coded counselor turns"):
        ag.agreement(one.with_columns(mi_behavior=pl.lit(None, pl.String)), coded)
    with pytest.raises(ag.AgreementError, match="have no automatic code"):
        ag.agreement(one, coded.head(1))
    with pytest.raises(MitiError, match="unknown mi_behavior value"):
        ag.agreement(one.with_columns(mi_behavior=pl.when(pl.col("role") == "counselor").then(pl.lit("statement"))), coded)
