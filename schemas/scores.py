"""Pandera (polars backend) models of the evaluation tables: per-item scores and the between-model comparison.

BLEU is on a 0-100 scale in both conventions; ROUGE F1 is 0-1 in the standard convention and x100 in LLaMA-Factory's
(evaluate.text_metrics), so both are checked against 0-100.
"""

from typing import Optional

import pandera.polars as pa

from counseltune.schemas.tables import LANGUAGES, VARIANTS

DIALOG_ID = r"^[a-z0-9_\-]+:\S+$"
# a perfect sentence BLEU comes out as 100.00000000000004 (exp of a summed log): allow that rounding
SCORE_RANGE = {"in_range": {"min_value": 0.0, "max_value": 100.0 + 1e-9}}
ITEM_METRICS = ["bleu4", "rouge1", "rouge2", "rougeL", "length_chars"]  # per item: paired tests are possible


class _Strict:
    strict = True
    coerce = True


class Scores(pa.DataFrameModel):
    """scores/<model>.parquet: one row per prediction with its sentence-level metrics."""

    model: str = pa.Field(str_length={"min_value": 1})
    variant: str = pa.Field(isin=list(VARIANTS))
    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    turn_index: int = pa.Field(ge=1)
    language: str = pa.Field(isin=LANGUAGES)
    source: str = pa.Field(str_length={"min_value": 1})
    reference: str = pa.Field(str_length={"min_value": 1})
    hypothesis: str = pa.Field()
    bleu4: float = pa.Field(**SCORE_RANGE)
    rouge1: float = pa.Field(**SCORE_RANGE)
    rouge2: float = pa.Field(**SCORE_RANGE)
    rougeL: float = pa.Field(**SCORE_RANGE)
    length_chars: float = pa.Field(ge=0)
    ref_length_chars: float = pa.Field(ge=0)
    length_tokens: float = pa.Field(ge=0)

    class Config(_Strict):
        unique = ["model", "variant", "dialog_id", "turn_index"]


class _PairedTest(pa.DataFrameModel):
    """A paired difference a − b on shared items: its CI and test, or null numbers and the reason (no_test)."""

    model_a: str = pa.Field(str_length={"min_value": 1})
    model_b: str = pa.Field(str_length={"min_value": 1})
    difference: float = pa.Field()
    low: Optional[float] = pa.Field(nullable=True)
    high: Optional[float] = pa.Field(nullable=True)
    p_value: Optional[float] = pa.Field(nullable=True, in_range={"min_value": 0.0, "max_value": 1.0})
    p_holm: Optional[float] = pa.Field(nullable=True, in_range={"min_value": 0.0, "max_value": 1.0})
    test: Optional[str] = pa.Field(nullable=True)
    p_wilcoxon: Optional[float] = pa.Field(nullable=True, in_range={"min_value": 0.0, "max_value": 1.0})
    cohens_d: Optional[float] = pa.Field(nullable=True)
    rank_biserial: Optional[float] = pa.Field(nullable=True, in_range={"min_value": -1.0, "max_value": 1.0})
    n: int = pa.Field(ge=0)


class ScoreComparisons(_PairedTest):
    """report-compare between_models.parquet: fine-tuned model a − model b per language and per-item metric."""

    language: str = pa.Field(isin=LANGUAGES)
    metric: str = pa.Field(isin=ITEM_METRICS)
    n_dialogs: int = pa.Field(ge=0)
    no_test: Optional[str] = pa.Field(nullable=True)  # why no interval and test (too few dialogs)

    class Config(_Strict):
        unique = ["model_a", "model_b", "language", "metric"]


class IndicatorComparisons(_PairedTest):
    """report-compare fidelity_between_models.parquet: fine-tuned a − b per embedded-coder behavior indicator."""

    indicator: str = pa.Field(str_matches=r"^is_[a-z_]+$")
    a: float = pa.Field(in_range={"min_value": 0.0, "max_value": 1.0})  # share of a's items coded so
    b: float = pa.Field(in_range={"min_value": 0.0, "max_value": 1.0})

    class Config(_Strict):
        unique = ["model_a", "model_b", "indicator"]
