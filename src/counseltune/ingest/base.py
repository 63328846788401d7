"""What every format reader shares: the parsed-dialog shape, the record ledger, and the table builder.

A reader turns one source's raw files into `ParsedDialog`s and records every raw record it saw in a
`Ledger`: each record is kept (became rows), merged (folded into another record's rows, e.g. a second
annotator's copy of an utterance) or quarantined (with file, record and reason). The ledger's balance
records_in == kept + merged + quarantined is asserted before anything is written.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.schemas.tables import Dialogs, Quarantine, Turns
from counseltune.tables.io import empty_table, validate
from counseltune.text import normalize_text

SAME_SPEAKER_POLICIES = ("merge", "keep", "quarantine")
TRAILING_CLIENT_POLICIES = ("keep", "drop")
EMPTY_UTTERANCE_POLICIES = ("drop", "quarantine")


@dataclass
class ParsedTurn:
    role: str  # client | counselor | system
    text: str  # raw text as read (continuation lines joined with '\n')
    location: str  # file:line or file#record
    mi_behavior: str | None = None
    mi_code: str | None = None
    client_talk: str | None = None
    code_agreement: float | None = None
    n_annotators: int | None = None


@dataclass
class ParsedDialog:
    key: str  # unique within the source; dialog_id = '<source>:<key>'
    file: str  # path relative to the source root
    record: str  # line/record/id inside the file
    turns: list[ParsedTurn]
    raw: str  # the raw record, for the quarantine if a later check rejects it
    n_records: int = 1  # raw records this dialog consumed
    topic: str | None = None
    method: str = "unspecified"
    meta: dict[str, Any] = field(default_factory=dict)


class IngestError(CounseltuneError, RuntimeError):
    """An ingest cannot produce trustworthy tables (e.g. too much of a source was quarantined)."""


class Ledger:
    """Counts every raw record of one source by outcome; nothing disappears silently."""

    def __init__(self, source: str, unit: str):
        self.source, self.unit = source, unit
        self.records_in = 0
        self.kept = 0
        self.merged: Counter[str] = Counter()
        self.rows: list[dict[str, Any]] = []
        self.notes: Counter[str] = Counter()  # non-record events worth reporting (same-speaker merges, ...)
        self.salvaged_files: list[dict[str, Any]] = []  # multi-record files read only up to where they break off

    def seen(self, n: int = 1) -> None:
        self.records_in += n

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def merge(self, reason: str, n: int = 1) -> None:
        self.merged[reason] += n

    def note(self, event: str, n: int = 1) -> None:
        self.notes[event] += n

    def quarantine(self, file: str, record: str, reason: str, detail: str, raw: str, n: int = 1) -> None:
        self.rows.append({
            "source": self.source, "stage": "ingest", "file": file, "record": str(record),
            "n_records": n, "reason": reason, "detail": detail, "raw": raw,
        })

    @property
    def quarantined(self) -> int:
        return sum(r["n_records"] for r in self.rows)

    def check_balance(self) -> None:
        total = self.kept + sum(self.merged.values()) + self.quarantined
        if total != self.records_in:
            raise IngestError(
                f"ingest[{self.source}]: {self.records_in} {self.unit}s read but {self.kept} kept + "
                f"{sum(self.merged.values())} merged + {self.quarantined} quarantined = {total}; this is a bug in the reader"
            )

    def reasons(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for r in self.rows:
            counts[r["reason"]] += r["n_records"]
        return counts


@dataclass
class IngestOptions:
    language: str
    width: str = "alnum"
    same_speaker: str = "merge"
    trailing_client: str = "keep"
    empty_utterance: str = "drop"  # drop (counted) keeps a 60-turn dialog whose last line is a bare speaker prefix
    method: str | None = None  # overrides the reader's method (e.g. MI for AnnoMI) when set
    extra: dict[str, Any] = field(default_factory=dict)  # format-specific options


@dataclass
class SourceTables:
    dialogs: pl.DataFrame
    turns: pl.DataFrame
    quarantine: pl.DataFrame
    stats: dict[str, Any]


def build_tables(source: str, fmt: str, parsed: list[ParsedDialog], ledger: Ledger, opts: IngestOptions) -> SourceTables:
    """Apply the shared policies (normalization, same-speaker, trailing client), then build validated tables."""
    dialog_rows: list[dict[str, Any]] = []
    turn_rows: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    conflicts = _conflicting_keys(parsed)
    for dialog in parsed:
        if dialog.key in conflicts:
            reason, detail = "conflicting_duplicate_key", conflicts[dialog.key]
            ledger.quarantine(dialog.file, dialog.record, reason, detail, dialog.raw, n=dialog.n_records)
            continue
        turns, problem = _apply_policies(dialog, ledger, opts)
        if problem is None and dialog.key in seen_keys:
            problem = ("duplicate_key", f"key {dialog.key!r} appears twice in the source (an identical copy)")
        if problem is not None:
            reason, detail = problem
            ledger.quarantine(dialog.file, dialog.record, reason, detail, dialog.raw, n=dialog.n_records)
            continue
        seen_keys.add(dialog.key)
        ledger.keep(dialog.n_records)
        dialog_id = f"{source}:{_id_safe(dialog.key)}"
        dialog_rows.append({
            "dialog_id": dialog_id, "source": source, "language": opts.language, "topic": dialog.topic,
            "method": opts.method or dialog.method, "split": None, "n_turns": len(turns),
            "provenance_file": dialog.file, "provenance_record": dialog.record,
            "meta": json.dumps(dialog.meta, ensure_ascii=False, sort_keys=True),
        })
        for index, (turn, text) in enumerate(turns):
            turn_rows.append({
                "dialog_id": dialog_id, "turn_index": index, "role": turn.role, "text": text,
                "text_raw": turn.text, "mi_behavior": turn.mi_behavior, "mi_code": turn.mi_code,
                "client_talk": turn.client_talk, "code_agreement": turn.code_agreement,
                "n_annotators": turn.n_annotators, "location": turn.location,
            })
    ledger.check_balance()
    where = f"ingest[{source}]"
    dialogs = validate(_frame(dialog_rows, Dialogs), Dialogs, where)
    turns_df = validate(_frame(turn_rows, Turns), Turns, where)
    quarantine = validate(_frame(ledger.rows, Quarantine), Quarantine, where)
    stats = {
        "source": source, "format": fmt, "unit": ledger.unit, "records_in": ledger.records_in,
        "kept": ledger.kept, "merged": dict(sorted(ledger.merged.items())), "quarantined": ledger.quarantined,
        "quarantine_share": round(ledger.quarantined / ledger.records_in, 6) if ledger.records_in else 0.0,
        "quarantine_reasons": dict(ledger.reasons().most_common()), "events": dict(sorted(ledger.notes.items())),
        "dialogs": dialogs.height, "turns": turns_df.height,
    }
    if ledger.salvaged_files:
        stats["truncated_files"] = ledger.salvaged_files
    return SourceTables(dialogs, turns_df, quarantine, stats)


def _conflicting_keys(parsed: list[ParsedDialog]) -> dict[str, str]:
    """key -> detail, for every key shared by dialogs with different content (topic, speakers, texts).

    Identical copies keep the first (the rest are quarantined as duplicate_key); copies that differ cannot
    be told apart — keeping the first would keep whichever came first — so all of them are quarantined.
    """
    by_key: dict[str, list[ParsedDialog]] = {}
    for dialog in parsed:
        by_key.setdefault(dialog.key, []).append(dialog)
    conflicts = {}
    for key, dialogs in by_key.items():
        if len(dialogs) > 1 and len({_content(d) for d in dialogs}) > 1:
            where = ", ".join(f"{d.file} record {d.record}" for d in dialogs[:5])
            conflicts[key] = (
                f"key {key!r} names {len(dialogs)} different dialogs ({where}); which one it is cannot be told, "
                "so none is kept: give each its own id in the raw data"
            )
    return conflicts


def _content(dialog: ParsedDialog) -> tuple:
    return dialog.topic, tuple((t.role, t.text) for t in dialog.turns)


def _apply_policies(dialog: ParsedDialog, ledger: Ledger, opts: IngestOptions):
    """Normalize texts and apply the speaker policies; return (turns, None) or (None, (reason, detail))."""
    turns: list[tuple[ParsedTurn, str]] = []
    for turn in dialog.turns:
        text = normalize_text(turn.text, opts.width)
        if not text:
            if opts.empty_utterance == "quarantine":
                return None, ("empty_utterance", f"utterance at {turn.location} is empty after normalization")
            ledger.note("empty_utterances_dropped")
            continue
        if turns and turns[-1][0].role == turn.role and turn.role != "system":
            if opts.same_speaker == "quarantine":
                return None, ("same_speaker_twice", f"two {turn.role} utterances in a row at {turn.location}")
            if opts.same_speaker == "merge":
                previous, previous_text = turns[-1]
                turns[-1] = (_merged(previous, turn), previous_text + "\n" + text)
                ledger.note("same_speaker_utterances_merged")
                continue
        turns.append((turn, text))
    if opts.trailing_client == "drop" and len(turns) > 1 and turns[-1][0].role == "client":
        turns.pop()
        ledger.note("trailing_client_turns_dropped")
    elif turns and turns[-1][0].role == "client":
        ledger.note("dialogs_ending_on_client")
    if not any(t.role != "system" for t, _ in turns):
        return None, ("no_utterances", "the dialog has no client or counselor utterance")
    return turns, None


def _merged(first: ParsedTurn, second: ParsedTurn) -> ParsedTurn:
    """Join two same-speaker utterances; codes survive only when both halves agree."""
    same = lambda a, b: a if a == b else None  # noqa: E731
    return ParsedTurn(
        role=first.role, text=first.text + "\n" + second.text, location=first.location,
        mi_behavior=same(first.mi_behavior, second.mi_behavior), mi_code=same(first.mi_code, second.mi_code),
        client_talk=same(first.client_talk, second.client_talk),
        code_agreement=same(first.code_agreement, second.code_agreement),
        n_annotators=same(first.n_annotators, second.n_annotators),
    )


def _id_safe(key: str) -> str:
    return "_".join(key.split())


def _frame(rows: list[dict[str, Any]], model) -> pl.DataFrame:
    if not rows:
        return empty_table(model)
    return pl.DataFrame(rows, schema=empty_table(model).schema)


def decode_utf8(data: bytes) -> tuple[str | None, str, str]:
    """(text, '', '') for valid UTF-8 (a BOM is dropped), else (None, a copy with \\x escapes, 'invalid UTF-8 at byte N')."""
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8"), "", ""
    except UnicodeDecodeError as err:
        escaped = data[bom:].decode("utf-8", errors="backslashreplace")
        return None, escaped, f"invalid UTF-8 at byte {err.start + bom}"


def relative(path: Path, root: Path) -> str:
    """The path below the source root, NFC-normalized (macOS hands back NFD Hangul file names)."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    return unicodedata.normalize("NFC", rel)
