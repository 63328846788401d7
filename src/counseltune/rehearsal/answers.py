"""What the loopback API answers: the shape each request asks for, as a pure function of the request body.

The kind of request is read from the project's own prompt builders (imported, so a reworded prompt is still
recognised): a JSON Schema (`response_format` json_schema) gets a schema-valid instance; json_object gets the
object a known judge prompt describes (or the keys the prompt names); free text gets a whole MI dialog for
synthesis' mi_plain prompt, one utterance for the turn-level synthesis prompts and for fidelity's simulated
client (who ends the session with END_MARKER now and then), and a counselor reply otherwise. Every choice is
drawn from an rng seeded by the body's hash, so an unchanged request always gets the same answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from counseltune.fidelity.simulated_client.client_prompts import END_MARKER, client_system
from counseltune.fidelity.judges.ctrs import ctrs_schema
from counseltune.fidelity.judges.ctrs_prompts import ctrs_system
from counseltune.fidelity.judges.judge import miti_schema
from counseltune.fidelity.judges.judge_prompts import MITI_SYSTEM
from counseltune.fidelity.crisis_safety.safety import safety_schema
from counseltune.fidelity.crisis_safety.safety_prompts import SAFETY_SYSTEM
from counseltune.synthesize import prompts
from counseltune.synthesize.codes import CODE_DESCRIPTIONS, QUESTION_CODES, REFLECTION_CODES

from .phrases import JOIN, PHRASES
from .schema_instance import valid_instance

LANGUAGES = ("zh", "en", "ko")
TAIL_SHARE = 0.3            # utterances that add a second, shorter sentence
# A simulated client ends the session (END_MARKER) from its 3rd reply on, more likely with each: about half of
# 6-round sessions run their rounds out, as a real role-playing model's mostly do.
END_AFTER_REPLIES, END_CHANCE_PER_REPLY, MAX_END_CHANCE = 2, 0.1, 0.5
SHORT_CHARS = 16            # strings in a terse answer (one that would not fit max_tokens otherwise)
_TURN_LINE = re.compile(r"^\[(\d+)\] [^:\n]+: ?(.*)$", re.MULTILINE)
_JSON_KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_]{0,40})"\s*:')


@dataclass(frozen=True)
class Answer:
    kind: str            # what was asked: json_schema, json_object, mi_plain_session, simulated_client, ...
    content: str
    finish_reason: str   # stop, or length when the answer was cut at max_tokens
    completion_tokens: int


def answer(body: dict) -> Answer:
    """The reply to one chat-completions body (validated by the caller: messages is a list of role/content)."""
    messages = [(m["role"], m["content"]) for m in body["messages"]]
    rng = random.Random(body_hash(body))
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 4096
    fmt = (body.get("response_format") or {}).get("type")
    if fmt not in ("json_schema", "json_object"):
        kind, text = _free_text(messages, rng)
        return _capped(kind, text, max_tokens)
    schema = (body["response_format"].get("json_schema") or {}).get("schema") if fmt == "json_schema" else None
    seed = rng.random()

    def write(terse: bool) -> str:
        if schema is not None:
            return _structured(schema, messages, random.Random(seed), terse)
        return _json_object(messages, random.Random(seed), terse)

    content = write(terse=False)
    if api_tokens(content) > max_tokens:
        content = write(terse=True)  # a model asked for little writes short justifications
    return _capped(fmt, content, max_tokens)


def body_hash(body: dict) -> str:
    """The request's identity: what the log records and what seeds its answer."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def api_tokens(text: str) -> int:
    """A GPT-4-like token count without a tokenizer: about 4 ASCII characters a token, one a Han/Hangul character.
    Never above the client's own worst-case estimate (llm/usage.py), so a reservation always covers the charge."""
    ascii_chars = sum(c.isascii() for c in text)
    return math.ceil(ascii_chars / 4) + len(text) - ascii_chars


def prompt_tokens(body: dict) -> int:
    return sum(api_tokens(str(m.get("content") or "")) + 4 for m in body["messages"])  # 4: a message's framing


def _capped(kind: str, content: str, max_tokens: int) -> Answer:
    tokens = api_tokens(content)
    if tokens <= max_tokens:
        return Answer(kind, content, "stop", tokens)
    while api_tokens(content) > max_tokens:  # cut at the cap, as a real endpoint does
        content = content[: max(0, len(content) - max(1, (api_tokens(content) - max_tokens)))]
    return Answer(kind, content, "length", api_tokens(content))


# ---- language and prompt recognition --------------------------------------------------------------------

def language_of(text: str) -> str:
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    hangul = len(re.findall(r"[\uac00-\ud7a3]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if han >= max(hangul, latin * 0.3, 1) else "ko" if hangul >= max(latin * 0.3, 1) else "en"


@lru_cache(maxsize=1)
def _synthesis_systems() -> dict[str, tuple[prompts.Template, str]]:
    return {t.system[lang]: (t, lang) for t in prompts.TEMPLATES.values() for lang in LANGUAGES}


@lru_cache(maxsize=1)
def _simulated_client_frames() -> list[tuple[str, str, str]]:
    """(language, prefix, suffix) of the simulated client's system prompt around its intake and attitude."""
    frames = []
    for lang in LANGUAGES:
        text = client_system(lang, "\x00", "positive", "\x01")
        prefix, rest = text.split("\x00")
        frames.append((lang, prefix, rest.split("\x01")[1]))
    return frames


@lru_cache(maxsize=None)
def _template_regex(template: str) -> re.Pattern:
    parts = []
    for literal, field_name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field_name is not None:
            parts.append(f"(?P<{field_name}>.*?)")
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _fields(template: str, text: str) -> dict[str, str]:
    match = _template_regex(template).match(text)
    return match.groupdict() if match else {}


@lru_cache(maxsize=1)
def _judge_systems() -> dict[str, tuple[str, str]]:
    systems = {}
    for lang in LANGUAGES:
        systems |= {MITI_SYSTEM[lang]: ("miti", lang), SAFETY_SYSTEM[lang]: ("safety", lang),
                    ctrs_system(lang): ("ctrs", lang)}
    return systems


def _judge(messages: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """(judge, language) when the system prompt is one of the project's judges."""
    return _judge_systems().get(next((c for r, c in messages if r == "system"), ""))


# ---- structured answers --------------------------------------------------------------------------------

def _structured(schema: dict, messages: Sequence[tuple[str, str]], rng: random.Random, terse: bool) -> str:
    judge = _judge(messages)
    turn = _synthesis_turn(messages, rng)   # a turn-level synthesis request: its utterance as the strings
    lang = judge[1] if judge else turn[0] if turn else language_of(" ".join(c for _, c in messages))
    utterances = {m.group(1): m.group(2) for _, c in messages for m in _TURN_LINE.finditer(c)}

    def text(name: str, lo: int, hi: int, r: random.Random) -> str:
        if turn is not None:
            return _fit(turn[1], lang, lo, hi)
        return _sentences(lang, lo, min(hi, SHORT_CHARS) if terse else hi, r)

    def pick(name: str, options: Sequence[Any], r: random.Random) -> Any:
        return _code_for(utterances.get(name), options, r)

    return json.dumps(valid_instance(schema, rng, text=text, pick=pick), ensure_ascii=False)


def _json_object(messages: Sequence[tuple[str, str]], rng: random.Random, terse: bool) -> str:
    """The object a known judge prompt describes (its own schema), else one with the keys the prompt names."""
    judge = _judge(messages)
    if judge is not None:
        name, _ = judge
        if name == "miti":
            transcript = next((c for r, c in messages if r == "user"), "")
            counselor = [int(m.group(1)) for m in _TURN_LINE.finditer(transcript)
                         if re.match(r"\[\d+\] (Counselor|咨询师|상담자):", m.group(0))]
            schema = miti_schema(counselor)
        else:
            schema = ctrs_schema() if name == "ctrs" else safety_schema()
        return _structured(schema, messages, rng, terse)
    lang = language_of(" ".join(c for _, c in messages))
    keys = list(dict.fromkeys(k for _, c in messages for k in _JSON_KEY.findall(c))) or ["reply"]
    return json.dumps({k: _sentences(lang, 1, SHORT_CHARS if terse else 80, rng) for k in keys}, ensure_ascii=False)


def _synthesis_turn(messages: Sequence[tuple[str, str]], rng: random.Random) -> tuple[str, str] | None:
    """(language, utterance) for a synthesis prompt asked as JSON (turn_schema.py's shape)."""
    system = next((c for r, c in messages if r == "system"), "")
    known = _synthesis_systems().get(system)
    if known is None:
        return None
    template, lang = known
    user = next((c for r, c in messages if r == "user"), "")
    return lang, _synthesis(template.name, lang, _fields(template.user[lang], user), rng)


def _fit(text: str, lang: str, lo: int, hi: int) -> str:
    """The text within lo..hi characters: cut after its last sentence end that fits, padded from the bank if short."""
    if len(text) > hi:
        head = text[:hi]
        cut = max(head.rfind(p) for p in "。！？.!?")
        text = head[: cut + 1] if cut + 1 >= max(lo, 1) else head
    return text if len(text) >= lo else _sentences(lang, lo, hi, random.Random(text))


def _code_for(utterance: str | None, options: Sequence[Any], rng: random.Random) -> Any:
    """A plausible code for a coded utterance: a question code for a question, else a reflection-like one."""
    options = list(options)
    if utterance is not None:
        asked = "?" in utterance or "？" in utterance
        fitting = ([o for o in options if o in QUESTION_CODES] if asked else
                   [o for o in options if o in REFLECTION_CODES or o in ("affirm", "giving_information")])
        if fitting:
            return rng.choice(fitting)
    return rng.choice(options)


def _sentences(lang: str, lo: int, hi: int, rng: random.Random) -> str:
    """Judge-like sentences in the language, between lo and hi characters."""
    bank = PHRASES[lang]["judge"]
    text = rng.choice(bank)
    while len(text) < lo:
        text += JOIN[lang] + rng.choice(bank)
    if len(text) > hi:
        text = text[:hi]
        cut = max(text.rfind(p) for p in "，。,.;； ")
        if cut + 1 >= max(lo, 1):
            text = text[: cut + 1].rstrip()
    return text if len(text) >= lo else text + "." * (lo - len(text))


# ---- free text ------------------------------------------------------------------------------------------

def _free_text(messages: Sequence[tuple[str, str]], rng: random.Random) -> tuple[str, str]:
    system = next((c for r, c in messages if r == "system"), "")
    user = next((c for r, c in messages if r == "user"), "")
    known = _synthesis_systems().get(system)
    if known is not None:
        template, lang = known
        fields = _fields(template.user[lang], user)
        return template.name, _synthesis(template.name, lang, fields, rng)
    for lang, prefix, suffix in _simulated_client_frames():
        if system.startswith(prefix) and system.endswith(suffix):
            return "simulated_client", _simulated_client(lang, system, messages, rng)
    lang = language_of(" ".join(c for r, c in messages if r != "system") or system)
    return "chat", _utterance(lang, "counselor", rng)


def _synthesis(name: str, lang: str, fields: dict[str, str], rng: random.Random) -> str:
    if name == prompts.MI_PLAIN_SESSION.name:
        n_turns = int(fields["n_turns"]) if fields.get("n_turns", "").isdigit() else rng.randint(8, 12)
        topic = fields.get("topic", "")
        turns = dialog(lang, n_turns, "" if topic == prompts.NO_TOPIC[lang] else topic, rng)
        speakers, colon = prompts.SPEAKERS[lang], prompts.COLON[lang]
        return "\n".join(f"{speakers[role]}{colon}{text}" for role, text in turns)
    if name == prompts.CBT_ANSWER.name:
        bank = PHRASES[lang]
        middle = sorted(rng.sample(range(len(bank["cbt"])), 3))
        parts = [rng.choice(bank["counselor_reflection"]), *(bank["cbt"][i] for i in middle),
                 rng.choice(bank["counselor_affirm"])]
        return JOIN[lang].join(parts)
    history = fields.get("history", "")
    started = history and history != prompts.EMPTY_HISTORY[lang]
    if name == prompts.CLIENT_TURN.name:
        return _utterance(lang, "client", rng) if started else rng.choice(PHRASES[lang]["client_open"])
    description = fields.get("description", "")
    code = next((c for c, d in CODE_DESCRIPTIONS[lang].items() if d == description), None)
    if name == prompts.MI_COUNSELOR_TURN.name and code is not None:
        part = ("counselor_question" if code in QUESTION_CODES else "counselor_reflection" if code in REFLECTION_CODES
                else "counselor_affirm")
        return rng.choice(PHRASES[lang][part])
    return _utterance(lang, "counselor", rng)


def _simulated_client(lang: str, system: str, messages: Sequence[tuple[str, str]], rng: random.Random) -> str:
    """One client utterance. Its sentences come from an order fixed by the profile (the system prompt), indexed by
    how often the client has spoken, so a session never repeats itself."""
    spoken = sum(1 for role, _ in messages if role == "assistant")
    bank = PHRASES[lang]
    if spoken == 0:
        return rng.choice(bank["client_open"])
    if rng.random() < min(END_CHANCE_PER_REPLY * (spoken - END_AFTER_REPLIES), MAX_END_CHANCE):
        return f"{rng.choice(bank['client_end'])} {END_MARKER}"
    order = list(bank["client"])
    random.Random(hashlib.sha256(system.encode("utf-8")).hexdigest()).shuffle(order)
    text = order[(spoken - 1) % len(order)]
    if rng.random() < TAIL_SHARE:
        text += JOIN[lang] + rng.choice(bank["client_tail"])
    return text


def _utterance(lang: str, role: str, rng: random.Random) -> str:
    bank = PHRASES[lang]
    if role == "client":
        return rng.choice(bank["client"])
    return JOIN[lang].join([rng.choice(bank["counselor_reflection"]), rng.choice(bank["counselor_question"])])


def dialog(lang: str, n_turns: int, topic: str, rng: random.Random) -> list[tuple[str, str]]:
    """An MI session of n_turns utterances, client first, roles alternating: an opening, a middle of the client's
    concerns met by questions, reflections and affirmations (no sentence twice), and a closing on change."""
    bank = PHRASES[lang]
    pools: dict[str, list[str]] = {}

    def draw(part: str) -> str:
        if not pools.get(part):  # refilled only past the bank's size (sessions longer than any study asks for)
            pools[part] = rng.sample(bank[part], len(bank[part]))
        return pools[part].pop()

    turns = []
    for i in range(n_turns):
        role = "client" if i % 2 == 0 else "counselor"
        last_of_role = i + 2 >= n_turns and i >= 2
        if role == "client":
            text = (draw("client_open") if i == 0 else draw("client_close") if last_of_role else draw("client"))
            if i == 0 and topic:
                text += JOIN[lang] + bank["client_topic"].format(topic=topic)
            elif 0 < i and not last_of_role and rng.random() < TAIL_SHARE:
                text += JOIN[lang] + draw("client_tail")
        else:
            part = ("counselor_open" if i == 1 else "counselor_close" if last_of_role else
                    rng.choices(["counselor_question", "counselor_reflection", "counselor_affirm"], [4, 5, 1.5])[0])
            text = draw(part)
        turns.append((role, text))
    return turns
