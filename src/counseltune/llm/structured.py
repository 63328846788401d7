"""Ask an LLM for a JSON object that must match a JSON Schema; re-ask (bounded) when it does not.

Shared by every judge (MITI, CTRS, safety). All tasks go out in one `client.complete` call; the ones whose answer
fails validation are asked again in one more call per round, with the bad answer and a note about what was
wrong appended to the conversation. That note changes the request, so a re-ask never hits the cached bad answer,
while an unchanged re-run replays every round from the cache (the bad answer is cached too, so its note is the
same). A task still invalid after `max_reasks` re-asks, or one the client gave up on, is a failure: counted and
reported, never returned as data.

An answer cut by max_tokens (finish_reason "length") is one of those bad answers: the client hands it back
instead of retrying it as a transport fault (ChatRequest.caller_validates), so it costs one request, and it is
re-asked here with a note to answer shorter, at most `max_reasks` times. Every request a round sends (first
asks, re-asks, and the client's transport retries) is in the client's usage and priced there; the Outcome
carries what this call added to it (requests, paid attempts, cost).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from jsonschema import Draft202012Validator

from counseltune.llm import ChatRequest, Client, Failure, OutputSchema
from counseltune.llm.scrub import clip

# A semantic check beyond the schema (e.g. "every counselor turn coded once"): None when fine, else the problem.
Check = Callable[[dict], "str | None"]
MAX_ERRORS_IN_NOTE = 5
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

TRUNCATED_NOTE = {
    "en": "the answer was cut off at the length limit ({max_tokens} tokens); keep every justification short",
    "zh": "回答超过了长度上限（{max_tokens} 个 token）被截断；请把每条理由写得简短",
    "ko": "답변이 길이 제한({max_tokens} 토큰)에서 잘렸습니다; 모든 근거를 짧게 쓰세요",
}
REASK_NOTE = {
    "en": "Your answer was not valid: {errors}. Answer again with only the corrected JSON object.",
    "zh": "你的回答不符合要求：{errors}。请只输出修正后的 JSON 对象。",
    "ko": "답변이 형식에 맞지 않습니다: {errors}. 수정한 JSON 객체만 다시 출력하세요.",
}


@dataclass(frozen=True)
class Settings:
    """What shapes every judge request (all of it but max_reasks is part of the cache key)."""

    prompt_version: str
    seed: int = 0
    temperature: float = 0.0
    max_reasks: int = 2


@dataclass(frozen=True)
class Task:
    key: str                                  # the caller's id for the task (a dialog id, a probe id)
    messages: tuple[tuple[str, str], ...]
    schema: dict
    max_tokens: int
    language: str = "en"                      # of the re-ask note
    check: Check | None = None


@dataclass(frozen=True)
class Answer:
    key: str
    data: dict | None                         # the validated object; None for a failure
    attempts: int                             # requests made for this task (1 + re-asks)
    failure: str | None = None                # schema_invalid (schema or check) | not_json | truncated | client_<reason>
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None


@dataclass
class Outcome:
    answers: list[Answer]
    reasks: int = 0                           # re-asks sent (each one a request, cached or not)
    failures: dict[str, int] = field(default_factory=dict)
    truncated: int = 0                        # answers cut by max_tokens (each one re-asked or a failure)
    paid_attempts: int = 0                    # requests the client sent for this call (transport retries included)
    cache_hits: int = 0
    cost_usd: float = 0.0                     # what those attempts cost, as the client priced them

    @property
    def asks(self) -> int:
        """Requests made for the tasks: one first ask each, plus the re-asks."""
        return len(self.answers) + self.reasks

    def accounting(self) -> dict:
        return {"asks": self.asks, "reasks": self.reasks, "truncated": self.truncated,
                "paid_attempts": self.paid_attempts, "cache_hits": self.cache_hits, "cost_usd": round(self.cost_usd, 6)}

    @property
    def ok(self) -> list[Answer]:
        return [a for a in self.answers if a.ok]


def ask_json(client: Client, tasks: Sequence[Task], settings: Settings, desc: str = "judge") -> Outcome:
    """Answer every task (one complete() call per round), in task order.

    The task's schema goes with each request (structured outputs remotely, constrained decoding locally) and is
    still validated here: an endpoint may fall back to plain json_object, and the check sees beyond the schema.
    """
    if not tasks:
        return Outcome([])
    validators = {id(t.schema): Draft202012Validator(t.schema) for t in tasks}
    schemas = {id(t.schema): OutputSchema.of(settings.prompt_version, t.schema) for t in tasks}
    answers: list[Answer | None] = [None] * len(tasks)
    conversations = [list(t.messages) for t in tasks]
    open_tasks = list(range(len(tasks)))
    reasks = truncated = 0
    before = _spent(client)
    for round_ in range(settings.max_reasks + 1):
        requests = [_request(tasks[i], conversations[i], settings, schemas[id(tasks[i].schema)]) for i in open_tasks]
        results = client.complete(requests, desc=desc if round_ == 0 else f"{desc} re-ask {round_}")
        still_open = []
        for i, result in zip(open_tasks, results):
            task = tasks[i]
            if isinstance(result, Failure):  # the client already retried what can be retried
                answers[i] = Answer(task.key, None, round_ + 1, f"client_{result.reason}", result.detail)
                continue
            data, errors = _validate(result.text, validators[id(task.schema)], task.check)
            cut = result.finish_reason == "length"
            if cut and errors:  # a complete, valid object that just reached the limit is still an answer
                truncated += 1
                errors = [TRUNCATED_NOTE.get(task.language, TRUNCATED_NOTE["en"]).format(max_tokens=task.max_tokens)]
            if not errors:
                answers[i] = Answer(task.key, data, round_ + 1)
            elif round_ < settings.max_reasks:
                conversations[i] += [("assistant", result.text), ("user", _note(task.language, errors))]
                still_open.append(i)
            else:
                reason = "truncated" if cut else "not_json" if data is None else "schema_invalid"
                answers[i] = Answer(task.key, None, round_ + 1, reason, "; ".join(errors))
        reasks += len(still_open)
        open_tasks = still_open
        if not open_tasks:
            break
    final = [a for a in answers if a is not None]
    assert len(final) == len(tasks), "every task ends answered or failed"
    after = _spent(client)
    return Outcome(final, reasks, dict(Counter(a.failure for a in final if a.failure)), truncated,
                   paid_attempts=after[0] - before[0], cache_hits=after[1] - before[1], cost_usd=after[2] - before[2])


def _spent(client: Client) -> tuple[int, int, float]:
    usage = getattr(client, "usage", None)  # every real client has one; a bare test double may not
    return (usage.requests, usage.cache_hits, usage.cost_usd) if usage is not None else (0, 0, 0.0)


def failures_frame(outcome: Outcome, key: str = "dialog_id") -> pl.DataFrame:
    """One row per task with no usable answer: what was asked (key), why it failed, after how many requests."""
    rows = [{key: a.key, "reason": a.failure, "detail": a.detail, "attempts": a.attempts}
            for a in outcome.answers if not a.ok]
    return pl.DataFrame(rows, schema={key: pl.String, "reason": pl.String, "detail": pl.String, "attempts": pl.Int64})


def parse_object(text: str) -> dict | None:
    """The JSON object in a reply (a ```json fence around it is tolerated); None when there is none."""
    fenced = _FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _validate(text: str, validator: Draft202012Validator, check: Check | None) -> tuple[dict | None, list[str]]:
    data = parse_object(text)
    if data is None:
        return None, ["the reply is not a JSON object"]
    errors = [_describe(e) for e in sorted(validator.iter_errors(data), key=lambda e: list(e.path))]
    if not errors and check is not None:
        problem = check(data)
        errors = [problem] if problem else []
    return data, errors[:MAX_ERRORS_IN_NOTE]


def _describe(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {clip(error.message, 160)}"  # quotes the reply


def _note(language: str, errors: list[str]) -> str:
    return REASK_NOTE.get(language, REASK_NOTE["en"]).format(errors="; ".join(errors))


def _request(task: Task, conversation: list[tuple[str, str]], settings: Settings,
             schema: OutputSchema) -> ChatRequest:
    return ChatRequest(tuple(conversation), max_tokens=task.max_tokens, temperature=settings.temperature,
                       seed=settings.seed, prompt_version=settings.prompt_version, json_mode=True, schema=schema,
                       tag=task.key, caller_validates=True)
