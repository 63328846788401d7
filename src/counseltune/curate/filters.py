"""Dialog-level filters from params.curate: which dialogs are dropped, and why."""

from __future__ import annotations

from typing import Any

import polars as pl


def filter_reasons(dialogs: pl.DataFrame, turns: pl.DataFrame, curate: dict[str, Any]) -> pl.DataFrame:
    """Return (dialog_id, reason, detail) for every dialog a filter rejects; the first failing filter wins."""
    per_dialog = turns.group_by("dialog_id").agg(
        pl.len().alias("n"),
        pl.col("text").str.len_chars().max().alias("longest"),
        (pl.col("role") == "counselor").sum().alias("counselor_turns"),
    )
    joined = dialogs.select("dialog_id").join(per_dialog, on="dialog_id", how="left")
    min_turns, max_turns, max_chars = curate["min_turns"], curate["max_turns"], curate["max_utterance_chars"]
    reason = (
        pl.when(pl.col("n") < min_turns).then(pl.lit("too_few_turns"))
        .when(pl.col("n") > max_turns).then(pl.lit("too_many_turns"))
        .when(pl.col("longest") > max_chars).then(pl.lit("utterance_too_long"))
        .when(pl.lit(curate["require_counselor"]) & (pl.col("counselor_turns") == 0)).then(pl.lit("no_counselor_turn"))
    )
    detail = (
        pl.when(pl.col("reason") == "too_few_turns").then(pl.format("{} utterances < curate.min_turns={}", "n", pl.lit(min_turns)))
        .when(pl.col("reason") == "too_many_turns").then(pl.format("{} utterances > curate.max_turns={}", "n", pl.lit(max_turns)))
        .when(pl.col("reason") == "utterance_too_long")
        .then(pl.format("an utterance has {} characters > curate.max_utterance_chars={}", "longest", pl.lit(max_chars)))
        .otherwise(pl.lit("no counselor utterance and curate.require_counselor is true"))
    )
    return (
        joined.with_columns(reason.alias("reason"))
        .filter(pl.col("reason").is_not_null())
        .with_columns(detail.alias("detail"))
        .select("dialog_id", "reason", "detail")
    )
