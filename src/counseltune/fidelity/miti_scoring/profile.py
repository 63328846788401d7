"""A MITI profile of a set of coded dialogs: pooled R:Q, %CR and behavior shares, each with a bootstrap CI over dialogs.

Pooled, as counts.py pools: a group's R:Q is all its reflections over all its questions. The CI resamples
whole dialogs (utterances of one session are not independent) and recomputes the pooled ratio; a resample
whose denominator is 0 (no questions drawn) has no ratio and is left out, and their number is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from counseltune.instruments import miti
from counseltune.fidelity.miti_scoring.counts import CORPUS_CLASSES

# share name -> the behavior_counts() columns whose sum it is (over coded counselor turns)
SHARES: dict[str, tuple[str, ...]] = {
    "question": ("question",),
    "reflection": ("simple_reflection", "complex_reflection"),
    **{c: (f"corpus_{c}",) for c in CORPUS_CLASSES},
    "giving_information": ("giving_information",),
}
RATIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "reflection_to_question": (("simple_reflection", "complex_reflection"), ("question",)),
    "percent_complex_reflection": (("complex_reflection",), ("simple_reflection", "complex_reflection")),
}


def pooled_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], n_samples: int, seed: int,
                    confidence: float = 0.95) -> dict:
    """sum(numerator) / sum(denominator) over dialogs, with a percentile bootstrap CI resampling dialogs."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if len(num) != len(den):
        raise ValueError(f"{len(num)} numerators but {len(den)} denominators")
    if len(num) == 0 or den.sum() == 0:
        return {"estimate": None, "low": None, "high": None, "n_dialogs": len(num), "undefined_resamples": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_samples, len(num)))
    boot_num, boot_den = num[idx].sum(axis=1), den[idx].sum(axis=1)
    defined = boot_den > 0
    alpha = 1 - confidence
    low, high = np.percentile(boot_num[defined] / boot_den[defined], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"estimate": float(num.sum() / den.sum()), "low": float(low), "high": float(high),
            "n_dialogs": len(num), "undefined_resamples": int((~defined).sum())}


def miti_profile(counts: pl.DataFrame, n_samples: int, seed: int) -> dict:
    """A behavior_counts() table (one row per dialog) -> pooled summary scores with CIs and MITI grades, and shares.

    A count the coding cannot produce (a null column) gives a null score, never 0.
    """
    def column(names: tuple[str, ...]) -> np.ndarray | None:
        if any(counts[n].null_count() for n in names):
            return None
        return sum(counts[n].to_numpy().astype(float) for n in names)

    def ratio(num: tuple[str, ...], den: tuple[str, ...] | np.ndarray) -> dict:
        top = column(num)
        bottom = den if isinstance(den, np.ndarray) else column(den)
        if top is None or bottom is None:
            return {"estimate": None, "low": None, "high": None, "n_dialogs": counts.height, "not_coded": True}
        return pooled_ratio_ci(top, bottom, n_samples, seed)

    coded = counts["n_coded"].to_numpy().astype(float)
    scores = {}
    for name, (num, den) in RATIOS.items():
        scores[name] = ratio(num, den)
        scores[name]["grade"] = miti.grade(name, scores[name]["estimate"])
    return {
        "n_dialogs": counts.height,
        "n_counselor_turns": int(counts["n_counselor_turns"].sum()),
        "n_coded": int(coded.sum()),
        "counts": {k: (None if counts[k].null_count() else int(counts[k].sum()))
                   for k in (*miti.COUNT_KEYS, *(f"corpus_{c}" for c in CORPUS_CLASSES))},
        "scores": scores,
        "shares": {name: ratio(cols, coded) for name, cols in SHARES.items()},
    }
