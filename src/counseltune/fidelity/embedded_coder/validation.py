"""Validate the embedded coder: train on some transcripts, measure agreement with the human codes on the rest.

The split is by transcript (never by utterance: turns of one session share a counselor, a client and a
topic, so an utterance split would leak), seeded, and stratified by the dialogs' MI quality when the
dialogs table records one (AnnoMI's meta.mi_quality), so the held-out part has low-quality MI too.
Design choices (features, C: coder.DEFAULT_MODELS) were made by cross-validation on training transcripts only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.fidelity.embedded_coder.agreement import FAMILIES, agreement
from counseltune.fidelity.embedded_coder.coder import code_turns, save_coder, train_coder


class ValidationError(CounseltuneError, ValueError):
    """The inputs cannot give a held-out measurement (too few transcripts, missing dialogs)."""


def _stratum(meta: str | None) -> str:
    try:
        value = json.loads(meta or "{}").get("mi_quality")
    except (json.JSONDecodeError, AttributeError):
        value = None
    return str(value)


def split_transcripts(dialogs: pl.DataFrame, seed: int, test_fraction: float = 0.2) -> dict[str, list[str]]:
    """{'train': [...], 'test': [...]} dialog ids, a seeded shuffle per MI-quality stratum."""
    if not 0 < test_fraction < 1:
        raise ValidationError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if dialogs.height < 2:
        raise ValidationError(f"a held-out split needs at least 2 dialogs, got {dialogs.height}")
    meta = dialogs["meta"] if "meta" in dialogs.columns else pl.Series([None] * dialogs.height)
    strata: dict[str, list[str]] = {}
    for dialog_id, value in zip(dialogs["dialog_id"].to_list(), meta.to_list()):
        strata.setdefault(_stratum(value), []).append(dialog_id)
    rng = np.random.default_rng(seed)
    split: dict[str, list[str]] = {"train": [], "test": []}
    for name in sorted(strata):
        ids = sorted(strata[name])
        shuffled = [ids[k] for k in rng.permutation(len(ids))]
        n_test = round(len(ids) * test_fraction)
        if len(ids) >= 2:
            n_test = min(max(n_test, 1), len(ids) - 1)  # every stratum of two or more feeds both sides
        split["test"] += shuffled[:n_test]
        split["train"] += shuffled[n_test:]
    if not split["train"] or not split["test"]:
        raise ValidationError(f"split of {dialogs.height} dialogs left a side empty; use more dialogs")
    return {name: sorted(ids) for name, ids in split.items()}


def validate_coder(turns: pl.DataFrame, dialogs: pl.DataFrame, seed: int, *, test_fraction: float = 0.2,
                   models: dict | None = None, min_df: int = 2, model_path: Path | str | None = None) -> dict:
    """Train on the train transcripts, code the held-out ones, and report agreement per label family.

    model_path: where to save the trained coder (optional). The report holds the split, train/code
    seconds, the per-family agreement (agreement.agreement) and the settings, ready to dump as JSON.
    """
    unknown = sorted(set(turns["dialog_id"].unique().to_list()) - set(dialogs["dialog_id"].to_list()))
    if unknown:
        raise ValidationError(f"{len(unknown)} dialog(s) of the turns table are missing from dialogs, e.g. {unknown[:3]}")
    split = split_transcripts(dialogs.filter(pl.col("dialog_id").is_in(turns["dialog_id"].unique().implode())), seed, test_fraction)
    started = time.perf_counter()
    coder = train_coder(turns, split["train"], models=models, min_df=min_df)
    train_seconds = time.perf_counter() - started
    held_out = turns.filter(pl.col("dialog_id").is_in(split["test"]))
    started = time.perf_counter()
    coded = code_turns(coder, held_out)
    code_seconds = time.perf_counter() - started
    if model_path is not None:
        save_coder(coder, model_path)
    families = [f for f in FAMILIES if f == "behavior" or f == "code" or f.removesuffix("_subtype") in coder.subtypes]
    return {
        "seed": seed,
        "test_fraction": test_fraction,
        "settings": coder.settings,
        "train_dialogs": split["train"],
        "test_dialogs": split["test"],
        "n_train_turns": int(turns.filter(pl.col("dialog_id").is_in(split["train"]) & (pl.col("role") == "counselor")).height),
        "n_test_turns": coded.height,
        "train_seconds": round(train_seconds, 2),
        "code_seconds": round(code_seconds, 2),
        "agreement": agreement(held_out, coded, families),
    }
