"""How far the LLM judge's MITI codes agree with human codes, per behavior: Cohen's kappa on utterance codes.

Each behavior is a yes/no decision per counselor utterance (is it a question? a complex reflection?), so one
kappa per behavior says where the judge can be trusted and where not. Only behaviors both codings can express
are compared: AnnoMI's human codes know questions (open/closed), reflections (simple/complex) and information
giving; they have no Affirm, Seeking Collaboration, Emphasizing Autonomy, Persuade or Confront (miti.UNMAPPABLE),
so the judge's counts of those, and the totals built on them, stay unvalidated. An utterance whose human code
cannot answer the question (a reflection without its subtype; negotiation or options, which MITI may code as
Giving Information) is left out of that behavior's comparison, never guessed.
"""

from __future__ import annotations

import polars as pl

from counseltune.fidelity.embedded_coder.agreement import agreement_scores

# behavior -> the judge's codes that mean it (judge.JUDGE_CODES names question subtypes, never a bare question)
JUDGE_CODES_OF: dict[str, tuple[str, ...]] = {
    "question": ("open_question", "closed_question"),
    "open_question": ("open_question",),
    "closed_question": ("closed_question",),
    "reflection": ("simple_reflection", "complex_reflection"),
    "simple_reflection": ("simple_reflection",),
    "complex_reflection": ("complex_reflection",),
    "giving_information": ("giving_information",),
}
BEHAVIORS = tuple(JUDGE_CODES_OF)
# human corpus class -> the behaviors' parent class: a subtype is only known inside its own class
_SUBTYPE_OF = {"open_question": "question", "closed_question": "question",
               "simple_reflection": "reflection", "complex_reflection": "reflection"}
# AnnoMI therapist-input subtypes MITI may code as Giving Information: no yes/no answer from the human code
_MAYBE_INFORMATION = ("negotiation", "options")
LABELS = ("no", "yes")
GLOBALS_NOT_MEASURED = ("AnnoMI has no human MITI global scores, so the judge's global scores (and technical and "
                        "relational, built on them) have no agreement measured")
NOT_COMPARED = ("affirm", "seeking_collaboration", "emphasizing_autonomy", "persuade", "persuade_with_permission",
                "confront")


def human_indicator(behavior: str, mi_behavior: str | None, mi_code: str | None) -> bool | None:
    """Is this human-coded utterance an instance of `behavior`? None when its code cannot tell."""
    if mi_behavior is None:
        return None
    if behavior in ("question", "reflection"):
        return mi_behavior == behavior
    if behavior in _SUBTYPE_OF:
        parent = _SUBTYPE_OF[behavior]
        if mi_behavior != parent:
            return False
        return None if mi_code is None else mi_code == behavior
    if behavior == "giving_information":
        if mi_behavior != "therapist_input":
            return False
        if mi_code is None or mi_code in _MAYBE_INFORMATION:
            return None
        return mi_code == "information"
    raise ValueError(f"unknown behavior {behavior!r}; expected one of {BEHAVIORS}")


def paired_codes(human: pl.DataFrame, judged: pl.DataFrame) -> pl.DataFrame:
    """Human-coded counselor turns joined with the judge's code of the same turn (null where the judge gave none).

    human: a Turns table (dialog_id, turn_index, role, mi_behavior, mi_code); judged: MitiJudgement.codes.
    """
    counselor = human.filter((pl.col("role") == "counselor") & pl.col("mi_behavior").is_not_null())
    return (counselor.select("dialog_id", "turn_index", "mi_behavior", "mi_code")
            .join(judged.select("dialog_id", "turn_index", "miti_code"), on=["dialog_id", "turn_index"], how="left")
            .sort("dialog_id", "turn_index"))


def behavior_agreement(pairs: pl.DataFrame) -> dict[str, dict]:
    """behavior -> n, kappa, accuracy, human_count, judge_count, confusion (rows human no/yes, columns judge no/yes).

    pairs: paired_codes() output; turns the judge did not code (a failed session) are not compared.
    """
    judged = pairs.filter(pl.col("miti_code").is_not_null())
    out = {}
    for behavior, codes in JUDGE_CODES_OF.items():
        human, judge = [], []
        for mi_behavior, mi_code, code in judged.select("mi_behavior", "mi_code", "miti_code").iter_rows():
            said = human_indicator(behavior, mi_behavior, mi_code)
            if said is not None:
                human.append(LABELS[said])
                judge.append(LABELS[code in codes])
        scores = agreement_scores(human, judge, LABELS)
        out[behavior] = {"n": scores["n"], "kappa": scores["kappa"], "accuracy": scores["accuracy"],
                         "human_count": human.count("yes"), "judge_count": judge.count("yes"),
                         "confusion": scores["confusion"]}
    return out
