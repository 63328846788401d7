"""Test doubles and data for the synthesis tests: scripted LLM clients and small curated tables.

ScriptedClient implements counseltune.llm.types.Client without a model: every reply is computed from its
request (template, planned code, seed), so runs are deterministic and the tests can tell what was asked. A
request with an output schema (a turn) is answered with JSON of it, as a structured-output endpoint would.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from counseltune.schemas.tables import CuratedDialogs, Turns

from counseltune.ingest import annomi
from counseltune.ingest.base import IngestOptions, Ledger, build_tables
from counseltune.llm.types import ChatRequest, Failure, Reply, Usage
from counseltune.synthesize.codes import CODE_DESCRIPTIONS, QUESTION_CODES
from counseltune.tables.io import write_table
from tests.conftest import dialog_rows, frames

REPO = Path(__file__).resolve().parents[2]
ANNOMI_SAMPLE = REPO / "data" / "sample" / "AnnoMI"

_ALPHABETS = {
    "zh": [chr(c) for c in range(0x4E00, 0x4E00 + 3000)],
    "ko": [chr(c) for c in range(0xAC00, 0xAC00 + 2000)],
    "en": list("abcdefghijklmnopqrstuvwxyz"),
}
_END = {"zh": ("。", "？"), "ko": (".", "?"), "en": (".", "?")}


def annomi_turns() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The bundled AnnoMI sample, ingested the way the pipeline does (tests/ingest/test_annomi.py)."""
    ledger = Ledger("annomi", annomi.UNIT)
    parsed = annomi.read(ANNOMI_SAMPLE, ledger, {"variant": "full", "annotator_rule": "majority"})
    tables = build_tables("annomi", "annomi", parsed, ledger, IngestOptions(language="en", method="MI"))
    return tables.dialogs, tables.turns


def language_of(request: ChatRequest) -> str:
    system = request.messages[0][1]
    if re.search(r"[\uac00-\ud7a3]", system):
        return "ko"
    if re.search(r"[\u4e00-\u9fff]", system):
        return "zh"
    return "en"


def planned_code(request: ChatRequest) -> str | None:
    """The MI code a counselor-turn prompt asked for, recovered from its description."""
    user = request.messages[-1][1]
    for code, description in sorted(CODE_DESCRIPTIONS[language_of(request)].items(), key=lambda kv: -len(kv[1])):
        if description in user:
            return code
    return None


def babble(language: str, key: str, n: int = 14) -> str:
    """n pseudo-random letters (words, for en) determined by key: distinct per turn, so no near duplicates."""
    rng = random.Random(hashlib.sha256(key.encode()).hexdigest())
    letters = _ALPHABETS[language]
    if language == "en":
        return " ".join("".join(rng.choice(letters) for _ in range(5)) for _ in range(n // 2))
    return "".join(rng.choice(letters) for _ in range(n))


def scripted_text(request: ChatRequest) -> str:
    """A reply that does what the request asked: questions end with '?', reflections and the rest do not."""
    language = language_of(request)
    template = request.prompt_version.split("/")[0]
    key = f"{request.seed}|{request.messages}"
    period, question = _END[language]
    if template == "mi_plain_session":
        n = int(re.search(r"(\d+)", request.messages[-1][1]).group(1))
        labels = {"zh": ("来访者：", "咨询师："), "en": ("Client: ", "Counselor: "), "ko": ("내담자: ", "상담자: ")}[language]
        return "\n".join(labels[i % 2] + babble(language, f"{key}|{i}") + period for i in range(n))
    code = planned_code(request) if template == "mi_counselor_turn" else None
    return as_turn(request, babble(language, key) + (question if code in QUESTION_CODES else period))


def as_turn(request: ChatRequest, utterance: str) -> str:
    """The utterance as the JSON a turn request's schema asks for (the plan's label copied from its enum)."""
    if request.schema is None:
        return utterance
    properties = request.schema.schema["properties"]
    labels = {name: spec["enum"][0] for name, spec in properties.items() if "enum" in spec}
    return json.dumps({**labels, "utterance": utterance}, ensure_ascii=False)


@dataclass
class ScriptedClient:
    """types.Client without a model; records each complete() batch; `fail(request, call)` injects Failures."""

    backend: str = "scripted"
    model: str = "echo-1"
    usage: Usage = field(default_factory=Usage)
    fail: Callable[[ChatRequest, int], str | None] = lambda request, call: None
    text: Callable[[ChatRequest], str] = scripted_text
    batches: list[list[ChatRequest]] = field(default_factory=list)

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[Reply | Failure]:
        self.batches.append(list(requests))
        replies: list[Reply | Failure] = []
        for request in requests:
            reason = self.fail(request, len(self.batches))
            if reason:
                self.usage.failures[reason] = self.usage.failures.get(reason, 0) + 1
                replies.append(Failure(reason, "scripted failure", attempts=3))
                continue
            text = self.text(request)
            self.usage.requests += 1
            self.usage.tokens_in += 10
            self.usage.tokens_out += len(text)
            replies.append(Reply(text, tokens_in=10, tokens_out=len(text), finish_reason="stop", cached=False))
        return replies


ZH_DIALOGS = [
    ("toy:train-1", "train", "工作压力", [("client", "我最近工作压力很大，每天加班到很晚，晚上也睡不着。"), ("counselor", "听起来你最近非常疲惫。"),
                                     ("client", "是的，我不知道该怎么办才好。"), ("counselor", "你希望从哪里开始谈起？")]),
    ("toy:train-2", "train", "家庭关系", [("client", "我和父母经常因为小事吵架，心里很难受。"), ("counselor", "这些争吵让你很难过。"),
                                     ("client", "我想和他们好好相处，可是总是做不到。"), ("counselor", "你很想改善和父母的关系。")]),
    ("toy:train-3", "train", None, [("counselor", "你好，今天想聊些什么？"), ("client", "我总觉得自己什么都做不好，考试又没考好。"),
                                    ("counselor", "考试的结果让你很失落。"), ("client", "嗯，我担心以后找不到工作。")]),
    ("toy:test-1", "test", "恋爱", [("client", "测试集的来访者：分手以后我一直走不出来。"), ("counselor", "分手对你的打击很大。"),
                                  ("client", "我每天都在想他。"), ("counselor", "你还很在意这段感情。")]),
    ("toy:val-1", "val", "学业", [("client", "验证集的来访者：我不想上学了。"), ("counselor", "上学让你觉得很累。"),
                                ("client", "对，太累了。"), ("counselor", "你需要休息一下。")]),
]


def processed_dir(root: Path, with_annomi: bool = True) -> Path:
    """A data/processed folder: toy zh dialogs (train/val/test) and, optionally, the AnnoMI sample as train."""
    built = [dialog_rows(did, turns, source="toy", topic=topic) for did, _, topic, turns in ZH_DIALOGS]
    dialogs, turns = frames(*built)
    dialogs = dialogs.with_columns(pl.Series("split", [split for _, split, _, _ in ZH_DIALOGS]))
    if with_annomi:
        a_dialogs, a_turns = annomi_turns()
        dialogs = pl.concat([dialogs, a_dialogs.with_columns(pl.lit("train").alias("split"))])
        turns = pl.concat([turns, a_turns])
    root.mkdir(parents=True, exist_ok=True)
    write_table(dialogs, root / "dialogs.parquet", CuratedDialogs)
    write_table(turns, root / "turns.parquet", Turns)
    return root


def meta_of(row: dict) -> dict:
    return json.loads(row["meta"])
