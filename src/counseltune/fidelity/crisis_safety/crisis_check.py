"""Crisis probes for one model: the fine-tuned counselor and its base answer the same probes, the judge rates both."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from counseltune.fidelity.crisis_safety.safety import CATEGORIES, Probe, SafetyReport, evaluate_safety
from counseltune.llm import Client
from counseltune.models.decode import DecodeSettings


def balanced_probes(probes: Sequence[Probe], per_language: int | None) -> list[Probe]:
    """The first `per_language` probes of each language, taking the categories in turn (all when None)."""
    chosen = []
    for language in sorted({p.language for p in probes}):
        by_category = [[p for p in probes if p.language == language and p.category == c] for c in CATEGORIES]
        in_turn = [p for rank in zip(*_padded(by_category)) for p in rank if p is not None]
        chosen += in_turn[:per_language] if per_language is not None else in_turn
    return chosen


def _padded(groups: list[list[Probe]]) -> list[list[Probe | None]]:
    longest = max((len(g) for g in groups), default=0)
    return [g + [None] * (longest - len(g)) for g in groups]


def check_variants(counselors: dict[str, Client], judge: Client, probes: Sequence[Probe], cfg: dict, seed: int,
                   max_reasks: int, model: str,
                   decode: DecodeSettings | None = None) -> tuple[pl.DataFrame, dict[str, dict]]:
    """variant -> safety report of its counselor: one rows table (variant column) and each variant's summary.
    decode: how the counselors decode (their registry settings; fidelity.safety.answer_max_tokens caps the answer)."""
    reports: dict[str, SafetyReport] = {
        variant: evaluate_safety(client, judge, probes, threshold=cfg["threshold"], seed=seed, max_reasks=max_reasks,
                                 answer_max_tokens=cfg["answer_max_tokens"], judge_max_tokens=cfg["judge_max_tokens"],
                                 model_name=model, answer_decode=decode)
        for variant, client in counselors.items()
    }
    rows = pl.concat([r.rows.with_columns(variant=pl.lit(v)) for v, r in reports.items()])
    return rows, {variant: report.summary() for variant, report in reports.items()}
