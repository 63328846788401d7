"""PsyDTCorpus JSON files (OpenAI-messages samples; packing or single-turn split) -> ParsedDialogs."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from counseltune.ingest.base import IngestError, Ledger, ParsedDialog, ParsedTurn, relative
from counseltune.ingest.files import JsonRecord, is_data_file, read_json_array

UNIT = "record"
LANGUAGE = "zh"

EXPECTED = "PsyDTCorpus_train_mulit_turn_packing.json and/or PsyDTCorpus_test_single_turn_split.json"
ROLES = {"user": "client", "assistant": "counselor"}
SPLIT_MARK = "single_turn_split"


MULTI_RECORD_FILES = True  # a file that breaks off part-way fails the source unless on_truncated_file: salvage


def read(root: Path, ledger: Ledger, options: dict, on_truncated_file: str = "fail") -> list[ParsedDialog]:
    """Read the PsyDTCorpus files under `root` (all of them, or options['files'])."""
    dialogs: list[ParsedDialog] = []
    for path in _files(Path(root), ledger.source, options.get("files")):
        file = relative(path, Path(root))
        records = read_json_array(path, file, ledger, on_truncated_file)
        samples = [s for s in (_sample(r, file, ledger) for r in records) if s is not None]
        stem = Path(file).stem
        if SPLIT_MARK in stem:
            dialogs.extend(_reassemble(samples, stem, ledger))
        else:
            dialogs.extend(_dialog(s, stem, "packing") for s in samples)
    return dialogs


@dataclass
class _Sample:
    index: int
    file: str
    record: dict[str, Any]
    system_prompt: str | None
    messages: tuple[tuple[str, str], ...]  # (role, content) of the conversation, system message excluded
    offset: int  # index of the first conversation message in the raw list (1 after a system prompt)
    raw: str  # the record's text as in the file

    @property
    def key_part(self) -> str:
        ident = self.record.get("id")
        if isinstance(ident, str) and ident.strip() or isinstance(ident, int) and not isinstance(ident, bool):
            return str(ident)
        return str(self.index)


def _files(root: Path, source: str, wanted: Any) -> list[Path]:
    """The files to read, in a stable order; IngestError when there are none."""
    fix = f"fix sources.{source}.path in params.yaml"
    if not root.is_dir():
        raise IngestError(f"ingest[{source}]: source directory {root} does not exist; expected {EXPECTED} there ({fix})")
    listing = {unicodedata.normalize("NFC", p.name): p for p in root.iterdir() if _candidate(p, source)}
    if wanted:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [n for n in names if unicodedata.normalize("NFC", n) not in listing]
        if missing:
            raise IngestError(
                f"ingest[{source}]: {missing} named in options.files not found in {root}; "
                f"found {sorted(listing)} ({fix}, or the files option)"
            )
        return [listing[unicodedata.normalize("NFC", n)] for n in names]
    found = [
        listing[name] for name in sorted(listing)
        if name.lower().endswith(".json") and ("train" in name.lower() or "test" in name.lower())
    ]
    if not found:
        raise IngestError(f"ingest[{source}]: no *train*.json or *test*.json file in {root}; expected {EXPECTED} ({fix})")
    return found


def _candidate(path: Path, source: str) -> bool:
    """A file the reader may read; a .json link that cannot be followed (a loop) is an error, not skipped."""
    if path.name.lower().endswith(".json"):
        return is_data_file(path, source)
    return path.is_file()


def _sample(raw: JsonRecord, file: str, ledger: Ledger) -> _Sample | None:
    """Check one raw sample; quarantine it (and return None) when it cannot be a dialog."""
    ledger.seen()
    index, record = raw.index, raw.value
    problem, system_prompt, messages = _check(record)
    if problem is not None:
        reason, detail = problem
        ledger.quarantine(file, str(index), reason, f"{file} record {index}: {detail}", raw.raw)
        return None
    offset = 1 if system_prompt is not None else 0
    return _Sample(index, file, record, system_prompt, messages, offset, raw.raw)


def _check(record: Any):
    """(problem or None, system prompt, conversation) for one raw sample."""
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return ("missing_messages", "not an object with a 'messages' list"), None, ()
    system_prompt: str | None = None
    messages: list[tuple[str, str]] = []
    for i, message in enumerate(record["messages"]):
        if not isinstance(message, dict) or not all(isinstance(message.get(f), str) for f in ("role", "content")):
            return ("bad_message", f"message {i} lacks a string 'role' and a string 'content'"), None, ()
        role = message["role"]
        if role == "system":
            if i != 0:
                return ("system_not_first", f"message {i} is a system message; only message 0 may be one"), None, ()
            system_prompt = message["content"]
        elif role in ROLES:
            messages.append((role, message["content"]))
        else:
            return ("unknown_role", f"message {i} has unknown role {role!r}"), None, ()
    if not messages:
        return ("empty_dialog", "no user or assistant message"), None, ()
    return None, system_prompt, tuple(messages)


def _reassemble(samples: list[_Sample], stem: str, ledger: Ledger) -> list[ParsedDialog]:
    """Split samples -> dialogs: each sample is folded into the longest sample it is a prefix of.

    Samples are grouped by (system prompt, first conversation message) and taken longest first; each is
    merged into the first already-emitted dialog whose messages it prefixes, or else emitted itself. So a
    conflicting branch (same opening, then diverging) is not lost: it becomes its own dialog, keyed
    '<key of the group's longest sample>/branch<k>' with meta["branch_of"] naming that key. A sample that
    prefixes several branches goes to the longest one (its content is in both).
    """
    groups: dict[tuple[str | None, tuple[str, str]], list[_Sample]] = {}
    for sample in samples:  # dict order = first appearance in the file: a deterministic dialog order
        groups.setdefault((sample.system_prompt, sample.messages[0]), []).append(sample)
    dialogs: list[ParsedDialog] = []
    for group in groups.values():
        heads: list[tuple[_Sample, list[_Sample]]] = []
        for sample in sorted(group, key=lambda s: (-len(s.messages), s.index)):
            n = len(sample.messages)
            home = next((h for h in heads if h[0].messages[:n] == sample.messages), None)
            if home is None:
                heads.append((sample, []))
                continue
            home[1].append(sample)
            ledger.merge("identical_split_sample" if len(home[0].messages) == n else "history_repeated_in_split_sample")
        main_key = f"{stem}/{heads[0][0].key_part}"
        for branch, (head, folded) in enumerate(heads):
            members = sorted([head, *folded], key=lambda s: (len(s.messages), s.index))  # history order
            dialog = _dialog(head, stem, SPLIT_MARK, members)
            if len({_dump(s.record.get("normalizedTag")) for s in members}) > 1:
                ledger.note("split_samples_disagree_on_tag")  # the longest sample's tag is kept
            if branch:
                dialog.key = f"{main_key}/branch{branch}"
                dialog.meta.update(branch_of=main_key, branch=branch)
            dialogs.append(dialog)
    return dialogs


def _dialog(sample: _Sample, stem: str, kind: str, members: list[_Sample] | None = None) -> ParsedDialog:
    """One ParsedDialog from a checked sample (plus the split samples folded into it, if any)."""
    record = sample.record
    members = members or [sample]
    tag = record.get("normalizedTag")
    meta: dict[str, Any] = {"file_kind": kind, "normalized_tag": tag}
    ids = [s.record["id"] for s in members if "id" in s.record]
    if ids:
        meta["ids"] = ids
    if kind == SPLIT_MARK:
        meta["records"] = [s.index for s in members]
    if sample.system_prompt is not None:
        meta["system_prompt"] = sample.system_prompt
    turns = [
        ParsedTurn(role=ROLES[role], text=content, location=f"{sample.file}#{sample.index}.{sample.offset + i}")
        for i, (role, content) in enumerate(sample.messages)
    ]
    return ParsedDialog(
        key=f"{stem}/{sample.key_part}", file=sample.file, record=str(sample.index), turns=turns,
        raw=sample.raw, topic=tag if isinstance(tag, str) and tag.strip() else None, meta=meta,
    )


def _dump(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False)
