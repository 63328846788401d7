"""KMI pre-release JSON files (KMI_<category>_id1~.json, one array element per dialog) -> ParsedDialogs."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from counseltune.ingest.base import IngestError, Ledger, ParsedDialog, ParsedTurn, relative
from counseltune.ingest.files import is_data_file, read_json_array

UNIT = "record"
LANGUAGE = "ko"

PATTERN = "KMI_*.json"
ROLES = {"Therapist": "counselor", "Client": "client"}
THERAPIST_LABELS = {
    "Open Question": ("question", "open_question"),
    "Closed Question": ("question", "closed_question"),
    "Simple Reflection": ("reflection", "simple_reflection"),
    "Complex Reflection": ("reflection", "complex_reflection"),
    "Affirm": ("other", "affirm"),
    "General": ("other", "general"),
    "Give Information": ("therapist_input", "information"),
    "Advise": ("therapist_input", "advice"),
}
# KMI marks only change talk; an unlabelled client turn stays None (not 'neutral': that would be invented).
CLIENT_LABELS = {"Change Talk": "change"}
TEXT_FIELDS = {"ko": "utterance_ko", "en": "utterance_en"}


class _Reject(Exception):
    """One record cannot become a dialog: (reason, detail)."""


MULTI_RECORD_FILES = True  # a file that breaks off part-way fails the source unless on_truncated_file: salvage


def read(root: Path, ledger: Ledger, options: dict, on_truncated_file: str = "fail") -> list[ParsedDialog]:
    """Read every KMI_*.json under `root`; options['text_language'] ('ko' | 'en') picks the utterance field."""
    language = options.get("text_language", "ko")
    if language not in TEXT_FIELDS:
        raise IngestError(
            f"ingest[{ledger.source}]: options.text_language must be one of {sorted(TEXT_FIELDS)}, got {language!r}"
        )
    root = Path(root)
    dialogs: list[ParsedDialog] = []
    for path in _files(root, ledger.source):
        file = relative(path, root)
        for raw in read_json_array(path, file, ledger, on_truncated_file):
            ledger.seen()
            try:
                dialogs.append(_dialog(raw.value, raw.index, file, TEXT_FIELDS[language], ledger, raw.raw))
            except _Reject as reject:
                reason, detail = reject.args
                ledger.quarantine(file, str(raw.index), reason, f"{file} record {raw.index}: {detail}", raw.raw)
    return dialogs


def _files(root: Path, source: str) -> list[Path]:
    """KMI_*.json directly under root, ordered by NFC name; IngestError when there are none."""
    expected = f"{PATTERN} files (e.g. KMI_정신건강_id1~.json, KMI_학업·고시_id1~.json)"
    fix = f"fix sources.{source}.path in params.yaml"
    if not root.is_dir():
        raise IngestError(f"ingest[{source}]: source directory {root} does not exist; expected {expected} there ({fix})")
    # A KMI_*.json link that cannot be followed (a loop) is an error here, not a file silently skipped.
    found = sorted((p for p in root.glob(PATTERN) if is_data_file(p, source)), key=lambda p: unicodedata.normalize("NFC", p.name))
    if not found:
        raise IngestError(f"ingest[{source}]: no {expected} in {root} ({fix})")
    return found


def _dialog(record: Any, index: int, file: str, text_field: str, ledger: Ledger, raw: str) -> ParsedDialog:
    """One ParsedDialog from one raw KMI record; raises _Reject naming what is wrong."""
    if not isinstance(record, dict) or not isinstance(record.get("dialogue"), list):
        raise _Reject("missing_dialogue", "not an object with a 'dialogue' list")
    ident, category = record.get("id"), record.get("category")
    if not (isinstance(ident, int) and not isinstance(ident, bool) or isinstance(ident, str) and ident.strip()):
        raise _Reject("missing_key", f"'id' is {ident!r}, not an integer or a non-empty string")
    if not (isinstance(category, str) and category.strip()):
        raise _Reject("missing_key", f"'category' is {category!r}, not a non-empty string")
    turns = [_turn(utterance, i, f"{file}#{index}.{i}", text_field) for i, utterance in enumerate(record["dialogue"])]
    meta: dict[str, Any] = {"kmi_id": ident, "context": record.get("context"), "turns_declared": record.get("turns")}
    if record.get("turns") != len(turns):
        meta["turns_mismatch"] = True
        ledger.note("turns_field_mismatch")
    unlabelled = sum(1 for t in turns if t.role == "counselor" and t.mi_code is None)
    if unlabelled:  # kept uncoded: KMI labels every therapist turn, so this is worth seeing in the stats
        ledger.note("therapist_turns_without_label", unlabelled)
    return ParsedDialog(
        key=f"{category}/{ident}", file=file, record=str(index), turns=turns, raw=raw,
        topic=category, method="MI", meta=meta,
    )


def _turn(utterance: Any, i: int, location: str, text_field: str) -> ParsedTurn:
    """One utterance -> ParsedTurn with its MI codes; raises _Reject on a bad role, text or label."""
    if not isinstance(utterance, dict):
        raise _Reject("bad_utterance", f"turn {i} is not an object")
    role = utterance.get("role")
    if role not in ROLES:
        raise _Reject("unknown_role", f"turn {i} has unknown role {role!r} (expected Therapist or Client)")
    text = utterance.get(text_field)
    if not isinstance(text, str):
        raise _Reject("bad_utterance", f"turn {i} has no string {text_field!r} (got {type(text).__name__})")
    label = utterance.get("label")
    turn = ParsedTurn(role=ROLES[role], text=text, location=location)
    if label is None:
        return turn
    if not isinstance(label, str):
        raise _Reject("unknown_label", f"turn {i} ({role}) has a non-string label {label!r}")
    if role == "Therapist" and label in THERAPIST_LABELS:
        turn.mi_behavior, turn.mi_code = THERAPIST_LABELS[label]
    elif role == "Client" and label in CLIENT_LABELS:
        turn.client_talk = CLIENT_LABELS[label]
    elif label in THERAPIST_LABELS or label in CLIENT_LABELS:
        raise _Reject("label_role_mismatch", f"turn {i} is a {role} turn labelled {label!r}")
    else:
        raise _Reject("unknown_label", f"turn {i} ({role}) has unknown label {label!r}")
    return turn

