"""Coder validation: how well automatic codes agree with human codes, per label family.

Families
  behavior            the four AnnoMI classes, on every human-coded counselor turn;
  question_subtype    open vs closed, on the turns humans coded as questions (the coder's subtype model
                      is asked about every turn, so this measures the subtype decision on its own);
  reflection_subtype  simple vs complex, likewise on human reflections;
  code                end to end: open/closed question, simple/complex reflection, therapist_input, other,
                      on the turns whose human code is complete; the coder's label comes from its
                      predicted behavior and, for questions/reflections, its subtype.
Each family reports n, accuracy, Cohen's kappa, macro-F1, per-class F1 and the confusion matrix
(rows = human, columns = coder).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.instruments import miti
from counseltune.fidelity.embedded_coder.coder import SUBTYPES
from counseltune.fidelity.embedded_coder.features import KEY
from counseltune.schemas.tables import MI_BEHAVIORS

FAMILIES = ("behavior", "question_subtype", "reflection_subtype", "code")
CODE_LABELS = (*SUBTYPES["question"], *SUBTYPES["reflection"], "therapist_input", "other")


class AgreementError(CounseltuneError, ValueError):
    """Inputs that cannot be compared (different lengths, no overlap, unknown labels)."""


def confusion_matrix(human: Sequence[str], coder: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """counts[i, j] = items humans labelled labels[i] and the coder labels[j]."""
    if len(human) != len(coder):
        raise AgreementError(f"human and coder label lists differ in length ({len(human)} vs {len(coder)})")
    index = {label: k for k, label in enumerate(labels)}
    outside = sorted({x for x in (*human, *coder) if x not in index}, key=str)
    if outside:
        raise AgreementError(f"label(s) {outside} not in the label set {list(labels)}")
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    rows = np.fromiter((index[x] for x in human), dtype=np.intp, count=len(human))
    columns = np.fromiter((index[x] for x in coder), dtype=np.intp, count=len(coder))
    np.add.at(counts, (rows, columns), 1)
    return counts


def cohen_kappa(counts: np.ndarray) -> float | None:
    """Cohen's kappa of a confusion matrix: (p_o - p_e) / (1 - p_e); None when undefined (no items, or p_e = 1)."""
    n = counts.sum()
    if n == 0:
        return None
    observed = np.trace(counts) / n
    expected = float((counts.sum(axis=1) @ counts.sum(axis=0)) / n**2)
    if expected == 1.0:  # both raters used one and the same label throughout: chance explains everything
        return None
    return float((observed - expected) / (1 - expected))


def per_class_f1(counts: np.ndarray, labels: Sequence[str]) -> dict[str, float | None]:
    """F1 per label; None for a label neither rater used (no evidence either way)."""
    tp = np.diag(counts).astype(float)
    human_total, coder_total = counts.sum(axis=1), counts.sum(axis=0)
    out = {}
    for k, label in enumerate(labels):
        denominator = human_total[k] + coder_total[k]
        out[label] = None if denominator == 0 else float(2 * tp[k] / denominator)
    return out


def macro_f1(f1: dict[str, float | None]) -> float | None:
    """Unweighted mean F1 over the labels either rater used (as sklearn's macro average)."""
    used = [v for v in f1.values() if v is not None]
    return float(np.mean(used)) if used else None


def agreement_scores(human: Sequence[str], coder: Sequence[str], labels: Sequence[str]) -> dict:
    """n, accuracy, kappa, macro_f1, per_class_f1 and confusion (rows human, columns coder) of two label lists."""
    counts = confusion_matrix(human, coder, labels)
    f1 = per_class_f1(counts, labels)
    n = int(counts.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(counts) / n) if n else None,
        "kappa": cohen_kappa(counts),
        "macro_f1": macro_f1(f1),
        "per_class_f1": f1,
        "labels": list(labels),
        "confusion": counts.tolist(),
    }


def _family_pairs(joined: pl.DataFrame, family: str) -> tuple[list[str], list[str], tuple[str, ...]]:
    """(human labels, coder labels, label set) of one family on the joined human/coder rows."""
    col = pl.col
    if family == "behavior":
        rows = joined.filter(col("mi_behavior").is_not_null())
        return rows["mi_behavior"].to_list(), rows["coder_mi_behavior"].to_list(), tuple(MI_BEHAVIORS)
    if family in ("question_subtype", "reflection_subtype"):
        behavior = family.removesuffix("_subtype")
        codes = SUBTYPES[behavior]
        rows = joined.filter((col("mi_behavior") == behavior) & col("mi_code").is_in(list(codes)))
        predicted = rows[f"coder_{family}"]
        if predicted.null_count():
            raise AgreementError(f"the coder has no {behavior} subtype model (too few labelled {behavior}s in training)")
        return rows["mi_code"].to_list(), predicted.to_list(), codes
    if family == "code":
        def label(behavior: pl.Expr, code: pl.Expr) -> pl.Expr:
            return pl.when(behavior.is_in(list(SUBTYPES))).then(code).otherwise(behavior)
        rows = joined.with_columns(
            _human=label(col("mi_behavior"), col("mi_code")),
            _coder=label(col("coder_mi_behavior"), col("coder_mi_code")),
        ).filter(col("_human").is_not_null() & col("_coder").is_not_null())
        return rows["_human"].to_list(), rows["_coder"].to_list(), CODE_LABELS
    raise AgreementError(f"unknown label family {family!r}; expected one of {FAMILIES}")


def agreement(human_turns: pl.DataFrame, coded: pl.DataFrame, families: Sequence[str] = FAMILIES) -> dict[str, dict]:
    """Per family, agreement between the human codes in a turns table and code_turns() output on it."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise AgreementError(f"unknown label family/families {unknown}; expected from {FAMILIES}")
    missing = [c for c in ("mi_behavior", "mi_code") if c not in human_turns.columns]
    if missing:
        raise AgreementError(f"human turns lack column(s) {missing}: agreement needs a human-coded Turns table")
    human = human_turns.filter((pl.col("role") == "counselor") & pl.col("mi_behavior").is_not_null())
    if human.is_empty():
        raise AgreementError("the turns table has no human-coded counselor turns to compare with")
    miti.check_codes(human)
    coder_columns = ["mi_behavior", "mi_code", *(f"{f}_subtype" for f in SUBTYPES)]
    renamed = coded.select(*KEY, *coder_columns).rename({c: f"coder_{c}" for c in coder_columns})
    joined = human.select(*KEY, "mi_behavior", "mi_code").join(renamed, on=list(KEY), how="left")
    not_coded = joined["coder_mi_behavior"].null_count()
    if not_coded:
        raise AgreementError(f"{not_coded} human-coded counselor turns have no automatic code: run code_turns on the same turns table")
    return {family: agreement_scores(*_family_pairs(joined, family)) for family in families}
