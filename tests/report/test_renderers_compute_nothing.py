"""report/ renders: its statistics come from a stage's table, so no renderer imports statistics code.

report-compare's between-model tests are computed by report/comparison_stats.py and written as validated tables
under reports/comparison/tables/; the renderer reads those tables.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest

from counseltune.paired_scores import compare_paired
from counseltune.report.comparison_stats import score_comparisons
from counseltune.schemas.scores import ScoreComparisons
from counseltune.stats import holm_bonferroni
from counseltune.tables.io import validate

REPORT = Path(__file__).resolve().parents[2] / "src/counseltune/report"
RENDERERS = ("compare.py", "data_report.py", "document.py", "fidelity.py", "metrics.py", "model_report.py", "plots.py")
# statistics libraries, and our modules that compute numbers (fidelity.miti is vocabulary and thresholds only)
STATISTICS = ("numpy", "scipy", "statistics", "sklearn", "counseltune.stats", "counseltune.paired_",
              "counseltune.evaluate", "counseltune.fidelity")
ALLOWED = ("counseltune.instruments.miti",)


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a_renderer_imports_no_statistics(renderer):
    computing = sorted(m for m in imported_modules(REPORT / renderer)
                       if m.startswith(STATISTICS) and m not in ALLOWED)
    assert not computing, f"report/{renderer} imports {computing}: compute in a stage and render its table"


def scores(model: str, shift: float) -> pl.DataFrame:
    rows = [{"variant": "finetuned", "dialog_id": f"en:d{d}", "turn_index": t, "language": "en",
             **{m: (d * 7 + t) % 5 + shift * (t == 1) for m in ("bleu4", "rouge1", "rouge2", "rougeL", "length_chars")}}
            for d in range(6) for t in (1, 3)]
    return pl.DataFrame(rows).with_columns(model=pl.lit(model))


def test_the_comparison_table_holds_every_pair_holm_adjusted_across_all_rows():
    cfg = {"bootstrap_samples": 200, "seed": 0, "min_dialogs_for_inference": 5}
    tables = {"a": scores("a", 0.0), "b": scores("b", 1.0), "c": scores("c", 0.5)}
    table = validate(score_comparisons(tables, cfg), ScoreComparisons, "test")
    assert table.select("model_a", "model_b").unique().sort("model_a", "model_b").rows() == [
        ("a", "b"), ("a", "c"), ("b", "c")]
    assert table.height == 3 * 5  # one language, five per-item metrics
    one = compare_paired(tables["a"], tables["b"], cfg)[("en", "bleu4")]
    row = table.filter((pl.col("model_a") == "a") & (pl.col("model_b") == "b") & (pl.col("metric") == "bleu4")).row(
        0, named=True)
    assert row["difference"] == one["difference"] and row["p_value"] == one["p_value"]
    adjusted = holm_bonferroni({str(i): p for i, p in enumerate(table["p_value"])})
    assert table["p_holm"].to_list() == [adjusted[str(i)] for i in range(table.height)]
