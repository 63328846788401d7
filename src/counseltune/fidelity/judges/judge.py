"""MITI 4.2.1 by an LLM judge: one request per session codes every counselor utterance and gives the four globals.

All sessions go to the client in one complete() call (re-asks in one more call per round, see structured.py);
temperature 0, a fixed seed and PROMPT_VERSION make every request a pure function of the session, so the client's
cache answers an unchanged session for free and a changed one is asked again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from counseltune.llm import Client

from counseltune.llm.answer_bound import REMOTE, TokenCost, max_answer_tokens, token_cost
from counseltune.fidelity.judges.judge_prompts import MITI_SYSTEM, TRANSCRIPT_HEADER
from counseltune.instruments.miti import (
    BEHAVIOR_CODES,
    GLOBAL_RANGE,
    GLOBAL_SCORES,
    QUESTION_SUBTYPES,
    grade,
    summary_scores,
)
from counseltune.fidelity.judges.sessions import Session
from counseltune.llm.structured import Outcome, Settings, Task, ask_json, failures_frame

PROMPT_VERSION = "miti-judge-v2"   # bump whenever judge_prompts.MITI_SYSTEM or the schema changes
# The judge names question subtypes; MITI 4.2.1's own Question code is their sum (see miti.questions).
JUDGE_CODES = tuple(code for c in BEHAVIOR_CODES for code in (QUESTION_SUBTYPES if c == "question" else (c,)))
MAX_JUSTIFICATION_CHARS = 200   # one or two sentences; bounded so a whole answer fits the token cap


def miti_schema(counselor_turns: Sequence[int]) -> dict:
    """The session's answer shape: one code per counselor turn, keyed by its index (so every counselor turn is
    coded exactly once by construction, under constrained decoding and strict structured outputs alike)."""
    turns = [str(t) for t in counselor_turns]
    rated = {"type": "object", "additionalProperties": False, "required": ["score", "justification"],
             "properties": {"score": {"type": "integer", "minimum": GLOBAL_RANGE[0], "maximum": GLOBAL_RANGE[1]},
                            "justification": {"type": "string", "minLength": 1,
                                              "maxLength": MAX_JUSTIFICATION_CHARS}}}
    return {
        "type": "object", "additionalProperties": False, "required": ["codes", "globals"],
        "properties": {
            "codes": {"type": "object", "additionalProperties": False, "required": turns,
                      "properties": {t: {"enum": list(JUDGE_CODES)} for t in turns}},
            "globals": {"type": "object", "additionalProperties": False, "required": list(GLOBAL_SCORES),
                        "properties": {name: rated for name in GLOBAL_SCORES}},
        },
    }


def miti_task(session: Session, max_tokens_cap: int, cost: TokenCost = REMOTE) -> Task:
    messages = (("system", MITI_SYSTEM[session.language]),
                ("user", f"{TRANSCRIPT_HEADER[session.language]}\n{session.transcript()}"))
    schema = miti_schema(session.counselor_turns)
    # no more than the longest answer this session's schema allows (a short session asks for less)
    max_tokens = min(max_tokens_cap, max_answer_tokens(schema, cost))
    return Task(session.dialog_id, messages, schema, max_tokens, session.language)


@dataclass
class MitiJudgement:
    codes: pl.DataFrame       # judge_model, dialog_id, turn_index, miti_code
    globals: pl.DataFrame     # judge_model, dialog_id, scale, score, justification
    summary: pl.DataFrame     # judge_model, dialog_id, summary, value, grade (MITI 4.2.1 thresholds)
    failures: pl.DataFrame    # dialog_id, reason, detail, attempts: sessions with no usable judgement
    outcome: Outcome
    skipped: list[str]        # sessions without a counselor utterance: nothing to judge

    def report(self) -> dict:
        return {"sessions": len(self.outcome.answers) + len(self.skipped), "judged": len(self.outcome.ok),
                "failed": sum(self.outcome.failures.values()), "failures_by_reason": self.outcome.failures,
                "skipped_no_counselor_turn": len(self.skipped),
                **self.outcome.accounting()}


def judge_miti(client: Client, sessions: Sequence[Session], *, seed: int = 0, max_reasks: int = 2,
               max_tokens: int = 4096) -> MitiJudgement:
    """Code and rate every session with a counselor utterance; failures are reported, never coded."""
    judged = [s for s in sessions if s.counselor_turns]
    skipped = [s.dialog_id for s in sessions if not s.counselor_turns]
    settings = Settings(prompt_version=PROMPT_VERSION, seed=seed, max_reasks=max_reasks)
    outcome = ask_json(client, [miti_task(s, max_tokens, token_cost(client)) for s in judged], settings, desc="judge miti")
    codes, rated, summary = [], [], []
    for answer in outcome.ok:
        session_codes = {int(turn): code for turn, code in answer.data["codes"].items()}
        codes += [{"dialog_id": answer.key, "turn_index": t, "miti_code": c} for t, c in sorted(session_codes.items())]
        scores = {name: answer.data["globals"][name]["score"] for name in GLOBAL_SCORES}
        rated += [{"dialog_id": answer.key, "scale": name, "score": scores[name],
                   "justification": answer.data["globals"][name]["justification"]} for name in GLOBAL_SCORES]
        for name, value in summary_scores(behavior_counts(session_codes.values()), scores).items():
            summary.append({"dialog_id": answer.key, "summary": name, "value": value, "grade": grade(name, value)})
    judge = {"judge_model": client.model}
    return MitiJudgement(
        codes=_frame([judge | r for r in codes], {"turn_index": pl.Int64, "miti_code": pl.String}),
        globals=_frame([judge | r for r in rated], {"scale": pl.String, "score": pl.Int64, "justification": pl.String}),
        summary=_frame([judge | r for r in summary], {"summary": pl.String, "value": pl.Float64, "grade": pl.String}),
        failures=failures_frame(outcome), outcome=outcome, skipped=skipped)


def behavior_counts(codes) -> dict[str, int]:
    """Counts over every MITI count key (a judge sees every code, so an absent code is a true zero)."""
    counts = Counter(codes)
    result = {code: counts.get(code, 0) for code in JUDGE_CODES}
    result["question"] = sum(result[q] for q in QUESTION_SUBTYPES)
    return result


def _frame(rows: list[dict], columns: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"judge_model": pl.String, "dialog_id": pl.String, **columns})
