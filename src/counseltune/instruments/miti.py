"""MITI 4.2.1 (Moyers, Manuel & Ernst 2014; rev. 2016): its codes, summary scores and proficiency thresholds.

Behavior counts are per session: every counselor utterance gets at most one behavior code. Global scores
are session-level ratings from 1 to 5. Summary scores combine them; each has a "fair" and a "good"
threshold (a score at or above the threshold reaches it), except Total MI-Adherent (Seeking Collaboration +
Affirm + Emphasizing Autonomy) and Total MI-Non-Adherent (Confront + Persuade), which MITI 4.2.1 reports as
counts without thresholds. The share MIA / (MIA + MINA) ("percent MI-adherent") belongs to older MITI versions
(3.x), not to 4.2.1: it is kept only under its own name, mia_share, and never graded.

How the corpus codes (schemas/tables.py: mi_behavior / mi_code, AnnoMI- and KMI-style) map onto MITI is
in CORPUS_TO_MITI, and what cannot be mapped, and why, in UNMAPPABLE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.schemas.tables import MI_BEHAVIORS, MI_CODES

# ---- vocabulary -------------------------------------------------------------------------------------
QUESTION_SUBTYPES = ("open_question", "closed_question")  # MITI 4.2.1 codes Question; OQ/CQ is MITI 3's split
BEHAVIOR_CODES = (
    "giving_information", "persuade", "persuade_with_permission",
    "question", "simple_reflection", "complex_reflection",
    "affirm", "seeking_collaboration", "emphasizing_autonomy", "confront",
    "other",  # an utterance MITI gives no behavior code (greetings, fillers, unfinished sentences)
)
# Counts a summary may use: the behavior codes plus the question subtypes.
COUNT_KEYS = BEHAVIOR_CODES + QUESTION_SUBTYPES
GLOBAL_SCORES = ("cultivating_change_talk", "softening_sustain_talk", "partnership", "empathy")
GLOBAL_RANGE = (1, 5)

MI_ADHERENT = ("seeking_collaboration", "affirm", "emphasizing_autonomy")  # MITI 4.2.1 Total MI-Adherent
MI_NON_ADHERENT = ("confront", "persuade")  # MITI 4.2.1 Total MI-Non-Adherent (Persuade with Permission is not in it)

# ---- summary scores and thresholds -------------------------------------------------------------------
MITI_SUMMARY_SCORES = (
    "technical", "relational", "reflection_to_question", "percent_complex_reflection",
    "total_mi_adherent", "total_mi_non_adherent",
)
NOT_MITI_4_2_1 = ("mia_share",)  # kept for comparison with older MITI studies, under its own name
SUMMARY_SCORES = MITI_SUMMARY_SCORES + NOT_MITI_4_2_1
TOTALS = ("total_mi_adherent", "total_mi_non_adherent")  # counts: reported with a per-session mean beside them
SCORE_LABELS = {
    "technical": "Technical", "relational": "Relational", "reflection_to_question": "R:Q",
    "percent_complex_reflection": "%CR", "total_mi_adherent": "Total MI-Adherent (SC+AF+EA)",
    "total_mi_non_adherent": "Total MI-Non-Adherent (CON+PER)",
    "mia_share": "MIA share (not a MITI 4.2.1 score)",
}
# name -> (fair, good). Ratios and percentages are fractions: R:Q 1:1 -> 1.0, 40% -> 0.40.
THRESHOLDS: dict[str, tuple[float, float] | None] = {
    "technical": (3.0, 4.0),
    "relational": (3.5, 4.0),
    "reflection_to_question": (1.0, 2.0),
    "percent_complex_reflection": (0.40, 0.50),
    "total_mi_adherent": None,  # MITI 4.2.1 publishes no threshold for the totals: report the count only
    "total_mi_non_adherent": None,
    "mia_share": None,  # not a MITI 4.2.1 score: never graded
}
GRADES = ("below_fair", "fair", "good")

# ---- corpus codes -> MITI ----------------------------------------------------------------------------
# mi_code -> MITI behavior code, where the corpus code means the same thing.
CORPUS_TO_MITI: dict[str, str] = {
    "open_question": "question",
    "closed_question": "question",
    "simple_reflection": "simple_reflection",
    "complex_reflection": "complex_reflection",
    "information": "giving_information",
    "affirm": "affirm",
}
# mi_behavior -> MITI code when no finer mi_code is known (a question is a question whatever its subtype).
BEHAVIOR_TO_MITI: dict[str, str | None] = {
    "question": "question",
    "reflection": None,  # simple or complex: MITI has no bare "reflection" code
    "therapist_input": None,  # information, advice, negotiation or options: see UNMAPPABLE
    "other": None,  # AnnoMI's other also holds affirmations and autonomy support: see UNMAPPABLE
}
UNMAPPABLE: dict[str, str] = {
    "advice": "MITI splits advice into Persuade and Persuade with Permission by whether the client's permission "
              "was asked or the advice was framed with autonomy; AnnoMI's advice subtype does not record that.",
    "negotiation": "AnnoMI's negotiation/goal-setting input can be Seeking Collaboration, Persuade or Giving "
                   "Information in MITI depending on its wording; no one-to-one mapping.",
    "options": "Offering options can be Emphasizing Autonomy or Giving Information in MITI; no one-to-one mapping.",
    "general": "KMI's General is a catch-all of uncoded talk; it is not a MITI behavior code.",
    "other": "AnnoMI's other holds every utterance that is not a question, reflection or input, which includes "
             "MITI's Affirm, Seeking Collaboration and Emphasizing Autonomy alongside fillers; they are not separable.",
    "reflection": "A reflection without its simple/complex subtype has no MITI code (MITI codes SR and CR only).",
    "therapist_input": "Therapist input without its subtype may be Giving Information, Persuade or neither.",
}
# MITI codes no corpus label (so no embedded coder trained on one) yields: reported as not coded (None).
NOT_CODED_FROM_CORPUS = (
    "persuade", "persuade_with_permission", "seeking_collaboration", "emphasizing_autonomy", "confront",
)


class MitiError(CounseltuneError, ValueError):
    """Counts, scores or codes that do not fit MITI 4.2.1; the message names the offending key or value."""


def miti_code(mi_behavior: str | None, mi_code: str | None) -> str | None:
    """The MITI behavior code of one corpus-coded utterance, or None where there is none (see UNMAPPABLE)."""
    if mi_behavior is not None and mi_behavior not in MI_BEHAVIORS:
        raise MitiError(f"unknown mi_behavior {mi_behavior!r}; expected one of {MI_BEHAVIORS}")
    if mi_code is not None and mi_code not in MI_CODES:
        raise MitiError(f"unknown mi_code {mi_code!r}; expected one of {MI_CODES}")
    if mi_code is not None:
        return CORPUS_TO_MITI.get(mi_code)
    return BEHAVIOR_TO_MITI.get(mi_behavior) if mi_behavior is not None else None


def miti_code_expr(behavior: str = "mi_behavior", code: str = "mi_code") -> pl.Expr:
    """miti_code() as a polars expression over two columns (codes must already be known to be valid)."""
    by_code = pl.col(code).replace_strict(CORPUS_TO_MITI, default=None, return_dtype=pl.String)
    by_behavior = pl.col(behavior).replace_strict(BEHAVIOR_TO_MITI, default=None, return_dtype=pl.String)
    return pl.when(pl.col(code).is_not_null()).then(by_code).otherwise(by_behavior)


def check_codes(frame: pl.DataFrame, behavior: str = "mi_behavior", code: str = "mi_code") -> None:
    """Raise MitiError naming any mi_behavior / mi_code value outside the corpus vocabulary."""
    for column, allowed in ((behavior, MI_BEHAVIORS), (code, MI_CODES)):
        unknown = sorted(set(frame[column].drop_nulls().unique().to_list()) - set(allowed))
        if unknown:
            raise MitiError(f"unknown {column} value(s) {unknown}; expected codes from {allowed} (schemas/tables.py)")


def _check_counts(counts: Mapping[str, int | None]) -> None:
    unknown = sorted(set(counts) - set(COUNT_KEYS))
    if unknown:
        raise MitiError(f"unknown MITI count key(s) {unknown}; expected keys from {COUNT_KEYS}")
    for key, value in counts.items():
        if value is not None and (isinstance(value, bool) or not float(value).is_integer() or value < 0):
            raise MitiError(f"count {key}={value!r} is not a non-negative whole number")


def _check_globals(global_scores: Mapping[str, float | None]) -> None:
    unknown = sorted(set(global_scores) - set(GLOBAL_SCORES))
    if unknown:
        raise MitiError(f"unknown MITI global score(s) {unknown}; expected {GLOBAL_SCORES}")
    low, high = GLOBAL_RANGE
    for key, value in global_scores.items():
        if value is not None and not (low <= value <= high):
            raise MitiError(f"global score {key}={value!r} is outside MITI's {low}-{high} range")


def _total(counts: Mapping[str, int | None], keys: tuple[str, ...]) -> int | None:
    """The sum of counts over keys; None when any of them was not coded (absent or None)."""
    values = [counts.get(k) for k in keys]
    return None if any(v is None for v in values) else int(sum(values))


def _ratio(numerator: int | None, denominator: int | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None  # not coded, or nothing to divide by (a session without questions has no R:Q)
    return numerator / denominator


def _mean(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (a + b) / 2


def questions(counts: Mapping[str, int | None]) -> int | None:
    """All questions: the question count, or open + closed when only the subtypes were counted."""
    if counts.get("question") is not None:
        return int(counts["question"])
    return _total(counts, QUESTION_SUBTYPES)


def summary_scores(counts: Mapping[str, int | None],
                   global_scores: Mapping[str, float | None] | None = None) -> dict[str, float | None]:
    """MITI 4.2.1 summary scores from behavior counts (+ global scores), plus mia_share; None = not computable.

    A score is None when a code it needs was not coded (absent or None in `counts`/`global_scores`) or its
    denominator is zero. Absent is not zero: a coder that cannot see Confront must not report 0 confronts.
    """
    global_scores = dict(global_scores or {})
    _check_counts(counts)
    _check_globals(global_scores)
    reflections = _total(counts, ("simple_reflection", "complex_reflection"))
    adherent, non_adherent = _total(counts, MI_ADHERENT), _total(counts, MI_NON_ADHERENT)
    return {
        "technical": _mean(global_scores.get("cultivating_change_talk"), global_scores.get("softening_sustain_talk")),
        "relational": _mean(global_scores.get("partnership"), global_scores.get("empathy")),
        "reflection_to_question": _ratio(reflections, questions(counts)),
        "percent_complex_reflection": _ratio(counts.get("complex_reflection"), reflections),
        "total_mi_adherent": adherent,
        "total_mi_non_adherent": non_adherent,
        "mia_share": _ratio(adherent, None if adherent is None or non_adherent is None else adherent + non_adherent),
    }


def per_session(total: int | None, n_sessions: int) -> float | None:
    """A total's mean per session (MITI counts are per session); None when not coded or no session."""
    return None if total is None or n_sessions <= 0 else total / n_sessions


def grade(name: str, value: float | None) -> str | None:
    """'below_fair' | 'fair' | 'good' against MITI 4.2.1's thresholds; None if the value or a threshold is missing."""
    if name not in THRESHOLDS:
        raise MitiError(f"unknown summary score {name!r}; expected one of {SUMMARY_SCORES}")
    if value is None or THRESHOLDS[name] is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        raise MitiError(f"summary score {name} is NaN; pass None for a score that could not be computed")
    fair, good = THRESHOLDS[name]
    # scores are compared after rounding off float noise: (3.5 + 4.5) / 2 must reach 4.0
    value = round(value, 9)
    return "good" if value >= good else "fair" if value >= fair else "below_fair"


def grade_all(scores: Mapping[str, float | None]) -> dict[str, str | None]:
    """grade() for every summary score in `scores`."""
    return {name: grade(name, value) for name, value in scores.items()}
