"""CPsyCounD folder of `case_<N>.txt` transcripts -> one ParsedDialog per file (client/counselor turns)."""

from __future__ import annotations

import re
from pathlib import Path

from counseltune.ingest.base import IngestError, Ledger, ParsedDialog, ParsedTurn, decode_utf8, relative
from counseltune.ingest.files import is_data_file, read_bytes
from counseltune.ingest.speakers import SpeakerGrammar, line_endings, split_lines

UNIT = "file"
LANGUAGE = "zh"

_FILE_NAME = re.compile(r"case_(\d+)\.txt")
# Only these two words start an utterance (with the variants speakers.py accepts: `来访者（姚先生）：`,
# `来访者1：`, spaces around any colon). Lines such as `妈妈：` occur inside role-plays and continue the
# current utterance; a near miss (`来访着：`, `来访者;`) quarantines the file.
GRAMMAR = SpeakerGrammar({"来访者": "client", "心理咨询师": "counselor"})


def read(root: Path, ledger: Ledger, options: dict) -> list[ParsedDialog]:
    """Read every `case_<N>.txt` directly under `root`, in numeric case order; other files are ignored."""
    files = _case_files(root, ledger.source)
    dialogs = []
    for number, path in files:
        ledger.seen()
        dialog = _read_file(path, relative(path, root), number, ledger)
        if dialog is not None:
            dialogs.append(dialog)
    return dialogs


def _case_files(root: Path, source: str) -> list[tuple[int, Path]]:
    if not root.is_dir():
        raise IngestError(
            f"CPsyCounD: {root} is not a directory; expected the folder holding the case_<N>.txt files "
            "(fix sources.<name>.path in params.yaml)"
        )
    files = []
    for path in root.iterdir():
        match = _FILE_NAME.fullmatch(path.name)
        if match and is_data_file(path, source):
            files.append((int(match.group(1)), path))
    if not files:
        raise IngestError(
            f"CPsyCounD: no case_<N>.txt files in {root}; expected the folder that holds them directly "
            "(fix sources.<name>.path in params.yaml)"
        )
    # File names sort lexicographically (case_10 before case_2); the case number is the order.
    files.sort(key=lambda item: (item[0], item[1].name))
    return files


def _read_file(path: Path, rel: str, number: int, ledger: Ledger) -> ParsedDialog | None:
    """One file -> ParsedDialog, or None after quarantining the file with the reason."""
    text, escaped, error = decode_utf8(read_bytes(path, ledger.source))
    if text is None:
        ledger.quarantine(rel, "-", "invalid_utf8", f"{rel} is not valid UTF-8 ({error})", escaped)
        return None
    if not text.strip():
        ledger.quarantine(rel, "-", "empty_file", f"{rel} is empty or holds only whitespace", text)
        return None

    utterances: list[tuple[str, int, list[str]]] = []  # (role, first line, lines of text)
    stray_line = 0  # first line with text before any speaker prefix
    for line_no, line in enumerate(split_lines(text), start=1):
        kind = GRAMMAR.classify(line)
        if kind.kind == "prefix":
            utterances.append((kind.role, line_no, [kind.text]))
        elif kind.kind == "near_miss":
            ledger.quarantine(
                rel, str(line_no), "unparsed_speaker_prefix",
                f"{rel}:{line_no}: {kind.why}; expected {GRAMMAR.expected} at the start of the line "
                "(fix the line: it would otherwise join the other speaker's utterance)", text,
            )
            return None
        elif not line.strip():
            continue  # blank lines separate utterances
        elif utterances:
            utterances[-1][2].append(line)  # numbered lists, stage directions: part of the current utterance
        elif not stray_line:
            stray_line = line_no
    turns = [ParsedTurn(role=role, text="\n".join(lines), location=f"{rel}:{first}") for role, first, lines in utterances]

    if not turns:
        ledger.quarantine(
            rel, "-", "no_speaker_prefix",
            f"{rel} has no line starting with 来访者： or 心理咨询师：, so no utterance can be attributed", text,
        )
        return None
    if stray_line:
        ledger.quarantine(
            rel, str(stray_line), "text_before_first_speaker",
            f"{rel}:{stray_line} has text before the first 来访者：/心理咨询师： line; it belongs to no speaker", text,
        )
        return None
    return ParsedDialog(
        key=f"case_{number}", file=rel, record="-", turns=turns, raw=text, n_records=1, topic=None,
        meta={"case": number, "file_line_endings": line_endings(text)},
    )

