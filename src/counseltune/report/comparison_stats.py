"""report-compare's statistics: fine-tuned models against each other on the same items, written as tables.

The comparison report only renders; the paired tests it shows are computed here, once, and written (validated)
beside it as tables/between_models.parquet (overlap metrics, per language) and
tables/fidelity_between_models.parquet (embedded-coder behavior indicators). Rows keep the order the tests were
run in; p-values are Holm-adjusted across every row of a table.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.paired_indicators import between_models
from counseltune.paired_scores import adjust_holm, compare_paired
from counseltune.schemas.scores import IndicatorComparisons, ScoreComparisons
from counseltune.tables.io import empty_table, write_table

SCORES_TABLE = "tables/between_models.parquet"
INDICATORS_TABLE = "tables/fidelity_between_models.parquet"


def score_comparisons(scores: dict[str, pl.DataFrame], evaluate: dict[str, Any]) -> pl.DataFrame:
    """Every pair of models' fine-tuned scores, a − b per language and per-item metric (ScoreComparisons rows)."""
    finetuned = {m: df.filter(pl.col("variant") == "finetuned") for m, df in scores.items()}
    results = {}
    for a, b in combinations(sorted(finetuned), 2):
        for key, value in compare_paired(finetuned[a], finetuned[b], evaluate).items():
            results[(a, b, *key)] = value
    adjust_holm(results)
    rows = [{"model_a": a, "model_b": b, "language": language, "metric": metric, **result}
            for (a, b, language, metric), result in results.items()]
    return _frame(rows, ScoreComparisons)


def indicator_comparisons(coded: dict[str, pl.DataFrame], n_samples: int, seed: int) -> pl.DataFrame:
    """Every pair of models' fine-tuned coded replies, a − b per behavior indicator (IndicatorComparisons rows)."""
    rows = [{"model_a": a, "model_b": b, "indicator": name, **result}
            for (a, b, name), result in between_models(coded, n_samples, seed).items()]
    return _frame(rows, IndicatorComparisons)


def write_comparison_tables(out_dir: Path, scores: dict[str, pl.DataFrame], evaluate: dict[str, Any],
                            coded: dict[str, pl.DataFrame] | None, fidelity: dict[str, Any]) -> dict[str, Path]:
    """Compute and write both tables under out_dir (the fidelity one only when coded tables were given)."""
    written = {"scores": out_dir / SCORES_TABLE}
    write_table(score_comparisons(scores, evaluate), written["scores"], ScoreComparisons)
    if coded is not None:
        written["indicators"] = out_dir / INDICATORS_TABLE
        write_table(indicator_comparisons(coded, fidelity["bootstrap_samples"], fidelity["seed"]),
                    written["indicators"], IndicatorComparisons)
    return written


def _frame(rows: list[dict[str, Any]], model) -> pl.DataFrame:
    schema = empty_table(model).schema
    return pl.DataFrame([{c: row.get(c) for c in schema} for row in rows], schema=schema)
