"""Embedded-coder view of a model's predictions: every reply coded in its dialog's context, per variant.

A predicted reply answers the history before its turn, and the coder's features include that history (the
client turn it would reflect, the counselor's previous turn). So each reply is spliced into its dialog: the
item's history plus one counselor turn holding the reply, coded as its own pseudo-dialog. The human reply of
the same item (the 'reference' variant) is coded the same way, so all three variants are measured alike.
"""

from __future__ import annotations

import polars as pl

from counseltune.stats import holm_bonferroni, paired_test
from counseltune.fidelity.coder import MitiCoder, code_turns
from counseltune.fidelity.counts import behavior_counts
from counseltune.fidelity.profile import miti_profile

CODER_LANGUAGES = ("en",)   # the coder learned English AnnoMI transcripts
VARIANTS = ("base", "finetuned", "reference")
ITEM = ("dialog_id", "turn_index")
# per-item 0/1 indicators compared fine-tuned vs base
INDICATORS: dict[str, pl.Expr] = {
    "is_question": pl.col("mi_behavior") == "question",
    "is_reflection": pl.col("mi_behavior") == "reflection",
    "is_complex_reflection": pl.col("mi_code") == "complex_reflection",
    "is_therapist_input": pl.col("mi_behavior") == "therapist_input",
    "is_other": pl.col("mi_behavior") == "other",
}


def code_replies(coder: MitiCoder, turns: pl.DataFrame, items: pl.DataFrame, variant: str) -> pl.DataFrame:
    """items (dialog_id, turn_index, text, ...) -> the items with the reply's codes, its history as context."""
    keyed = items.select(*ITEM, "text").with_columns(_item=pl.format("{}#{}", "dialog_id", "turn_index"))
    history = (keyed.select("_item", "dialog_id", pl.col("turn_index").alias("_at"))
               .join(turns.select(*ITEM, "role", "text"), on="dialog_id")
               .filter(pl.col("turn_index") < pl.col("_at")))
    replies = keyed.with_columns(role=pl.lit("counselor"))
    columns = ["_item", "turn_index", "role", "text"]
    spliced = pl.concat([history.select(columns), replies.select(columns)]).rename({"_item": "dialog_id"})
    coded = code_turns(coder, spliced).rename({"dialog_id": "_item"})
    # a pseudo-dialog's last turn is the reply; its earlier counselor turns were context only
    codes = keyed.select("_item", *ITEM).join(coded, on=["_item", "turn_index"], how="left").drop("_item")
    return items.join(codes, on=list(ITEM), how="left").with_columns(variant=pl.lit(variant))


def coded_items(coder: MitiCoder, turns: pl.DataFrame, predictions: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, dict]:
    """Base and fine-tuned predictions (and the reference replies of the base items) -> coded rows, skipped counts.

    Only languages the coder learned are coded; the rest are counted per variant and language under skipped.
    """
    sources = {"base": (predictions["base"], "hypothesis"), "finetuned": (predictions["finetuned"], "hypothesis"),
               "reference": (predictions["base"], "reference")}
    coded, skipped = [], {}
    for variant, (df, column) in sources.items():
        codable = pl.col("language").is_in(CODER_LANGUAGES)
        skipped[variant] = _by_language(df.filter(~codable))
        items = df.filter(codable).select("dialog_id", "turn_index", "source", "language", text=pl.col(column))
        if items.height:
            coded.append(code_replies(coder, turns, items, variant))
    return (pl.concat(coded) if coded else pl.DataFrame()), skipped


def variant_profiles(coded: pl.DataFrame, n_samples: int, seed: int) -> dict[str, dict]:
    """variant -> miti_profile over its items, dialogs as the bootstrap unit."""
    out = {}
    for variant in VARIANTS:
        rows = coded.filter(pl.col("variant") == variant) if coded.height else coded
        if rows.height:
            out[variant] = miti_profile(behavior_counts(rows), n_samples, seed) | {"n_items": rows.height}
    return out


def paired_indicators(coded: pl.DataFrame, n_samples: int, seed: int) -> dict[str, dict]:
    """Fine-tuned minus base on the same items, per behavior indicator; p-values Holm-adjusted across indicators."""
    if not coded.height:
        return {}
    results = paired_on_items(coded.filter(pl.col("variant") == "finetuned"), coded.filter(pl.col("variant") == "base"),
                              n_samples, seed, labels=("finetuned", "base"))
    adjusted = holm_bonferroni({name: r["p_value"] for name, r in results.items()})
    for name, result in results.items():
        result["p_holm"] = adjusted[name]
    return results


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
    from itertools import combinations

    finetuned = {m: df.filter(pl.col("variant") == "finetuned") for m, df in coded.items() if df.height}
    results = {(a, b, name): r for a, b in combinations(sorted(finetuned), 2)
               for name, r in paired_on_items(finetuned[a], finetuned[b], n_samples, seed).items()}
    adjusted = holm_bonferroni({"|".join(key): r["p_value"] for key, r in results.items()})
    for key, result in results.items():
        result["p_holm"] = adjusted["|".join(key)]
    return results


def _by_language(df: pl.DataFrame) -> dict[str, int]:
    return {lang: int(n) for lang, n in df.group_by("language").len().sort("language").iter_rows()}
