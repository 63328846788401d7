"""Quality filters for generated sessions: every rejection has a reason and goes to the quarantine.

Per session, in this order (the first failure is the quarantine reason, all of them go in the detail):
turn count, role alternation, language share, role leakage, degenerate repetition, plan adherence. Then, among the sessions
that passed, duplicates: copies of the seed material first, then near duplicates of each other (the
earlier session stays), with curate's MinHash + exact-Jaccard machinery. The schema check runs on write
(`schema_failures`): a session whose rows break the table contract is quarantined, not the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from counseltune.dedupe import find_duplicates
from counseltune.llm.scrub import clip
from counseltune.schemas.tables import CuratedDialogs, Turns
from counseltune.synthesize.codes import QUESTION_CODES, REFLECTION_CODES
from counseltune.synthesize.parse import speaker_prefix
from counseltune.synthesize.seeds import Seed
from counseltune.tables.io import TableError, validate


@dataclass(frozen=True)
class FilterConfig:
    min_turns: int = 4
    max_turns: int = 40
    min_language_share: float = 0.7     # share of letters in the target script
    min_plan_adherence: float = 0.8     # share of checkable planned turns that look like their code
    near_threshold: float = 0.85        # Jaccard of character shingles (as curate, counseltune/dedupe.py)
    shingle_chars: int = 5
    max_repetition: float = 0.5         # share of a session's n-grams that repeat earlier ones (degenerate loops)

    @classmethod
    def from_params(cls, spec: dict[str, Any]) -> FilterConfig:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthesize.filters keys {sorted(unknown)}: expected {sorted(cls.__dataclass_fields__)}")
        return cls(**spec)


@dataclass
class Verdict:
    failures: list[tuple[str, str]] = field(default_factory=list)   # (reason, detail), first one decides
    language_share: float = 0.0
    plan_adherence: float | None = None                             # None: nothing checkable was planned

    @property
    def accepted(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str | None:
        return self.failures[0][0] if self.failures else None

    @property
    def detail(self) -> str:
        return "; ".join(f"{reason}: {detail}" for reason, detail in self.failures)


# ---- per-session checks ---------------------------------------------------------------------------------

_SCRIPTS = {
    "zh": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "ko": re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
    "en": re.compile(r"[A-Za-z]"),
}

LEAKAGE = [re.compile(p, re.IGNORECASE) for p in (
    r"\bas an? (?:ai|artificial intelligence|language model|large language model|chatbot|virtual assistant)\b",
    r"\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model|chatbot|virtual assistant)\b",
    r"\b(?:ai|large) language model\b",
    r"\b(?:openai|chatgpt)\b",
    r"作为(?:一个|一名)?(?:AI|人工智能|语言模型|聊天机器人)",
    r"我(?:只)?是(?:一个|一名)?(?:AI|人工智能|语言模型|聊天机器人)",
    r"(?:AI|人工智能)(?:语言)?(?:模型|助手)",
    r"(?:AI|인공지능)\s*(?:언어\s*)?모델",
    r"(?:AI|인공지능|언어\s*모델)(?:로서|으로서)",
    r"저는\s*(?:AI|인공지능|챗봇)",
)]


def language_share(text: str, language: str) -> float:
    """Share of the text's letters that are in the language's script (CJK for zh, Hangul for ko, ASCII for en)."""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return 0.0
    return len(_SCRIPTS[language].findall(text)) / letters


def leakage(text: str) -> str | None:
    """The first role-leakage phrase in an utterance, or a line where another speaker starts talking."""
    for pattern in LEAKAGE:
        match = pattern.search(text)
        if match:
            return match.group(0)
    for line in text.split("\n"):
        if speaker_prefix(line):
            return clip(line, 40)
    return None


def repetition(text: str, language: str) -> float:
    """Share of n-grams that repeat an earlier one: word trigrams for en, character 4-grams for zh/ko.

    A small model stuck in a loop writes the same phrase turn after turn; real dialogs stay well below 0.3.
    """
    units = re.findall(r"[\w']+", text.lower()) if language == "en" else [c for c in text if not c.isspace()]
    n = 3 if language == "en" else 4
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def plan_adherence(turns: Iterable[Any]) -> tuple[float | None, int]:
    """(share of checkable counselor turns that fit their planned code, how many were checkable).

    A cheap surface check: a question code must contain a question mark; a reflection must not end with one.
    """
    checked = passed = 0
    for turn in turns:
        if turn.role != "counselor" or turn.code is None:
            continue
        has_mark = "?" in turn.text or "？" in turn.text
        if turn.code in QUESTION_CODES:
            checked, passed = checked + 1, passed + has_mark
        elif turn.code in REFLECTION_CODES:
            checked, passed = checked + 1, passed + (not turn.text.rstrip().endswith(("?", "？")))
    return (passed / checked if checked else None), checked


def check_session(turns: Sequence[Any], language: str, cfg: FilterConfig) -> Verdict:
    """The per-session checks on turns with .role, .text and .code (planned MI code or None)."""
    verdict = Verdict()
    n = len(turns)
    if n < cfg.min_turns:
        verdict.failures.append(("too_few_turns", f"{n} utterances < min_turns={cfg.min_turns}"))
    elif n > cfg.max_turns:
        verdict.failures.append(("too_many_turns", f"{n} utterances > max_turns={cfg.max_turns}"))
    repeated = next((i for i in range(1, n) if turns[i].role == turns[i - 1].role), None)
    if repeated is not None:
        verdict.failures.append(("role_alternation", f"turns {repeated - 1} and {repeated} are both {turns[repeated].role}"))
    verdict.language_share = language_share("\n".join(t.text for t in turns), language)
    if verdict.language_share < cfg.min_language_share:
        verdict.failures.append((
            "wrong_language", f"{verdict.language_share:.2f} of letters in the {language} script < min_language_share={cfg.min_language_share}"))
    for i, turn in enumerate(turns):
        phrase = leakage(turn.text)
        if phrase:
            verdict.failures.append(("role_leakage", f"turn {i} ({turn.role}): {phrase!r}"))
            break
    loops = repetition("\n".join(t.text for t in turns), language)
    if loops > cfg.max_repetition:
        verdict.failures.append((
            "degenerate_repetition", f"{loops:.2f} of the session's n-grams repeat earlier ones > max_repetition={cfg.max_repetition}"))
    verdict.plan_adherence, checked = plan_adherence(turns)
    if verdict.plan_adherence is not None and verdict.plan_adherence < cfg.min_plan_adherence:
        verdict.failures.append((
            "plan_adherence", f"{verdict.plan_adherence:.2f} of {checked} checkable turns fit their code < min_plan_adherence={cfg.min_plan_adherence}"))
    return verdict


# ---- duplicates -------------------------------------------------------------------------------------------

def duplicates(ids: list[str], texts: list[str], seeds: Sequence[Seed], cfg: FilterConfig) -> dict[str, tuple[str, str]]:
    """dialog id -> (copies_seed | exact_duplicate | near_duplicate, detail) for the sessions to drop.

    The seeds go first in one pass, so a session close to its seed dialog is reported as copying it, and of
    two similar sessions the earlier one stays.
    """
    unique_seeds = list({s.dialog_id: s for s in seeds}.values())
    seed_ids = {s.dialog_id for s in unique_seeds}
    found = find_duplicates([s.dialog_id for s in unique_seeds] + ids, [s.text for s in unique_seeds] + texts,
                            cfg.shingle_chars, cfg.near_threshold)
    out: dict[str, tuple[str, str]] = {}
    for dialog_id, (reason, kept, detail) in found.items():
        if dialog_id in seed_ids:
            continue  # two seeds alike: not this stage's business
        out[dialog_id] = ("copies_seed", f"{reason} of seed dialog: {detail}") if kept in seed_ids else (reason, detail)
    return out


# ---- schema ---------------------------------------------------------------------------------------------

def schema_failures(dialogs: pl.DataFrame, turns: pl.DataFrame, where: str) -> dict[str, str]:
    """dialog id -> the contract violation, for sessions whose rows fail CuratedDialogs/Turns validation.

    The whole batch is validated once; only when it fails is each dialog validated alone to find the culprits.
    """
    try:
        validate(dialogs, CuratedDialogs, where)
        validate(turns, Turns, where)
        return {}
    except TableError:
        pass
    bad: dict[str, str] = {}
    for dialog_id in dialogs["dialog_id"].to_list():
        try:
            validate(dialogs.filter(pl.col("dialog_id") == dialog_id), CuratedDialogs, dialog_id)
            validate(turns.filter(pl.col("dialog_id") == dialog_id), Turns, dialog_id)
        except TableError as err:
            bad[dialog_id] = str(err)
    return bad
