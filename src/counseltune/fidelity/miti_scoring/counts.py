"""Per-turn codes -> MITI behavior counts and summary scores per dialog or per group (e.g. per model).

Counts are pooled: a group's R:Q is its reflections over its questions across all its dialogs (a
dialog without questions still contributes its reflections). A MITI code the coder cannot produce is
a null column, never 0 (CODED_BY_EMBEDDED_CODER lists what it can; miti.UNMAPPABLE says why the rest
cannot be).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from counseltune.instruments import miti

# MITI count keys the embedded coder produces (coder.py); everything else in miti.COUNT_KEYS is not coded.
CODED_BY_EMBEDDED_CODER = ("question", "open_question", "closed_question", "simple_reflection", "complex_reflection")
# Human AnnoMI codes add giving_information (the 'information' input subtype).
CODED_BY_ANNOMI = (*CODED_BY_EMBEDDED_CODER, "giving_information")
# The corpus classes with no MITI code, counted too (corpus_<class>): they say how much of the session the
# MITI counts leave out. (MITI's own "other" count stays null: AnnoMI's other also holds MITI codes.)
CORPUS_CLASSES = ("therapist_input", "other")
CORPUS_COUNTS = tuple(f"corpus_{c}" for c in CORPUS_CLASSES)


def _count(key: str) -> pl.Expr:
    col = pl.col
    if key == "question":
        hit = col("mi_behavior") == "question"
    elif key in miti.QUESTION_SUBTYPES:
        hit = col("mi_code") == key
    else:
        hit = col("_miti") == key
    return hit.fill_null(False).sum().cast(pl.Int64).alias(key)


def behavior_counts(coded: pl.DataFrame, by: Sequence[str] = ("dialog_id",),
                    coded_codes: Sequence[str] = CODED_BY_EMBEDDED_CODER) -> pl.DataFrame:
    """One row per group of `by`: n_dialogs, n_counselor_turns, n_coded, the corpus classes and every MITI count.

    coded: code_turns() output, or a human-coded Turns table (only counselor rows are counted); it needs
    mi_behavior, mi_code and the `by` columns. coded_codes: the MITI counts the coding can produce (use
    CODED_BY_ANNOMI for AnnoMI's human codes); the other MITI counts are null.
    """
    by = list(by)
    missing = [c for c in ("dialog_id", "mi_behavior", "mi_code", *by) if c not in coded.columns]
    if missing:
        raise miti.MitiError(f"coded turns lack column(s) {missing}; pass code_turns() output (joined with {by} if needed)")
    unknown = sorted(set(coded_codes) - set(miti.COUNT_KEYS))
    if unknown:
        raise miti.MitiError(f"unknown MITI count(s) {unknown} in coded_codes; expected from {miti.COUNT_KEYS}")
    rows = coded.filter(pl.col("role") == "counselor") if "role" in coded.columns else coded
    if rows.is_empty():
        raise miti.MitiError("no counselor turns to count: code_turns() output or a Turns table with counselor turns is needed")
    miti.check_codes(rows)
    rows = rows.with_columns(_miti=miti.miti_code_expr())
    counted = [_count(key) for key in miti.COUNT_KEYS if key in coded_codes]
    not_coded = [pl.lit(None, pl.Int64).alias(key) for key in miti.COUNT_KEYS if key not in coded_codes]
    corpus = [(pl.col("mi_behavior") == c).fill_null(False).sum().cast(pl.Int64).alias(f"corpus_{c}") for c in CORPUS_CLASSES]
    table = rows.group_by(*by, maintain_order=True).agg(
        pl.col("dialog_id").n_unique().cast(pl.Int64).alias("n_dialogs"),
        pl.len().cast(pl.Int64).alias("n_counselor_turns"),
        pl.col("mi_behavior").is_not_null().sum().cast(pl.Int64).alias("n_coded"),
        *corpus, *counted,
    )
    return table.with_columns(not_coded).select(*by, "n_dialogs", "n_counselor_turns", "n_coded", *CORPUS_COUNTS, *miti.COUNT_KEYS).sort(*by)


def with_summary_scores(counts: pl.DataFrame, global_scores: Mapping[str, Mapping[str, float | None]] | None = None,
                        key: str | None = None) -> pl.DataFrame:
    """Add every MITI summary score and its grade (<score>_grade) to a behavior_counts() table, and each MITI total's
    mean per session (<total>_per_session = total / n_dialogs; a row may pool several sessions).

    global_scores: optional ratings (an LLM judge's) by the value of column `key` (e.g. dialog_id);
    rows without ratings get None for technical/relational, as the embedded coder rates no globals.
    """
    if global_scores and key is None:
        raise miti.MitiError("global_scores given without key: name the column (e.g. 'dialog_id') they are keyed by")
    scores, grades = [], []
    for row in counts.iter_rows(named=True):
        ratings = (global_scores or {}).get(row[key]) if key else None
        values = miti.summary_scores({k: row[k] for k in miti.COUNT_KEYS}, ratings)
        scores.append(values)
        grades.append({f"{name}_grade": g for name, g in miti.grade_all(values).items()})
    score_frame = pl.DataFrame(scores, schema={name: pl.Float64 for name in miti.SUMMARY_SCORES})
    grade_frame = pl.DataFrame(grades, schema={f"{name}_grade": pl.String for name in miti.SUMMARY_SCORES})
    means = [(score_frame[t] / counts["n_dialogs"].cast(pl.Float64)).alias(f"{t}_per_session") for t in miti.TOTALS]
    return pl.concat([counts, score_frame, grade_frame, pl.DataFrame(means)], how="horizontal")


def summarize(coded: pl.DataFrame, by: Sequence[str] = ("dialog_id",),
              coded_codes: Sequence[str] = CODED_BY_EMBEDDED_CODER) -> pl.DataFrame:
    """behavior_counts() then with_summary_scores(): per dialog (default) or per group, e.g. by=['model']."""
    return with_summary_scores(behavior_counts(coded, by, coded_codes))
