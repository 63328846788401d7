"""Pandera (polars backend) models of the fidelity stages' tables: one definition per table.

The miti_coder stage writes ReferenceCounts; the judge_validation stage JudgeValidationCodes; the fidelity stage of
a model CodedReplies, JudgeCodes, JudgeGlobals, CtrsItems, SafetyVerdicts and Failures (its simulated sessions are
Dialogs/Turns). Codes come from MITI 4.2.1's vocabulary (fidelity.miti), scores stay within their scales.
"""

from typing import Optional

import pandera.polars as pa

from counseltune.instruments.ctrs import CTRS_ITEMS
from counseltune.instruments.miti import (
    COUNT_KEYS,
    GLOBAL_RANGE,
    GLOBAL_SCORES,
    GRADES,
    QUESTION_SUBTYPES,
    SUMMARY_SCORES,
    TOTALS,
)
from counseltune.schemas.tables import LANGUAGES, MI_BEHAVIORS, MI_CODES, VARIANTS

MITI_CODES = list(COUNT_KEYS)  # a behavior code, or a question subtype where the coder/judge splits questions
CODED_VARIANTS = [*VARIANTS, "reference"]  # the human reply of the same item is coded alongside
CTRS_RANGE = (0, 6)
REFLECTION_SUBTYPES = ["simple_reflection", "complex_reflection"]
FAILED_PARTS = ["judge_miti", "simulate", "ctrs", "safety"]
DIALOG_ID = r"^[a-z0-9_\-]+:\S+$"
_PROBABILITY = {"in_range": {"min_value": 0.0, "max_value": 1.0}}


class _Strict:
    strict = True
    coerce = True


class CodedReplies(pa.DataFrameModel):
    """fidelity/<model>/coded.parquet: every reply (and the human reply of its item) coded by the embedded coder."""

    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    turn_index: int = pa.Field(ge=0)
    source: str = pa.Field(str_length={"min_value": 1})
    language: str = pa.Field(isin=LANGUAGES)
    text: str = pa.Field()  # a reply may be empty
    mi_behavior: str = pa.Field(isin=MI_BEHAVIORS)
    mi_code: Optional[str] = pa.Field(nullable=True, isin=MI_CODES)
    miti_code: Optional[str] = pa.Field(nullable=True, isin=MITI_CODES)  # null: no MITI code (miti.UNMAPPABLE)
    p_question: float = pa.Field(**_PROBABILITY)
    p_reflection: float = pa.Field(**_PROBABILITY)
    p_therapist_input: float = pa.Field(**_PROBABILITY)
    p_other: float = pa.Field(**_PROBABILITY)
    question_subtype: Optional[str] = pa.Field(nullable=True, isin=list(QUESTION_SUBTYPES))
    p_open_question: Optional[float] = pa.Field(nullable=True, **_PROBABILITY)
    p_closed_question: Optional[float] = pa.Field(nullable=True, **_PROBABILITY)
    reflection_subtype: Optional[str] = pa.Field(nullable=True, isin=REFLECTION_SUBTYPES)
    p_simple_reflection: Optional[float] = pa.Field(nullable=True, **_PROBABILITY)
    p_complex_reflection: Optional[float] = pa.Field(nullable=True, **_PROBABILITY)
    variant: str = pa.Field(isin=CODED_VARIANTS)

    class Config(_Strict):
        unique = ["variant", "dialog_id", "turn_index"]


class JudgeCodes(pa.DataFrameModel):
    """fidelity/<model>/judge_codes.parquet: the LLM judge's MITI code of each model turn."""

    judge_model: str = pa.Field(str_length={"min_value": 1})
    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    turn_index: int = pa.Field(ge=0)
    miti_code: str = pa.Field(isin=MITI_CODES)
    variant: str = pa.Field(isin=list(VARIANTS))

    class Config(_Strict):
        unique = ["variant", "dialog_id", "turn_index"]


class JudgeGlobals(pa.DataFrameModel):
    """fidelity/<model>/judge_globals.parquet: the judge's MITI global scores (1-5) of each session."""

    judge_model: str = pa.Field(str_length={"min_value": 1})
    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    scale: str = pa.Field(isin=list(GLOBAL_SCORES))
    score: int = pa.Field(in_range={"min_value": GLOBAL_RANGE[0], "max_value": GLOBAL_RANGE[1]})
    justification: str = pa.Field()
    variant: str = pa.Field(isin=list(VARIANTS))

    class Config(_Strict):
        unique = ["variant", "dialog_id", "scale"]


class CtrsItems(pa.DataFrameModel):
    """fidelity/<model>/ctrs.parquet: the judge's CTRS item scores (0-6) of each simulated session."""

    judge_model: str = pa.Field(str_length={"min_value": 1})
    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    item: str = pa.Field(isin=list(CTRS_ITEMS))
    score: int = pa.Field(in_range={"min_value": CTRS_RANGE[0], "max_value": CTRS_RANGE[1]})
    justification: str = pa.Field()

    class Config(_Strict):
        unique = ["dialog_id", "item"]


class SafetyVerdicts(pa.DataFrameModel):
    """fidelity/<model>/safety.parquet: one row per crisis probe and variant; flags null when not rated."""

    model: str = pa.Field(str_length={"min_value": 1})
    probe_id: str = pa.Field(str_length={"min_value": 1})
    language: str = pa.Field(isin=LANGUAGES)
    category: str = pa.Field(str_length={"min_value": 1})
    reply: Optional[str] = pa.Field(nullable=True)  # null: the model did not answer (see failure)
    mentions_resource: Optional[bool] = pa.Field(nullable=True)
    acknowledges: Optional[bool] = pa.Field(nullable=True)
    assesses_risk: Optional[bool] = pa.Field(nullable=True)
    points_to_resources: Optional[bool] = pa.Field(nullable=True)
    avoids_encouraging_harm: Optional[bool] = pa.Field(nullable=True)
    safe: Optional[bool] = pa.Field(nullable=True)
    justification: Optional[str] = pa.Field(nullable=True)
    failure: Optional[str] = pa.Field(nullable=True, str_length={"min_value": 1})
    variant: str = pa.Field(isin=list(VARIANTS))

    class Config(_Strict):
        unique = ["variant", "probe_id"]


class Failures(pa.DataFrameModel):
    """fidelity/<model>/failures.parquet: every request of the stage that gave no usable answer, and why."""

    part: str = pa.Field(isin=FAILED_PARTS)
    variant: Optional[str] = pa.Field(nullable=True, isin=list(VARIANTS))
    key: str = pa.Field(str_length={"min_value": 1})  # the dialog, profile or probe it was about
    reason: str = pa.Field(str_length={"min_value": 1})
    detail: Optional[str] = pa.Field(nullable=True)

    class Config(_Strict):
        pass


class JudgeValidationCodes(pa.DataFrameModel):
    """judge_validation codes: AnnoMI's human code next to the judge's MITI code of the same utterance."""

    judge_model: str = pa.Field(str_length={"min_value": 1})
    dialog_id: str = pa.Field(str_matches=DIALOG_ID)
    turn_index: int = pa.Field(ge=0)
    mi_behavior: str = pa.Field(isin=MI_BEHAVIORS)
    mi_code: Optional[str] = pa.Field(nullable=True, isin=MI_CODES)
    miti_code: Optional[str] = pa.Field(nullable=True, isin=MITI_CODES)  # null: the judge coded no such turn

    class Config(_Strict):
        unique = ["dialog_id", "turn_index"]


def _reference_counts() -> type[pa.DataFrameModel]:
    """ReferenceCounts: its count and score columns follow miti's vocabulary, so they are built from it."""
    count = {"nullable": True, "ge": 0}  # null: a code this coding cannot give (miti.NOT_CODED_FROM_CORPUS)
    columns: dict[str, tuple[type, object]] = {
        "coding": (str, pa.Field(isin=["coder", "human"])),
        "mi_quality": (Optional[str], pa.Field(nullable=True, isin=["high", "low"])),
        "dialog_id": (str, pa.Field(str_matches=DIALOG_ID)),
        "n_dialogs": (int, pa.Field(ge=1)),
        "n_counselor_turns": (int, pa.Field(ge=0)),
        "n_coded": (int, pa.Field(ge=0)),
        "corpus_therapist_input": (int, pa.Field(ge=0)),
        "corpus_other": (int, pa.Field(ge=0)),
        **{k: (Optional[int], pa.Field(**count)) for k in COUNT_KEYS},
        **{s: (Optional[float], pa.Field(nullable=True, ge=0)) for s in SUMMARY_SCORES},
        **{f"{s}_grade": (Optional[str], pa.Field(nullable=True, isin=list(GRADES))) for s in SUMMARY_SCORES},
        **{f"{t}_per_session": (Optional[float], pa.Field(nullable=True, ge=0)) for t in TOTALS},
    }
    namespace = {"__annotations__": {name: kind for name, (kind, _) in columns.items()},
                 **{name: field for name, (_, field) in columns.items()},
                 "__doc__": "miti_coder reference.parquet: MITI counts, summary scores and grades per held-out AnnoMI "
                            "dialog, once from the embedded coder's codes and once from the human codes.",
                 "__module__": __name__,
                 "Config": type("Config", (_Strict,), {"unique": ["coding", "dialog_id"]})}
    return type("ReferenceCounts", (pa.DataFrameModel,), namespace)


ReferenceCounts = _reference_counts()
