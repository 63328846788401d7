"""Embedded-coder behavior indicators of two systems compared on the same items (paired tests, Holm-adjusted).

Shared by the fidelity stage (a model's fine-tuned replies against its base) and report-compare's statistics
(fine-tuned models against each other): both read coded-reply tables (schemas/fidelity.py CodedReplies).
"""

from __future__ import annotations

from itertools import combinations

import polars as pl

from counseltune.stats import holm_bonferroni, paired_test

ITEM = ("dialog_id", "turn_index")
# per-item 0/1 indicators: is the reply coded so
INDICATORS: dict[str, pl.Expr] = {
    "is_question": pl.col("mi_behavior") == "question",
    "is_reflection": pl.col("mi_behavior") == "reflection",
    "is_complex_reflection": pl.col("mi_code") == "complex_reflection",
    "is_therapist_input": pl.col("mi_behavior") == "therapist_input",
    "is_other": pl.col("mi_behavior") == "other",
}


def paired_on_items(a: pl.DataFrame, b: pl.DataFrame, n_samples: int, seed: int,
                    labels: tuple[str, str] = ("a", "b")) -> dict[str, dict]:
    """a minus b on the items both coded, per behavior indicator (multiple-comparison adjustment is the caller's)."""
    wide_a, wide_b = (df.select(*ITEM, **INDICATORS) for df in (a, b))
    joined = wide_a.join(wide_b, on=list(ITEM), suffix="_b").fill_null(False)
    if not joined.height:
        return {}
    results = {}
    for name in INDICATORS:
        test = paired_test(joined[name].cast(float).to_numpy(), joined[f"{name}_b"].cast(float).to_numpy(),
                           n_samples, seed)
        results[name] = {labels[0]: test["mean_a"], labels[1]: test["mean_b"], "difference": test["mean_diff"],
                         "low": test["ci_low"], "high": test["ci_high"], "p_value": test["p_value"],
                         "test": test["test"], "p_wilcoxon": test["p_wilcoxon"], "cohens_d": test["cohens_d"],
                         "rank_biserial": test["rank_biserial"], "n": test["n"]}
    return results


def between_models(coded: dict[str, pl.DataFrame], n_samples: int, seed: int) -> dict[tuple[str, str, str], dict]:
    """(model a, model b, indicator) -> fine-tuned a minus fine-tuned b on shared items, Holm-adjusted across all."""
    finetuned = {m: df.filter(pl.col("variant") == "finetuned") for m, df in coded.items() if df.height}
    results = {(a, b, name): r for a, b in combinations(sorted(finetuned), 2)
               for name, r in paired_on_items(finetuned[a], finetuned[b], n_samples, seed).items()}
    adjusted = holm_bonferroni({"|".join(key): r["p_value"] for key, r in results.items()})
    for key, result in results.items():
        result["p_holm"] = adjusted["|".join(key)]
    return results
