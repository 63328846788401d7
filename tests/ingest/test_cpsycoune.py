"""CPsyCounE reader: <Topic>/<n>.json arrays -> ParsedDialogs -> validated tables, nothing dropped silently."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from counseltune.ingest import cpsycoune
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, ParsedDialog, SourceTables, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpsycoune"
RAW = Path(__file__).resolve().parents[2].parent / "shared/data/raw"


def ingest(root: Path, empty_utterance: str = "drop") -> tuple[list[ParsedDialog], Ledger, SourceTables]:
    ledger = Ledger("cpsycoune", cpsycoune.UNIT)
    parsed = cpsycoune.read(root, ledger, {})
    tables = build_tables("cpsycoune", "cpsycoune", parsed, ledger, IngestOptions(language="zh", empty_utterance=empty_utterance))
    assert ledger.records_in == ledger.kept + sum(ledger.merged.values()) + ledger.quarantined
    return parsed, ledger, tables


def write(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return root


GOOD = json.dumps(["求助者：你好。", "支持者：你好，请讲。"], ensure_ascii=False).encode()


# --- well-formed files ---------------------------------------------------------------------------

def test_topics_are_sorted_by_name_then_cases_numerically_and_other_files_ignored():
    parsed, ledger, _ = ingest(FIXTURES)
    assert [d.key for d in parsed] == [
        "Emotion&Stress/1", "Family Relationship/1", "Family Relationship/2", "Family Relationship/10",
    ]  # SOURCE.md at the root is not a record
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (4, 4, 0)


def test_topic_is_the_folder_name_and_dialog_ids_replace_spaces():
    parsed, _, tables = ingest(FIXTURES)
    assert [d.topic for d in parsed] == ["Emotion&Stress", "Family Relationship", "Family Relationship", "Family Relationship"]
    assert tables.dialogs["dialog_id"].to_list() == [
        "cpsycoune:Emotion&Stress/1", "cpsycoune:Family_Relationship/1",
        "cpsycoune:Family_Relationship/2", "cpsycoune:Family_Relationship/10",
    ]
    row = tables.dialogs.row(1, named=True)
    assert row["topic"] == "Family Relationship" and row["provenance_file"] == "Family Relationship/1.json"
    assert row["provenance_record"] == "-" and json.loads(row["meta"]) == {"case": 1}


def test_role_prefixes_map_to_client_and_counselor_and_are_removed():
    parsed, _, tables = ingest(FIXTURES)
    turns = parsed[0].turns
    assert [t.role for t in turns] == ["client", "counselor", "client", "counselor"]
    assert turns[0].text == "我最近压力很大，晚上睡不着。"
    assert turns[3].text == "我们一起看看工作里哪些部分最让你紧张。"
    assert tables.turns.height == 10


def test_turn_locations_name_the_file_and_element_index():
    parsed, _, _ = ingest(FIXTURES)
    assert [t.location for t in parsed[3].turns] == ["Family Relationship/10.json#0", "Family Relationship/10.json#1"]


def test_ascii_colon_and_a_bom_are_accepted(tmp_path):
    data = json.dumps(["求助者:你好。", " 支持者: 你好。"], ensure_ascii=False).encode()
    write(tmp_path, "Career/1.json", b"\xef\xbb\xbf" + data)
    parsed, ledger, _ = ingest(tmp_path)
    assert [(t.role, t.text) for t in parsed[0].turns] == [("client", "你好。"), ("counselor", " 你好。")]
    assert ledger.kept == 1


# --- bad files -----------------------------------------------------------------------------------

BAD = {
    "invalid_json": ('["求助者：你好。",, "支持者：你好。"]'.encode(), "1", ["line 1 column 12"]),
    "truncated_json": ('[\n  "求助者：你好。",\n  "支持者：你'.encode(), "3", ["line 3 column 3", "Unterminated string"]),
    "not_a_list": ('{"dialog": ["求助者：你好。"]}'.encode(), "-", ["dict"]),
    "bad_element": ('["求助者：你好。", ["支持者：你好。"]]'.encode(), "#1", ["#1", "list"]),
    "unknown_role": ('["求助者：你好。", "支持者：嗯。", "咨询师：你好。"]'.encode(), "#2", ["#2", "'咨询师：'"]),
    "empty_dialog": (b"[]", "-", ["empty"]),
    "invalid_utf8": ("[\"求助者：".encode() + b"\xc3\x28" + b'"]', "-", ["byte 14"]),
}
REASONS = {"truncated_json": "invalid_json"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_quarantined_with_file_record_and_reason(tmp_path, case):
    data, record, detail_parts = BAD[case]
    write(tmp_path, "Sex/1.json", data)
    write(tmp_path, "Sex/2.json", GOOD)
    parsed, ledger, tables = ingest(tmp_path)
    assert [d.key for d in parsed] == ["Sex/2"]
    rows = tables.quarantine.to_dicts()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["file"], row["record"], row["reason"]) == ("Sex/1.json", record, REASONS.get(case, case))
    assert "Sex/1.json" in row["detail"]
    for part in detail_parts:
        assert part in row["detail"]
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (2, 1, 1)


def test_invalid_utf8_keeps_an_escaped_copy_of_the_raw_bytes(tmp_path):
    write(tmp_path, "Sex/1.json", b'["\xff"]')
    _, _, tables = ingest(tmp_path)
    assert tables.quarantine["raw"].to_list() == ['["\\xff"]']


def test_role_prefix_with_nothing_after_it_is_quarantined_as_empty_utterance_when_asked(tmp_path):
    write(tmp_path, "Sex/1.json", '["求助者：你好。", "支持者："]'.encode())
    _, ledger, tables = ingest(tmp_path, empty_utterance="quarantine")
    row = tables.quarantine.row(0, named=True)
    assert (row["file"], row["record"], row["reason"]) == ("Sex/1.json", "-", "empty_utterance")
    assert "Sex/1.json#1" in row["detail"]
    assert (ledger.kept, ledger.quarantined) == (0, 1)


def test_missing_root_raises_ingest_error_naming_the_path(tmp_path):
    with pytest.raises(IngestError, match="nope.*topic folders.*params.yaml"):
        cpsycoune.read(tmp_path / "nope", Ledger("cpsycoune", "file"), {})


def test_root_without_topic_json_files_raises_ingest_error(tmp_path):
    write(tmp_path, "SOURCE.md", b"# notes\n")
    write(tmp_path, "Career/notes.txt", b"not a case\n")
    with pytest.raises(IngestError, match="no <Topic>/<n>.json files"):
        cpsycoune.read(tmp_path, Ledger("cpsycoune", "file"), {})


# --- the real corpus -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (RAW / "CPsyCounE").is_dir(), reason=f"real CPsyCounE not present at {RAW / 'CPsyCounE'}")
def test_real_cpsycoune_matches_the_documented_facts():
    parsed, ledger, tables = ingest(RAW / "CPsyCounE")
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (45, 45, 0)
    assert sum(len(d.turns) for d in parsed) == 592
    assert Counter(t.role for d in parsed for t in d.turns) == {"client": 296, "counselor": 296}
    assert all(8 <= len(d.turns) <= 18 for d in parsed)
    assert Counter(d.topic for d in parsed) == {topic: 5 for topic in (
        "Emotion&Stress", "Love&Marriage", "Family Relationship", "Social Relationship", "Mental Disease",
        "Self-growth", "Education", "Career", "Sex",
    )}
    assert tables.turns.height == 592
