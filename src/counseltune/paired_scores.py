"""Paired tests of two score tables on the items both scored: over dialogs, per metric (and language), Holm-adjusted.

Used by the evaluate stage (fine-tuned − base of one model) and by report-compare's statistics (model a − model b).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from counseltune.schemas import scores
from counseltune.stats import holm_bonferroni, paired_test, too_few_clusters

ITEM_METRICS = tuple(scores.ITEM_METRICS)  # per item: paired tests are possible
KEYS = ("dialog_id", "turn_index", "language")
CLUSTER = "dialog_id"  # the bootstrap and test unit


def compare_paired(a: pl.DataFrame, b: pl.DataFrame, cfg: dict[str, Any], by_language: bool = True) -> dict:
    """Paired tests of a − b on the items both scored, per metric (and per language when by_language), over
    dialogs; with too few dialogs, the difference only, null interval and p-value, and the reason."""
    joined = a.join(b, on=list(KEYS), suffix="_b")
    groups = joined.group_by("language", maintain_order=True) if by_language else [((None,), joined)]
    results = {}
    for (language,), group in groups:
        dialogs = group[CLUSTER].to_list()
        n_dialogs = len(set(dialogs))
        reason = too_few_clusters(n_dialogs, cfg["min_dialogs_for_inference"], "dialog", "test")
        for metric in ITEM_METRICS:
            x, y = group[metric].to_numpy(), group[f"{metric}_b"].to_numpy()
            if reason is not None:
                result = {"difference": float((x - y).mean()), "low": None, "high": None, "p_value": None,
                          "test": None, "p_wilcoxon": None, "cohens_d": None, "rank_biserial": None,
                          "no_test": reason}
            else:
                test = paired_test(x, y, cfg["bootstrap_samples"], cfg["seed"], clusters=dialogs)
                result = {"difference": test["mean_diff"], "low": test["ci_low"], "high": test["ci_high"],
                          "p_value": test["p_value"], "test": test["test"], "p_wilcoxon": test["p_wilcoxon"],
                          "cohens_d": test["cohens_d"], "rank_biserial": test["rank_biserial"]}
            results[(language, metric) if by_language else metric] = result | {"n": group.height, "n_dialogs": n_dialogs}
    return results


def adjust_holm(results: dict) -> None:
    """Add p_holm to every result of one family of comparisons (in place); tests not run are not in the family."""
    adjusted = holm_bonferroni({str(k): r["p_value"] for k, r in results.items() if r["p_value"] is not None})
    for key, result in results.items():
        result["p_holm"] = adjusted.get(str(key))  # None for a test not run (too few dialogs)
