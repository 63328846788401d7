"""Embedded-coder view of a model's predictions: every reply coded in its dialog's context, per variant.

A predicted reply answers the history before its turn, and the coder's features include that history (the
client turn it would reflect, the counselor's previous turn). So each reply is spliced into its dialog: the
item's history plus one counselor turn holding the reply, coded as its own pseudo-dialog. The human reply of
the same item (the 'reference' variant) is coded the same way, so all three variants are measured alike.
"""

from __future__ import annotations

import polars as pl

from counseltune.fidelity.embedded_coder.coder import MitiCoder, code_turns
from counseltune.fidelity.miti_scoring.counts import behavior_counts
from counseltune.fidelity.miti_scoring.profile import miti_profile
from counseltune.paired_indicators import ITEM, paired_on_items
from counseltune.stats import holm_bonferroni

CODER_LANGUAGES = ("en",)   # the coder learned English AnnoMI transcripts
VARIANTS = ("base", "finetuned", "reference")


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


def _by_language(df: pl.DataFrame) -> dict[str, int]:
    return {lang: int(n) for lang, n in df.group_by("language").len().sort("language").iter_rows()}
