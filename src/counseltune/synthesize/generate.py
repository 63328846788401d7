"""The four generators and the lockstep loop that drives them.

A turn-by-turn generator asks each turn as JSON of a bounded per-turn schema (turn_schema.py): the planned
code, talk type or CBT stage and one utterance that cannot hold a speaker label or run past max_tokens.
Every session is planned up front (turn count, MI codes, client talk types, CBT stages) from its own
seeded rng, so a session's plan does not depend on how many others run beside it. Then all sessions
advance together: each round builds one ChatRequest per active session and makes ONE client.complete
call, so a batched local backend and an async remote backend both see the whole round at once. A Failure
or an unusable reply ends that session; it is reported (quarantined), never written as data.
"""

from __future__ import annotations

import dataclasses

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from counseltune.errors import CounseltuneError
from counseltune.llm.scrub import clip
from counseltune.llm.types import ChatRequest, Client, Failure, OutputSchema, Reply
from counseltune.synthesize import prompts
from counseltune.synthesize.codes import QUESTION_CODES, REFLECTION_CODES
from counseltune.synthesize.parse import clean_reply, last_complete_sentences, parse_transcript
from counseltune.synthesize.planner import Planner
from counseltune.synthesize.seeds import Seed
from counseltune.synthesize.turn_schema import UTTERANCE, TurnError, read_turn, turn_schema
from counseltune.text import normalize_text

SOURCE_PREFIX = "synthetic"


class GenerationError(CounseltuneError, RuntimeError):
    """The generator cannot run (unknown name, missing planner, a client that broke its contract)."""


@dataclass(frozen=True)
class Settings:
    """One generator's params (synthesize.generators.<name>), with defaults."""

    method: str = "MI"
    language: str = prompts.DEFAULT_LANGUAGE
    turns: tuple[int, int] = (6, 10)      # utterances per session, inclusive; even counts end on the counselor
    max_tokens: int = 200                 # per turn request (a whole-session request gets session_max_tokens)
    session_max_tokens: int = 1500
    temperature: float = 0.7
    top_p: float = 0.95
    repetition_penalty: float = 1.0       # local decoding only (HF's, over prompt and reply): keeps a small model from echoing
    profile_chars: int = 600              # how much of the seed goes into a prompt
    on_truncated: str = "trim"            # an unstructured reply (cbt_answer) that hits max_tokens: trim | quarantine

    @classmethod
    def from_params(cls, spec: dict[str, Any]) -> Settings:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise GenerationError(f"unknown generator settings {sorted(unknown)}: expected {sorted(cls.__dataclass_fields__)}")
        known = dict(spec)
        if "turns" in known:
            lo, hi = known["turns"]
            if not 1 <= lo <= hi:
                raise GenerationError(f"turns must be [min, max] with 1 <= min <= max, got {known['turns']}")
            known["turns"] = (int(lo), int(hi))
        return cls(**known)


@dataclass(frozen=True)
class Step:
    """One request's worth of work: a client or counselor turn, or a whole session."""

    role: str                    # client | counselor | session
    code: str | None = None      # planned MI code (counselor)
    talk: str | None = None      # planned client talk type (client)
    stage: str | None = None     # CBT stage (counselor)
    n_turns: int | None = None   # whole-session requests: how many utterances to ask for

    def label(self) -> str:
        detail = self.code or self.talk or self.stage or (str(self.n_turns) if self.n_turns else "")
        return f"{self.role}:{detail}" if detail else self.role


@dataclass
class Turn:
    role: str
    text: str                    # normalized
    text_raw: str                # the model's reply as returned
    code: str | None = None
    talk: str | None = None
    stage: str | None = None


@dataclass
class Session:
    dialog_id: str
    generator: str
    index: int
    seed: Seed
    request_seed: int
    steps: list[Step]
    turns: list[Turn] = field(default_factory=list)
    cursor: int = 0                               # steps done
    failure: tuple[str, str] | None = None        # (reason, detail) once the session ended early
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.failure is None and self.cursor < len(self.steps)

    def fail(self, reason: str, detail: str) -> None:
        self.failure = (reason, detail)

    def history(self) -> list[tuple[str, str]]:
        return [(t.role, t.text) for t in self.turns]


@dataclass
class Generation:
    sessions: list[Session]
    rounds: int                                   # client.complete calls made


class Generator(Protocol):
    name: str
    prompt_versions: tuple[str, ...]

    def plan(self, seed: Seed, rng: np.random.Generator) -> tuple[list[Turn], list[Step]]: ...
    def messages(self, session: Session, step: Step) -> tuple[tuple[str, str], ...]: ...
    def prompt_version(self, step: Step) -> str: ...
    def schema(self, step: Step) -> OutputSchema | None: ...
    def apply(self, session: Session, step: Step, reply: Reply) -> None: ...


# ---- generators ---------------------------------------------------------------------------------------

class _TurnByTurn:
    """Shared by the turn-level generators: a JSON reply of the turn's schema becomes one turn of the planned role."""

    settings: Settings

    def schema(self, step: Step) -> OutputSchema:
        label = ("code", step.code) if step.code else ("talk", step.talk) if step.talk else \
            ("stage", step.stage) if step.stage else None
        ending = "question" if step.code in QUESTION_CODES else "statement" if step.code in REFLECTION_CODES else None
        name = f"{self.name}_{step.role}_turn"  # type: ignore[attr-defined]
        return turn_schema(name, self.settings.language, self.settings.max_tokens, label, ending)

    def apply(self, session: Session, step: Step, reply: Reply) -> None:
        try:
            fields = read_turn(reply.text, self.schema(step))
        except TurnError as err:  # only from an endpoint that ignored the schema: the session ends, reported
            session.fail("invalid_turn", f"the {step.role} reply at step {session.cursor} is not a turn of its schema "
                                         f"({err}): {clip(reply.text, 200)!r}")
            return
        text, cut = clean_reply(fields[UTTERANCE], step.role)
        normalized = normalize_text(text)
        if not normalized:
            session.fail("empty_reply", f"the {step.role} reply at step {session.cursor} was empty after cleaning: {reply.text!r}")
            return
        if cut:
            session.meta["replies_cut"] = session.meta.get("replies_cut", 0) + 1
        session.turns.append(Turn(step.role, normalized, reply.text, step.code, step.talk, step.stage))

    def _fields(self, session: Session) -> dict[str, Any]:
        language = self.settings.language
        topic = session.seed.topic or prompts.NO_TOPIC[language]
        return {"language": language, "profile": session.seed.profile(self.settings.profile_chars), "topic": topic,
                "history": session.history()}


class MiPlanned(_TurnByTurn):
    """KMI-style: the planner picks each counselor code and client talk type; one request writes one turn."""

    name = "mi_planned"
    prompt_versions = (prompts.MI_COUNSELOR_TURN.prompt_version, prompts.CLIENT_TURN.prompt_version)

    def __init__(self, settings: Settings, planner: Planner):
        self.settings, self.planner = settings, planner

    def plan(self, seed: Seed, rng: np.random.Generator) -> tuple[list[Turn], list[Step]]:
        n = session_length(rng, *self.settings.turns)
        return [], [Step(p.role, code=p.code, talk=p.talk) for p in self.planner.sample(n, rng, first_role="client")]

    def messages(self, session: Session, step: Step):
        if step.role == "client":
            return prompts.client_turn(**self._fields(session), talk=step.talk)
        return prompts.mi_counselor_turn(**self._fields(session), code=step.code)

    def prompt_version(self, step: Step) -> str:
        return self.prompt_versions[0] if step.role == "counselor" else self.prompt_versions[1]


class CbtSession(_TurnByTurn):
    """A CBT session turn by turn; each counselor request names the current stage of the session structure."""

    name = "cbt_session"
    prompt_versions = (prompts.CBT_COUNSELOR_TURN.prompt_version, prompts.CLIENT_TURN.prompt_version)

    def __init__(self, settings: Settings):
        self.settings = settings

    def plan(self, seed: Seed, rng: np.random.Generator) -> tuple[list[Turn], list[Step]]:
        n = session_length(rng, *self.settings.turns)
        stages = iter(prompts.cbt_stage_schedule(n // 2))
        return [], [Step("client") if i % 2 == 0 else Step("counselor", stage=next(stages)) for i in range(n)]

    def messages(self, session: Session, step: Step):
        if step.role == "client":
            return prompts.client_turn(**self._fields(session))
        return prompts.cbt_counselor_turn(**self._fields(session), stage=step.stage)

    def prompt_version(self, step: Step) -> str:
        return self.prompt_versions[0] if step.role == "counselor" else self.prompt_versions[1]


class MiPlain:
    """The study's plain prompting: one request writes the whole MI dialog, parsed back into turns."""

    name = "mi_plain"
    prompt_versions = (prompts.MI_PLAIN_SESSION.prompt_version,)

    def __init__(self, settings: Settings):
        self.settings = settings

    def plan(self, seed: Seed, rng: np.random.Generator) -> tuple[list[Turn], list[Step]]:
        return [], [Step("session", n_turns=session_length(rng, *self.settings.turns))]

    def messages(self, session: Session, step: Step):
        language = self.settings.language
        return prompts.mi_plain_session(language, session.seed.profile(self.settings.profile_chars),
                                        session.seed.topic or prompts.NO_TOPIC[language], step.n_turns)

    def prompt_version(self, step: Step) -> str:
        return self.prompt_versions[0]

    def schema(self, step: Step) -> None:
        return None  # a whole transcript in the study's plain format

    def apply(self, session: Session, step: Step, reply: Reply) -> None:
        parsed = parse_transcript(reply.text)
        turns = [Turn(role, normalize_text(text), text) for role, text in parsed.turns]
        turns = [t for t in turns if t.text]
        if not turns:
            session.fail("unparseable_transcript", f"no speaker-prefixed line in the reply: {clip(reply.text, 200)!r}")
            return
        if parsed.preamble:
            session.meta["preamble"] = "\n".join(parsed.preamble)
        session.turns.extend(turns)


class CbtAnswer:
    """CBT-LLM style: the seed's client question and one CBT-structured answer."""

    name = "cbt_answer"
    prompt_versions = (prompts.CBT_ANSWER.prompt_version,)

    def __init__(self, settings: Settings):
        self.settings = settings

    def plan(self, seed: Seed, rng: np.random.Generator) -> tuple[list[Turn], list[Step]]:
        question = normalize_text(seed.question)
        return [Turn("client", question, seed.question)], [Step("counselor", stage="answer")]

    def messages(self, session: Session, step: Step):
        return prompts.cbt_answer(self.settings.language, session.turns[0].text)

    def prompt_version(self, step: Step) -> str:
        return self.prompt_versions[0]

    def schema(self, step: Step) -> None:
        return None  # paragraphs of prose, as CBT-LLM's answers

    def apply(self, session: Session, step: Step, reply: Reply) -> None:
        text, _ = clean_reply(reply.text, "counselor")
        normalized = normalize_text(text)
        if not normalized:
            session.fail("empty_reply", f"the answer was empty after cleaning: {reply.text!r}")
            return
        session.turns.append(Turn("counselor", normalized, reply.text, stage="answer"))


GENERATORS = {"mi_planned": MiPlanned, "mi_plain": MiPlain, "cbt_session": CbtSession, "cbt_answer": CbtAnswer}
NEEDS_PLANNER = frozenset({"mi_planned"})


def make_generator(name: str, settings: Settings, planner: Planner | None = None) -> Generator:
    if name not in GENERATORS:
        raise GenerationError(f"unknown generator {name!r}: expected one of {sorted(GENERATORS)}")
    if name in NEEDS_PLANNER:
        if planner is None:
            raise GenerationError(f"generator {name!r} needs a fitted planner")
        return GENERATORS[name](settings, planner)
    return GENERATORS[name](settings)


# ---- the lockstep loop ----------------------------------------------------------------------------------

def generate(generator: Generator, seeds: Sequence[Seed], client: Client, seed: int) -> Generation:
    """Plan one session per seed, then advance all of them together; one complete() call per round."""
    sessions = [_start(generator, s, i, seed) for i, s in enumerate(seeds)]
    rounds = 0
    while active := [s for s in sessions if s.active]:
        steps = [s.steps[s.cursor] for s in active]
        requests = [_request(generator, s, step) for s, step in zip(active, steps)]
        replies = client.complete(requests, desc=f"{generator.name} round {rounds + 1}")
        if len(replies) != len(requests):
            raise GenerationError(f"client returned {len(replies)} replies for {len(requests)} requests")
        rounds += 1
        for session, step, reply in zip(active, steps, replies):
            session.cursor += 1
            _receive(generator, session, step, reply)
    return Generation(sessions, rounds)


def _start(generator: Generator, seed_material: Seed, index: int, seed: int) -> Session:
    # a per-session SeedSequence: the plan and the request seed depend on (seed, index) only
    sequence = np.random.SeedSequence([seed, index])
    rng = np.random.default_rng(sequence)
    request_seed = int(sequence.generate_state(1)[0] & 0x7FFFFFFF)
    turns, steps = generator.plan(seed_material, rng)
    return Session(
        dialog_id=f"{SOURCE_PREFIX}:{generator.name}-{seed}-{index:05d}", generator=generator.name, index=index,
        seed=seed_material, request_seed=request_seed, steps=steps, turns=turns,
    )


def _request(generator: Generator, session: Session, step: Step) -> ChatRequest:
    settings: Settings = generator.settings  # type: ignore[attr-defined]
    max_tokens = settings.session_max_tokens if step.role == "session" else settings.max_tokens
    return ChatRequest(
        messages=generator.messages(session, step), max_tokens=max_tokens, temperature=settings.temperature,
        top_p=settings.top_p, seed=session.request_seed, prompt_version=generator.prompt_version(step),
        schema=generator.schema(step), repetition_penalty=settings.repetition_penalty,
        tag=f"synthesize:{generator.name}",
    )


def _receive(generator: Generator, session: Session, step: Step, reply: Reply | Failure) -> None:
    if isinstance(reply, Failure):
        session.fail(f"llm_{slug(reply.reason)}",
                     f"step {session.cursor} ({step.label()}) failed after {reply.attempts} attempts: {reply.detail}")
        return
    usage = session.meta.setdefault("usage", {"tokens_in": 0, "tokens_out": 0, "cached": 0})
    usage["tokens_in"] += reply.tokens_in
    usage["tokens_out"] += reply.tokens_out
    usage["cached"] += int(reply.cached)
    if reply.finish_reason == "length":
        # An unstructured reply cut by max_tokens keeps its complete sentences when the generator allows it (a small
        # model rarely stops by itself); a cut JSON turn, a whole-session transcript, or nothing complete to keep,
        # ends the session.
        structured = generator.schema(step) is not None
        trimmed = last_complete_sentences(reply.text) if step.role != "session" and not structured else None
        if generator.settings.on_truncated != "trim" or not trimmed:  # type: ignore[attr-defined]
            session.fail("truncated_reply", f"step {session.cursor} ({step.label()}) hit max_tokens: "
                                            f"{clip(reply.text, 120, keep='end')!r}")
            return
        session.meta["replies_trimmed"] = session.meta.get("replies_trimmed", 0) + 1
        reply = dataclasses.replace(reply, text=trimmed)
    generator.apply(session, step, reply)


def session_length(rng: np.random.Generator, low: int, high: int) -> int:
    """A turn count in [low, high], made even where the range allows, so the session ends on the counselor."""
    n = int(rng.integers(low, high + 1))
    if n % 2:
        n = n + 1 if n + 1 <= high else n - 1 if n - 1 >= low else n
    return n


def slug(reason: str) -> str:
    """A Failure reason as a quarantine reason (lowercase letters, digits and underscores)."""
    return re.sub(r"[^a-z0-9_]+", "_", reason.lower()).strip("_") or "unknown"
