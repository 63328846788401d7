"""Reading raw files without tracebacks: unreadable files, and multi-record JSON files that break off part-way.

A multi-record file (a JSON array of dialogs) that cannot be read to its end — truncated, invalid JSON or
UTF-8 part-way, nested deeper than the parser follows, data after the array — is a file-level failure.
By default the source fails, naming the file, the byte where it breaks and how many records before that
point parse (`on_truncated_file: fail`). With `on_truncated_file: salvage` (a per-source param) those
records are read and the rest becomes ONE quarantine row naming the file, the byte and record position and
the records lost: at least the one cut, and for a file corrupt in the middle about as many as the unread
bytes hold at the salvaged records' mean size. The number of records cut off a file's END cannot be known
from the file, so salvaging is an explicit choice, reported in the stats ("truncated_files").
"""

from __future__ import annotations

import errno
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from counseltune.ingest.base import IngestError, Ledger

ON_TRUNCATED_FILE = ("fail", "salvage")
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def read_bytes(path: Path, source: str) -> bytes:
    """The file's bytes; an unreadable file (symlink loop, dangling link, permissions) is an IngestError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise IngestError(_unreadable(path, source, err)) from None


def is_data_file(path: Path, source: str) -> bool:
    """True for a regular file (following links), False for a folder; IngestError for a link that cannot be followed.

    A file a reader would read must not vanish from the listing because it is a broken link.
    """
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError as err:
        raise IngestError(_unreadable(path, source, err)) from None


def _unreadable(path: Path, source: str, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        what, fix = "is a symbolic link that loops back on itself (ELOOP)", "remove the link or point it at the real file"
    elif err.errno == errno.ENOENT and path.is_symlink():
        what, fix = "is a symbolic link to a missing file", "restore the target or remove the link"
    elif err.errno in (errno.EACCES, errno.EPERM):
        what, fix = "cannot be read (permission denied)", "fix its permissions"
    else:
        what, fix = f"cannot be read ({err.strerror or err})", "check the file"
    return f"ingest[{source}]: {path} {what}; {fix}, or point sources.{source}.path elsewhere in params.yaml"


@dataclass
class JsonRecord:
    index: int  # 0-based position in the array
    value: Any
    raw: str  # the element's text exactly as in the file (no re-serialization: nothing deep is re-walked)
    end: int  # character offset just after the element


@dataclass
class _Cut:
    char: int  # character offset in the decoded text where reading stopped
    reason: str
    why: str


def read_json_array(path: Path, file: str, ledger: Ledger, on_truncated_file: str = "fail") -> list[JsonRecord]:
    """The records of a file holding one JSON array, streamed element by element (json raw_decode).

    Every returned record is counted (ledger.seen) by the caller; a file-level failure either raises
    IngestError (fail) or is counted and quarantined here as one row (salvage).
    """
    if on_truncated_file not in ON_TRUNCATED_FILE:
        raise IngestError(
            f"ingest[{ledger.source}]: on_truncated_file must be one of {list(ON_TRUNCATED_FILE)}, got {on_truncated_file!r}; "
            "fix it in params.yaml"
        )
    data = read_bytes(path, ledger.source)
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text, bad_byte = data[bom:].decode("utf-8"), None
    except UnicodeDecodeError as err:  # read what is valid; the first bad byte is where the file breaks
        text, bad_byte = data[bom:bom + err.start].decode("utf-8"), err.start + bom
    records, cut = _parse_array(text)
    if bad_byte is not None and (cut is None or cut.reason == "invalid_json"):  # the text stops at the bad byte
        cut = _Cut(len(text), "invalid_utf8", f"invalid UTF-8 at byte {bad_byte} (in or before record #{len(records)})")
    if cut is None:
        return records
    byte = bom + len(text[:cut.char].encode("utf-8")) if cut.reason != "invalid_utf8" else bad_byte
    line = text.count("\n", 0, cut.char) + 1
    column = cut.char - (text.rfind("\n", 0, cut.char) + 1) + 1
    where = f"byte {byte} (line {line}, column {column})"
    k = len(records)
    if on_truncated_file == "fail":
        raise IngestError(
            f"ingest[{ledger.source}]: {file} breaks off at {where}: {cut.why}; the {k} record(s) before that point "
            f"parse and could be salvaged. Restore the file (re-download or `dvc pull`), or set "
            f"sources.{ledger.source}.on_truncated_file: salvage in params.yaml to keep those {k} and quarantine the rest"
        )
    start = _record_start(text, records)
    unread = len(data) - (bom + len(text[:start].encode("utf-8")))
    mean = (bom + len(text[:start].encode("utf-8"))) / k if k else 0
    lost = max(1, round(unread / mean)) if mean else 1
    ledger.seen(lost)
    ledger.note("truncated_files_salvaged")
    ledger.salvaged_files.append({"file": file, "at_byte": byte, "records_salvaged": k, "records_lost_estimate": lost,
                                  "bytes_unread": unread, "reason": cut.reason})
    ledger.quarantine(
        file, f"#{k}@byte {byte}", "truncated_file",
        f"{file} breaks off at {where}: {cut.why}; {k} record(s) before it salvaged (on_truncated_file: salvage); "
        f"from record #{k} on, {unread} bytes unread: counted as {lost} record(s) lost "
        f"({'the one cut' if lost == 1 else f'the unread bytes at the salvaged records mean size of {mean:.0f} bytes'}; "
        "records cut off the end of a file cannot be counted)",
        data[bom + len(text[:start].encode("utf-8")):].decode("utf-8", errors="backslashreplace"), n=lost,
    )
    return records


def _parse_array(text: str) -> tuple[list[JsonRecord], _Cut | None]:
    """Records of the top-level array up to the first problem (None when the whole text is one array)."""
    pos = _skip(text, 0)
    if pos >= len(text):
        return [], _Cut(pos, "invalid_json", "the file holds no JSON value (empty or truncated to nothing)")
    if text[pos] != "[":
        try:
            value, _ = _DECODER.raw_decode(text, pos)
            found = f"top level is a JSON {type(value).__name__}, not an array of records"
            return [], _Cut(pos, "top_level_not_array", found)
        except (json.JSONDecodeError, RecursionError):
            return [], _Cut(pos, "top_level_not_array", f"the file does not start with '[' (starts {text[pos:pos + 12]!r})")
    records: list[JsonRecord] = []
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        return records, _trailing(text, pos + 1)
    while True:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            return records, _Cut(err.pos, "invalid_json", f"invalid JSON in record #{len(records)} ({err.msg}; truncated?)")
        except RecursionError:
            return records, _Cut(pos, "nested_too_deep",
                                 f"record #{len(records)} is nested deeper than the JSON parser can follow")
        records.append(JsonRecord(len(records), value, text[pos:end], end))
        pos = _skip(text, end)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("]", pos):
            return records, _trailing(text, pos + 1)
        else:
            what = "the file ends" if pos >= len(text) else f"found {text[pos:pos + 1]!r}"
            return records, _Cut(pos, "invalid_json", f"expected ',' or ']' after record #{len(records) - 1}, {what} (truncated?)")


def _trailing(text: str, pos: int) -> _Cut | None:
    pos = _skip(text, pos)
    if pos < len(text):
        return _Cut(pos, "invalid_json", f"data after the closing ']' of the array (starts {text[pos:pos + 12]!r})")
    return None


def _record_start(text: str, records: list[JsonRecord]) -> int:
    """Character offset where the first unread record begins (after the last salvaged record and its comma)."""
    if not records:
        pos = _skip(text, 0)
        return pos + 1 if text.startswith("[", pos) else pos
    pos = _skip(text, records[-1].end)
    return _skip(text, pos + 1) if text.startswith(",", pos) else pos


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos
