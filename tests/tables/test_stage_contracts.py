"""Contracts of the evaluate, fidelity and report-compare tables: a valid row passes, a bad one is named.

Each bad case changes one column of a valid one-row frame (wrong dtype, unknown code, value off its scale) and
expects the error to name the table and the column.
"""

import polars as pl
import pytest

from counseltune.schemas import fidelity, scores
from counseltune.tables.io import TableError, empty_table, read_table, write_table

PAIRED = {"model_a": "m1", "model_b": "m2", "difference": 0.1, "low": -0.2, "high": 0.3, "p_value": 0.4,
          "p_holm": 0.8, "test": "paired sign-flip permutation", "p_wilcoxon": 0.5, "cohens_d": 0.2,
          "rank_biserial": 0.1, "n": 12}
REFERENCE = {"coding": "coder", "mi_quality": "high", "dialog_id": "annomi:1", "n_dialogs": 1, "n_counselor_turns": 9,
             "n_coded": 9, "corpus_therapist_input": 1, "corpus_other": 2,
             **{k: None for k in fidelity.COUNT_KEYS}, "question": 4, "open_question": 3, "closed_question": 1,
             "simple_reflection": 1, "complex_reflection": 1,
             **{s: None for s in fidelity.SUMMARY_SCORES}, "reflection_to_question": 0.5,
             "percent_complex_reflection": 0.5,
             **{f"{s}_grade": None for s in fidelity.SUMMARY_SCORES}, "reflection_to_question_grade": "below_fair",
             "percent_complex_reflection_grade": "good",
             **{f"{t}_per_session": None for t in fidelity.TOTALS}}
VALID = {
    scores.Scores: {"model": "m1", "variant": "base", "dialog_id": "en:d0", "turn_index": 1, "language": "en",
                    "source": "en", "reference": "How are you?", "hypothesis": "", "bleu4": 100.00000000000004,
                    "rouge1": 0.5, "rouge2": 0.0, "rougeL": 0.5, "length_chars": 0.0, "ref_length_chars": 12.0,
                    "length_tokens": 0.0},
    scores.ScoreComparisons: {**PAIRED, "language": "en", "metric": "bleu4", "n_dialogs": 5, "no_test": None},
    scores.IndicatorComparisons: {**PAIRED, "indicator": "is_question", "a": 0.5, "b": 0.25},
    fidelity.CodedReplies: {"dialog_id": "annomi:1", "turn_index": 2, "source": "annomi", "language": "en",
                            "text": "What brings you here?", "mi_behavior": "question", "mi_code": "open_question",
                            "miti_code": "question", "p_question": 0.7, "p_reflection": 0.1, "p_therapist_input": 0.1,
                            "p_other": 0.1, "question_subtype": "open_question", "p_open_question": 0.8,
                            "p_closed_question": 0.2, "reflection_subtype": None, "p_simple_reflection": None,
                            "p_complex_reflection": None, "variant": "reference"},
    fidelity.JudgeCodes: {"judge_model": "judge", "dialog_id": "annomi:1", "turn_index": 2,
                          "miti_code": "open_question", "variant": "finetuned"},
    fidelity.JudgeGlobals: {"judge_model": "judge", "dialog_id": "annomi:1", "scale": "empathy", "score": 5,
                            "justification": "Warm.", "variant": "base"},
    fidelity.CtrsItems: {"judge_model": "judge", "dialog_id": "simulated:m1:p1", "item": "agenda", "score": 0,
                         "justification": "No agenda."},
    fidelity.SafetyVerdicts: {"model": "m1", "probe_id": "suicide-en-1", "language": "en",
                              "category": "suicidal_ideation", "reply": None, "mentions_resource": None,
                              "acknowledges": None, "assesses_risk": None, "points_to_resources": None,
                              "avoids_encouraging_harm": None, "safe": None, "justification": None,
                              "failure": "model_timeout", "variant": "finetuned"},
    fidelity.Failures: {"part": "judge_miti", "variant": None, "key": "annomi:1", "reason": "not_json", "detail": None},
    fidelity.JudgeValidationCodes: {"judge_model": "judge", "dialog_id": "annomi:0", "turn_index": 1,
                                    "mi_behavior": "reflection", "mi_code": None, "miti_code": None},
    fidelity.ReferenceCounts: REFERENCE,
}
BAD = [  # model, column, value, the failed check as the message names it
    (scores.Scores, "bleu4", 101.0, "in_range"),
    (scores.Scores, "rougeL", -0.1, "in_range"),
    (scores.Scores, "turn_index", "first", "dtype"),
    (scores.Scores, "variant", "large", "isin"),
    (scores.ScoreComparisons, "p_holm", 1.5, "in_range"),
    (scores.ScoreComparisons, "metric", "distinct1", "isin"),
    (scores.IndicatorComparisons, "rank_biserial", -1.5, "in_range"),
    (scores.IndicatorComparisons, "a", 2.0, "in_range"),
    (fidelity.CodedReplies, "miti_code", "reflection", "isin"),
    (fidelity.CodedReplies, "p_question", 1.2, "in_range"),
    (fidelity.CodedReplies, "p_question", "high", "dtype"),
    (fidelity.JudgeCodes, "miti_code", "advice", "isin"),
    (fidelity.JudgeGlobals, "score", 6, "in_range"),
    (fidelity.JudgeGlobals, "scale", "warmth", "isin"),
    (fidelity.CtrsItems, "score", 7, "in_range"),
    (fidelity.CtrsItems, "item", "rapport", "isin"),
    (fidelity.SafetyVerdicts, "safe", "maybe", "dtype"),
    (fidelity.Failures, "part", "coder", "isin"),
    (fidelity.Failures, "key", None, "not_nullable"),
    (fidelity.JudgeValidationCodes, "mi_behavior", "advice", "isin"),
    (fidelity.ReferenceCounts, "question", -1, "greater_than_or_equal_to"),
    (fidelity.ReferenceCounts, "percent_complex_reflection_grade", "great", "isin"),
    (fidelity.ReferenceCounts, "coding", "judge", "isin"),
]


def frame(model, **changes) -> pl.DataFrame:
    row = VALID[model] | changes
    schema = dict(empty_table(model).schema)
    schema |= {name: _dtype_of(value, schema[name]) for name, value in changes.items()}
    return pl.DataFrame([row], schema=schema)


def _dtype_of(value, default):
    """A changed value keeps the column's dtype unless it cannot (a string in a number column: the wrong dtype)."""
    return pl.String if isinstance(value, str) and default != pl.String else default


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_a_valid_row_round_trips(model, tmp_path):
    written = write_table(frame(model), tmp_path / "t.parquet", model)
    assert read_table(tmp_path / "t.parquet", model).equals(written)


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_an_empty_table_passes_and_an_unknown_column_fails(model, tmp_path):
    write_table(empty_table(model), tmp_path / "t.parquet", model)
    with pytest.raises(TableError, match=rf"{model.__name__} table .*unexpected \['extra'\]"):
        write_table(frame(model).with_columns(extra=pl.lit(1)), tmp_path / "t.parquet", model)


@pytest.mark.parametrize("model, column, value, check", BAD,
                         ids=[f"{m.__name__}-{c}-{v}" for m, c, v, _ in BAD])
def test_a_bad_value_is_named_with_its_table_and_column(model, column, value, check, tmp_path):
    with pytest.raises(TableError) as err:
        write_table(frame(model, **{column: value}), tmp_path / "t.parquet", model)
    message = str(err.value)
    assert f"{model.__name__} table for {tmp_path / 't.parquet'}" in message
    assert f"column {column}: check {check}" in message
    assert not (tmp_path / "t.parquet").exists()  # nothing written


def test_stage_metric_lists_follow_the_contract():
    from counseltune.paired_scores import ITEM_METRICS

    assert list(ITEM_METRICS) == scores.ITEM_METRICS
