"""CPsyCounE `<Topic>/<n>.json` arrays of prefixed strings -> one ParsedDialog per file, topic = folder name.

Quarantine rows name the record inside the file as '-' (the whole file), the JSON error's line, or
'#<i>' for the 0-based array element at fault (the same index the turn locations use).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from counseltune.ingest.base import IngestError, Ledger, ParsedDialog, ParsedTurn, decode_utf8, relative
from counseltune.ingest.files import is_data_file, read_bytes
from counseltune.ingest.speakers import SpeakerGrammar, split_lines

UNIT = "file"
LANGUAGE = "zh"

_FILE_NAME = re.compile(r"(\d+)\.json")
# CPsyCounE names the roles 求助者 (help-seeker) and 支持者 (supporter), unlike CPsyCounD. Each array element
# is one utterance; a line inside it that starts another prefix starts another utterance (as in CPsyCounD).
GRAMMAR = SpeakerGrammar({"求助者": "client", "支持者": "counselor"})
_ANY_NAME = re.compile(r"\s*([^\s：:﹕︰∶]{1,12})\s*[：:﹕︰∶]")


def read(root: Path, ledger: Ledger, options: dict) -> list[ParsedDialog]:
    """Read every `<Topic>/<n>.json` under `root`, topics sorted by name, then n numerically."""
    dialogs = []
    for topic, number, path in _case_files(root, ledger.source):
        ledger.seen()
        dialog = _read_file(path, relative(path, root), topic, number, ledger)
        if dialog is not None:
            dialogs.append(dialog)
    return dialogs


def _case_files(root: Path, source: str) -> list[tuple[str, int, Path]]:
    if not root.is_dir():
        raise IngestError(
            f"CPsyCounE: {root} is not a directory; expected the folder holding the topic folders with "
            "<n>.json files (fix sources.<name>.path in params.yaml)"
        )
    files = []
    for folder in root.iterdir():
        if folder.is_symlink():
            is_data_file(folder, source)  # a topic folder link that cannot be followed (a loop) fails here, not skipped
        if not folder.is_dir():
            continue  # SOURCE.md and the like
        for path in folder.iterdir():
            match = _FILE_NAME.fullmatch(path.name)
            if match and is_data_file(path, source):
                files.append((folder.name, int(match.group(1)), path))
    if not files:
        raise IngestError(
            f"CPsyCounE: no <Topic>/<n>.json files under {root}; expected the folder that holds the topic "
            "folders (fix sources.<name>.path in params.yaml)"
        )
    files.sort(key=lambda item: (item[0], item[1], item[2].name))
    return files


def _read_file(path: Path, rel: str, topic: str, number: int, ledger: Ledger) -> ParsedDialog | None:
    """One file -> ParsedDialog, or None after quarantining the file with the reason."""
    text, escaped, error = decode_utf8(read_bytes(path, ledger.source))
    if text is None:
        ledger.quarantine(rel, "-", "invalid_utf8", f"{rel} is not valid UTF-8 ({error})", escaped)
        return None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        ledger.quarantine(
            rel, str(err.lineno), "invalid_json",
            f"{rel} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}", text,
        )
        return None
    except RecursionError:
        ledger.quarantine(rel, "-", "invalid_json", f"{rel} is nested deeper than the JSON parser can follow; expected an array of strings", text)
        return None
    problem = _check(items, rel)
    if problem is not None:
        record, reason, detail = problem
        ledger.quarantine(rel, record, reason, detail, text)
        return None
    turns = []
    for index, item in enumerate(items):
        for line in split_lines(item):
            kind = GRAMMAR.classify(line)
            if kind.kind == "prefix":
                turns.append(ParsedTurn(role=kind.role, text=kind.text, location=f"{rel}#{index}"))
            else:  # _check let only prefixes and continuation text through
                turns[-1].text += "\n" + line
    return ParsedDialog(
        key=f"{topic}/{number}", file=rel, record="-", turns=turns, raw=text, n_records=1, topic=topic,
        meta={"case": number},
    )


def _check(items: object, rel: str) -> tuple[str, str, str] | None:
    """(record, reason, detail) for the first thing that makes the array unusable, else None."""
    if not isinstance(items, list):
        return "-", "not_a_list", f"{rel}: the top-level JSON value is a {type(items).__name__}, expected an array of strings"
    if not items:
        return "-", "empty_dialog", f"{rel}: the JSON array is empty"
    for index, item in enumerate(items):
        if not isinstance(item, str):
            return f"#{index}", "bad_element", f"{rel}#{index}: element is a {type(item).__name__}, expected a string"
        lines = [GRAMMAR.classify(line) for line in split_lines(item)]
        near_miss = next((line for line in lines if line.kind == "near_miss"), None)
        if near_miss is not None:
            return (f"#{index}", "unparsed_speaker_prefix",
                    f"{rel}#{index}: {near_miss.why}; expected {GRAMMAR.expected} at the start of a line")
        if lines[0].kind != "prefix":
            name = _ANY_NAME.match(item)
            found = f"prefix {name.group(0).strip()!r}" if name else f"no 'name：' prefix (starts {item[:12]!r})"
            return f"#{index}", "unknown_role", f"{rel}#{index}: {found}; expected {GRAMMAR.expected}"
    return None
