"""Per-dialog and per-group MITI counts and summary scores from hand-made codes and from the coder."""

from __future__ import annotations

import polars as pl
import pytest

from counseltune.fidelity.embedded_coder.coder import code_turns
from counseltune.fidelity.miti_scoring import counts
from counseltune.instruments import miti

Q, CQ, SR, CR = ("question", "open_question"), ("question", "closed_question"), ("reflection", "simple_reflection"), ("reflection", "complex_reflection")
TI, OT = ("therapist_input", None), ("other", None)


def coded(rows: dict[str, list[tuple[str, str | None]]], model: dict[str, str] | None = None) -> pl.DataFrame:
    records = [
        {"dialog_id": d, "turn_index": 2 * k, "mi_behavior": b, "mi_code": c, "model": (model or {}).get(d, "m")}
        for d, codes in rows.items() for k, (b, c) in enumerate(codes)
    ]
    return pl.DataFrame(records, schema={"dialog_id": pl.String, "turn_index": pl.Int64, "mi_behavior": pl.String,
                                         "mi_code": pl.String, "model": pl.String})


def test_per_dialog_counts_and_scores():
    table = counts.summarize(coded({"a:1": [Q, CQ, SR, CR, CR, TI, OT], "a:2": [SR, OT]}))
    one, two = table.to_dicts()
    assert (one["question"], one["open_question"], one["closed_question"]) == (2, 1, 1)
    assert (one["simple_reflection"], one["complex_reflection"], one["corpus_therapist_input"], one["corpus_other"]) == (1, 2, 1, 1)
    assert one["n_counselor_turns"] == one["n_coded"] == 7
    assert one["reflection_to_question"] == 1.5 and one["reflection_to_question_grade"] == "fair"
    assert one["percent_complex_reflection"] == pytest.approx(2 / 3) and one["percent_complex_reflection_grade"] == "good"
    # the embedded coder does not see these: null, not 0, and the scores needing them are null
    for key in ("affirm", "confront", "persuade", "seeking_collaboration", "giving_information", "other"):
        assert one[key] is None
    assert one["mia_share"] is None and one["technical"] is None and one["technical_grade"] is None
    assert one["total_mi_adherent"] is None and one["total_mi_adherent_per_session"] is None
    # zero questions, zero complex reflections
    assert two["question"] == 0 and two["reflection_to_question"] is None and two["reflection_to_question_grade"] is None
    assert two["percent_complex_reflection"] == 0.0 and two["percent_complex_reflection_grade"] == "below_fair"


def test_per_group_pools_counts():
    table = counts.summarize(coded({"a:1": [Q, Q, SR], "a:2": [CR, CR, CR], "b:1": [OT]}, {"b:1": "other-model"}), by=["model"])
    assert table["model"].to_list() == ["m", "other-model"]
    m, other = table.to_dicts()
    assert (m["n_dialogs"], m["question"], m["complex_reflection"]) == (2, 2, 3)
    assert m["reflection_to_question"] == 2.0 and m["reflection_to_question_grade"] == "good"
    assert other["question"] == 0 and other["reflection_to_question"] is None and other["percent_complex_reflection"] is None


def test_human_annomi_codes_count_information(sample_tables):
    _, turns = sample_tables
    human = counts.summarize(turns, coded_codes=counts.CODED_BY_ANNOMI)
    assert human.height == turns["dialog_id"].n_unique()
    information = turns.filter(pl.col("mi_code") == "information").height
    assert human["giving_information"].sum() == information > 0
    assert human["n_counselor_turns"].sum() == turns.filter(pl.col("role") == "counselor").height


def test_global_scores_by_key():
    table = counts.with_summary_scores(counts.behavior_counts(coded({"a:1": [Q, SR]})),
                                       {"a:1": {"cultivating_change_talk": 4, "softening_sustain_talk": 4,
                                                "partnership": 3, "empathy": 4}}, key="dialog_id")
    row = table.to_dicts()[0]
    assert (row["technical"], row["technical_grade"], row["relational"], row["relational_grade"]) == (4.0, "good", 3.5, "fair")
    with pytest.raises(miti.MitiError, match="without key"):
        counts.with_summary_scores(table.select(counts.behavior_counts(coded({"a:1": [Q]})).columns), {"a:1": {}})


def test_coder_output_counts(sample_tables, sample_coder):
    _, turns = sample_tables
    table = counts.summarize(code_turns(sample_coder, turns))
    assert table["n_coded"].sum() == table["n_counselor_turns"].sum() == turns.filter(pl.col("role") == "counselor").height
    sums = table.select(pl.sum_horizontal("question", "simple_reflection", "complex_reflection", "corpus_therapist_input", "corpus_other"))
    assert sums.to_series().to_list() == table["n_counselor_turns"].to_list()


def test_bad_inputs():
    with pytest.raises(miti.MitiError, match="no counselor turns"):
        counts.behavior_counts(coded({"a:1": [Q]}).with_columns(role=pl.lit("client")))
    with pytest.raises(miti.MitiError, match=r"unknown mi_behavior value\(s\) \['statement'\]"):
        counts.behavior_counts(coded({"a:1": [("statement", None)]}))
    with pytest.raises(miti.MitiError, match=r"lack column\(s\) \['model'\]"):
        counts.behavior_counts(coded({"a:1": [Q]}).drop("model"), by=["model"])
    with pytest.raises(miti.MitiError, match="unknown MITI count"):
        counts.behavior_counts(coded({"a:1": [Q]}), coded_codes=["reflection"])


def test_totals_per_session_over_a_pooled_group():
    # two sessions pooled in one row: SC 1 + AF 4 + EA 1 = 6 MI-adherent, CON 1 + PER 2 = 3 non-adherent
    row = {key: 0 for key in miti.COUNT_KEYS} | {"affirm": 4, "seeking_collaboration": 1, "emphasizing_autonomy": 1,
                                                 "confront": 1, "persuade": 2, "persuade_with_permission": 3}
    table = counts.with_summary_scores(pl.DataFrame([{"model": "m", "n_dialogs": 2, **row}]))
    [scored] = table.to_dicts()
    assert (scored["total_mi_adherent"], scored["total_mi_non_adherent"]) == (6, 3)
    assert (scored["total_mi_adherent_per_session"], scored["total_mi_non_adherent_per_session"]) == (3.0, 1.5)
    assert scored["mia_share"] == pytest.approx(6 / 9) and scored["mia_share_grade"] is None
