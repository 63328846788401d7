"""Seed material for synthesis: who the client is and what they came with, taken from curated train dialogs only.

A seed is a train-split dialog's topic, its case summary (meta, where the source has one, e.g. KMI's
'context') and its opening client utterances. Val/test dialogs are never seeds: a synthetic session that
paraphrases a test dialog would leak it into training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from counseltune.errors import CounseltuneError

SUMMARY_KEYS = ("case_summary", "summary", "context", "description")  # meta keys that hold a case summary
SEED_SPLIT = "train"


class SeedError(CounseltuneError, ValueError):
    """No usable seed material (wrong language, empty train split)."""


@dataclass(frozen=True)
class Seed:
    dialog_id: str
    language: str
    topic: str | None
    opening: tuple[str, ...]   # the first client utterances
    summary: str | None        # a case summary from meta, where present
    text: str                  # the whole seed dialog, for the copies-the-seed check

    def profile(self, max_chars: int = 600) -> str:
        """What the prompts say about the client: the case summary, else the opening utterances."""
        profile = self.summary or " ".join(self.opening)
        return profile if len(profile) <= max_chars else profile[:max_chars].rstrip() + "…"

    @property
    def question(self) -> str:
        """The client's request for a single-turn answer (CBT-LLM style)."""
        return "\n".join(self.opening) or self.summary or ""


def load_seeds(dialogs: pl.DataFrame, turns: pl.DataFrame, language: str, sources: list[str] | None = None,
               opening_turns: int = 2) -> list[Seed]:
    """Seeds from the curated tables: train split, one language, optionally some sources; in dialog_id order."""
    if opening_turns < 1:
        raise SeedError(f"opening_turns must be >= 1, got {opening_turns}")
    chosen = dialogs.filter((pl.col("split") == SEED_SPLIT) & (pl.col("language") == language))
    if sources:
        chosen = chosen.filter(pl.col("source").is_in(sources))
    chosen = chosen.sort("dialog_id")
    texts = (
        turns.join(chosen.select("dialog_id"), on="dialog_id", how="semi")
        .filter(pl.col("role") != "system")
        .sort("dialog_id", "turn_index")
        .group_by("dialog_id", maintain_order=True)
        .agg(
            pl.col("text").filter(pl.col("role") == "client").head(opening_turns).alias("opening"),
            pl.col("text").str.join("\n").alias("text"),
        )
    )
    rows = chosen.join(texts, on="dialog_id", how="inner", maintain_order="left")
    seeds = []
    for row in rows.iter_rows(named=True):
        summary = _summary(row["meta"])
        if not row["opening"] and not summary:
            continue  # nothing to say about the client
        seeds.append(Seed(row["dialog_id"], row["language"], row["topic"], tuple(row["opening"]), summary, row["text"]))
    if not seeds:
        where = f" from sources {sources}" if sources else ""
        raise SeedError(f"no {SEED_SPLIT}-split {language} dialogs{where} with a client utterance or a case summary to seed synthesis")
    return seeds


def select_seeds(seeds: list[Seed], n: int, seed: int) -> list[Seed]:
    """n seeds in a seeded order; when n exceeds the pool, cycle through fresh permutations of it."""
    rng = np.random.default_rng(seed)
    chosen: list[Seed] = []
    while len(chosen) < n:
        chosen.extend(seeds[i] for i in rng.permutation(len(seeds)))
    return chosen[:n]


def _summary(meta: str) -> str | None:
    try:
        data = json.loads(meta) if meta else {}
    except json.JSONDecodeError:
        return None
    for key in SUMMARY_KEYS:
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
