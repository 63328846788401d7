"""CTRS (Young & Beck's Cognitive Therapy Rating Scale) by an LLM judge: 11 items scored 0-6, total 0-66.

One request per session, all sessions in one complete() call, validated and re-asked by structured.py exactly as
the MITI judge is. The total is summed here from the items, never taken from the judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from counseltune.llm import Client

from counseltune.fidelity.judges.ctrs_prompts import ctrs_system
from counseltune.instruments.ctrs import CTRS_ITEMS
from counseltune.fidelity.judges.judge_prompts import TRANSCRIPT_HEADER
from counseltune.fidelity.judges.sessions import Session
from counseltune.llm.structured import Outcome, Settings, Task, ask_json, failures_frame

PROMPT_VERSION = "ctrs-judge-v3"   # bump whenever ctrs_prompts or the schema changes
ITEMS = tuple(CTRS_ITEMS)
ITEM_RANGE = (0, 6)
TOTAL_MAX = ITEM_RANGE[1] * len(ITEMS)   # 66
# The usual CTRS competence cut-off (e.g. Beck Institute certification): a total of 40 or more.
COMPETENCE_TOTAL = 40
# One or two sentences. Bounded so a whole answer fits the token cap: a model decoding under the schema may
# otherwise write every justification up to the bound (11 CTRS items x 600 chars ~ 1,300 tokens).
MAX_JUSTIFICATION_CHARS = 200


def ctrs_schema() -> dict:
    rated = {"type": "object", "additionalProperties": False, "required": ["score", "justification"],
             "properties": {"score": {"type": "integer", "minimum": ITEM_RANGE[0], "maximum": ITEM_RANGE[1]},
                            "justification": {"type": "string", "minLength": 1,
                                              "maxLength": MAX_JUSTIFICATION_CHARS}}}
    return {"type": "object", "additionalProperties": False, "required": ["items"],
            "properties": {"items": {"type": "object", "additionalProperties": False, "required": list(ITEMS),
                                     "properties": {item: rated for item in ITEMS}}}}


def ctrs_task(session: Session, max_tokens: int) -> Task:
    messages = (("system", ctrs_system(session.language)),
                ("user", f"{TRANSCRIPT_HEADER[session.language]}\n{session.transcript()}"))
    return Task(session.dialog_id, messages, ctrs_schema(), max_tokens, session.language)


@dataclass
class CtrsJudgement:
    items: pl.DataFrame       # judge_model, dialog_id, item, score, justification
    totals: pl.DataFrame      # judge_model, dialog_id, total, competent (total >= competence_total)
    failures: pl.DataFrame    # dialog_id, reason, detail, attempts
    outcome: Outcome
    skipped: list[str]        # sessions without a counselor utterance

    def report(self) -> dict:
        totals = self.totals["total"]
        return {"sessions": len(self.outcome.answers) + len(self.skipped), "judged": len(self.outcome.ok),
                "failed": sum(self.outcome.failures.values()), "failures_by_reason": self.outcome.failures,
                "skipped_no_counselor_turn": len(self.skipped),
                **self.outcome.accounting(),
                "mean_total": float(totals.mean()) if len(totals) else None,
                "mean_item": {item: float(v) for item, v in self.items.group_by("item").agg(pl.col("score").mean())
                              .sort("item").iter_rows()}}


def judge_ctrs(client: Client, sessions: Sequence[Session], *, seed: int = 0, max_reasks: int = 2,
               max_tokens: int = 1500, competence_total: int = COMPETENCE_TOTAL) -> CtrsJudgement:
    """Rate every session with a counselor utterance on the 11 CTRS items; failures are reported, never scored."""
    judged = [s for s in sessions if s.counselor_turns]
    settings = Settings(prompt_version=PROMPT_VERSION, seed=seed, max_reasks=max_reasks)
    outcome = ask_json(client, [ctrs_task(s, max_tokens) for s in judged], settings, desc="judge ctrs")
    items, totals = [], []
    for answer in outcome.ok:
        rated = answer.data["items"]
        items += [{"judge_model": client.model, "dialog_id": answer.key, "item": item, "score": rated[item]["score"],
                   "justification": rated[item]["justification"]} for item in ITEMS]
        total = sum(rated[item]["score"] for item in ITEMS)
        totals.append({"judge_model": client.model, "dialog_id": answer.key, "total": total,
                       "competent": total >= competence_total})
    return CtrsJudgement(
        items=pl.DataFrame(items, schema={"judge_model": pl.String, "dialog_id": pl.String, "item": pl.String,
                                          "score": pl.Int64, "justification": pl.String}),
        totals=pl.DataFrame(totals, schema={"judge_model": pl.String, "dialog_id": pl.String, "total": pl.Int64,
                                            "competent": pl.Boolean}),
        failures=failures_frame(outcome), outcome=outcome,
        skipped=[s.dialog_id for s in sessions if not s.counselor_turns])
