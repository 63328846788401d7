"""Leakage-free train/val/test split by dialog, stratified, reproducible from a seed.

Dialogs are split in blocks by the first stratification key (the source, by default): each block gets
exactly its share of each split (Hamilton's largest-remainder counts). Inside a block, dialogs are
ordered by the remaining keys (topic) and then a seeded hash of their id, and dealt out in that order so
that every run of neighbours, i.e. every topic, receives the splits in proportion too: a topic with five
dialogs still contributes to val/test instead of landing wholly in train.
"""

from __future__ import annotations

import hashlib
import math

import polars as pl

SPLITS = ("train", "val", "test")


def assign_splits(dialogs: pl.DataFrame, fixed: dict[str, str], fractions: dict[str, float],
                  stratify_by: list[str], seed: int) -> pl.DataFrame:
    """Return dialogs with a `split` column; `fixed` pins whole sources (e.g. an evaluation set) to one split."""
    order = [hashlib.blake2b(f"{seed}:{d}".encode(), digest_size=8).hexdigest() for d in dialogs["dialog_id"]]
    block_key = [pl.col(stratify_by[0]).fill_null("(none)")] if stratify_by else [pl.lit("all")]
    keyed = dialogs.with_columns(pl.Series("_order", order), pl.concat_str(block_key).alias("_block"))
    sort_keys = [pl.col(c).fill_null("(none)") for c in stratify_by[1:]] + [pl.col("_order")]
    splits: dict[str, str] = {}
    auto = keyed.filter(~pl.col("source").is_in(list(fixed)))
    for _, block in auto.sort("_block").group_by("_block", maintain_order=True):
        ids = block.sort(sort_keys)["dialog_id"].to_list()
        for dialog_id, name in zip(ids, _deal(len(ids), fractions)):
            splits[dialog_id] = name
    for dialog_id, source in keyed.select("dialog_id", "source").iter_rows():
        if source in fixed:
            splits[dialog_id] = fixed[source]
    return dialogs.with_columns(pl.col("dialog_id").replace_strict(splits, return_dtype=pl.String).alias("split"))


def _deal(n: int, fractions: dict[str, float]) -> list[str]:
    """n split names with exact largest-remainder totals, interleaved so every prefix is near-proportional."""
    totals = _largest_remainder(n, fractions)
    dealt = {name: 0 for name in SPLITS}
    out = []
    for k in range(1, n + 1):
        # the split furthest behind its pro-rata share so far (ties in SPLITS order)
        name = max(SPLITS, key=lambda s: (k * totals[s] / n - dealt[s], -SPLITS.index(s)))
        dealt[name] += 1
        out.append(name)
    return out


def _largest_remainder(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Split n items by fractions into whole counts that sum to n (Hamilton's method; ties in SPLITS order)."""
    exact = {name: n * fractions[name] for name in SPLITS}
    counts = {name: math.floor(value) for name, value in exact.items()}
    leftover = n - sum(counts.values())
    by_remainder = sorted(SPLITS, key=lambda name: (-(exact[name] - counts[name]), SPLITS.index(name)))
    for name in by_remainder[:leftover]:
        counts[name] += 1
    return counts
