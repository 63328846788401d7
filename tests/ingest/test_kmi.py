"""KMI pre-release reader: per-category JSON arrays -> validated tables with MI codes, balanced ledger."""

from __future__ import annotations

import copy
import json
import os
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from counseltune.ingest import kmi
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kmi"
MENTAL = "KMI_정신건강_id1~.json"
STUDY = "KMI_학업·고시_id1~.json"
REAL = Path(__file__).resolve().parents[2].parent / "shared/data/raw" / "KMI_prerelease"


def ingest(root: Path, options: dict | None = None, language: str = "ko"):
    ledger = Ledger("kmi", kmi.UNIT)
    parsed = kmi.read(root, ledger, options or {})
    tables = build_tables("kmi", "kmi", parsed, ledger, IngestOptions(language=language))
    assert ledger.records_in == ledger.kept + sum(ledger.merged.values()) + ledger.quarantined
    return parsed, ledger, tables


def fixture_records(name: str = MENTAL) -> list[dict]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def turns_of(tables, dialog_id: str) -> list[dict]:
    return tables.turns.filter(tables.turns["dialog_id"] == dialog_id).sort("turn_index").to_dicts()


# --- well-formed files -----------------------------------------------------------------------------

def test_dialogs_are_keyed_by_category_and_id(tmp_path):
    _, ledger, tables = ingest(FIXTURES)
    assert tables.dialogs["dialog_id"].to_list() == ["kmi:정신건강/1", "kmi:정신건강/3", "kmi:학업·고시/1"]
    assert tables.dialogs["topic"].to_list() == ["정신건강", "정신건강", "학업·고시"]
    assert set(tables.dialogs["method"]) == {"MI"} and set(tables.dialogs["language"]) == {"ko"}
    assert tables.dialogs["provenance_file"].to_list() == [MENTAL, MENTAL, STUDY]
    assert tables.dialogs["provenance_record"].to_list() == ["0", "1", "0"]
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (3, 3, 0)


def test_file_names_with_hangul_middle_dot_and_tilde_are_found():
    parsed, _, _ = ingest(FIXTURES)
    assert {d.file for d in parsed} == {MENTAL, STUDY}
    assert "\u00b7" in STUDY and "~" in STUDY
    assert parsed[0].turns[0].location == f"{MENTAL}#0.0"


def test_nfd_file_names_are_reported_in_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", STUDY)
    shutil.copy(FIXTURES / STUDY, tmp_path / nfd)
    if unicodedata.normalize("NFC", os.listdir(tmp_path)[0]) == os.listdir(tmp_path)[0]:
        pytest.skip("this file system normalizes file names to NFC itself")
    _, _, tables = ingest(tmp_path)
    assert tables.dialogs["provenance_file"].to_list() == [STUDY]
    assert tables.turns["location"][0] == f"{STUDY}#0.0"


def test_therapist_labels_map_to_behavior_family_and_code():
    _, _, tables = ingest(FIXTURES)
    counselor = tables.turns.filter(tables.turns["role"] == "counselor")
    pairs = set(zip(counselor["mi_behavior"], counselor["mi_code"]))
    assert pairs == {
        ("question", "open_question"), ("question", "closed_question"),
        ("reflection", "simple_reflection"), ("reflection", "complex_reflection"),
        ("other", "affirm"), ("other", "general"),
        ("therapist_input", "information"), ("therapist_input", "advice"),
    }
    assert counselor["client_talk"].null_count() == counselor.height


def test_change_talk_is_marked_and_unlabelled_client_turns_stay_none():
    _, _, tables = ingest(FIXTURES)
    client = tables.turns.filter(tables.turns["role"] == "client")
    assert Counter(client["client_talk"].to_list()) == Counter({"change": 3, None: 4})
    assert client["mi_code"].null_count() == client.height
    first = turns_of(tables, "kmi:정신건강/1")
    assert [t["client_talk"] for t in first if t["role"] == "client"] == [None, "change", None]


def test_korean_text_is_used_by_default():
    _, _, tables = ingest(FIXTURES)
    assert turns_of(tables, "kmi:정신건강/1")[0]["text"].startswith("안녕하세요")


def test_text_language_en_picks_english_utterances():
    _, _, tables = ingest(FIXTURES, {"text_language": "en"}, language="en")
    assert turns_of(tables, "kmi:정신건강/1")[0]["text"].startswith("Hello, could you tell me")
    assert set(tables.dialogs["language"]) == {"en"}


def test_unknown_text_language_raises():
    with pytest.raises(IngestError, match="text_language"):
        ingest(FIXTURES, {"text_language": "zh"})


def test_meta_keeps_kmi_id_context_and_declared_turns():
    _, ledger, tables = ingest(FIXTURES)
    meta = json.loads(tables.dialogs["meta"][1])
    assert meta == {
        "kmi_id": 3, "context": fixture_records()[1]["context"], "turns_declared": 5,
    }
    assert "turns_field_mismatch" not in ledger.notes


def test_turns_field_mismatch_is_kept_and_noted(tmp_path):
    records = fixture_records()
    records[0]["turns"] = 15
    write(tmp_path / MENTAL, records)
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 2
    meta = json.loads(tables.dialogs["meta"][0])
    assert meta["turns_mismatch"] is True and meta["turns_declared"] == 15
    assert ledger.notes["turns_field_mismatch"] == 1


def test_unlabelled_therapist_turn_is_kept_uncoded_and_noted(tmp_path):
    records = fixture_records()
    records[0]["dialogue"][2]["label"] = None
    write(tmp_path / MENTAL, records)
    _, ledger, tables = ingest(tmp_path)
    assert turns_of(tables, "kmi:정신건강/1")[2]["mi_code"] is None
    assert ledger.notes["therapist_turns_without_label"] == 1 and ledger.quarantined == 0


# --- bad records -----------------------------------------------------------------------------------

def _broken(change) -> dict:
    record = copy.deepcopy(fixture_records()[1])
    change(record)
    return record


BAD = {
    "unknown_role": (lambda r: r["dialogue"][1].update(role="Counselor"), "unknown_role", "turn 1"),
    "no_dialogue": (lambda r: r.pop("dialogue"), "missing_dialogue", "dialogue"),
    "dialogue_not_a_list": (lambda r: r.update(dialogue="..."), "missing_dialogue", "dialogue"),
    "missing_utterance": (lambda r: r["dialogue"][3].pop("utterance_ko"), "bad_utterance", "turn 3"),
    "utterance_not_a_string": (lambda r: r["dialogue"][0].update(utterance_ko=None), "bad_utterance", "turn 0"),
    "turn_not_an_object": (lambda r: r["dialogue"].insert(2, "네."), "bad_utterance", "turn 2"),
    "unknown_therapist_label": (lambda r: r["dialogue"][4].update(label="Reframe"), "unknown_label", "'Reframe'"),
    "client_with_therapist_label": (
        lambda r: r["dialogue"][1].update(label="Open Question"), "label_role_mismatch", "turn 1"
    ),
    "therapist_with_change_talk": (lambda r: r["dialogue"][0].update(label="Change Talk"), "label_role_mismatch", "turn 0"),
    "no_id": (lambda r: r.pop("id"), "missing_key", "'id'"),
    "no_category": (lambda r: r.update(category=""), "missing_key", "'category'"),
}


@pytest.mark.parametrize("change, reason, where", BAD.values(), ids=BAD.keys())
def test_malformed_record_is_quarantined_with_reason(tmp_path, change, reason, where):
    bad = _broken(change)
    write(tmp_path / MENTAL, [fixture_records()[0], bad])
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs["dialog_id"].to_list() == ["kmi:정신건강/1"]
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (2, 1, 1)
    row = tables.quarantine.row(0, named=True)
    assert (row["file"], row["record"], row["reason"], row["n_records"]) == (MENTAL, "1", reason, 1)
    assert where in row["detail"] and json.loads(row["raw"]) == bad


def test_record_that_is_not_an_object_is_quarantined(tmp_path):
    write(tmp_path / MENTAL, [fixture_records()[0], ["Therapist", "안녕하세요"]])
    _, ledger, _ = ingest(tmp_path)
    assert ledger.reasons() == {"missing_dialogue": 1}


def test_duplicate_category_and_id_is_quarantined_by_build_tables(tmp_path):
    shutil.copy(FIXTURES / MENTAL, tmp_path)
    rerun = "KMI_정신건강_재생성.json"  # sorts after MENTAL; repeats (정신건강, 1) in a second file
    write(tmp_path / rerun, [fixture_records()[0]])
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs["dialog_id"].to_list() == ["kmi:정신건강/1", "kmi:정신건강/3"]
    assert tables.dialogs["provenance_file"][0] == MENTAL  # the first occurrence wins
    row = tables.quarantine.row(0, named=True)
    assert (row["file"], row["record"], row["reason"]) == (rerun, "0", "duplicate_key")
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (3, 2, 1)


def test_duplicate_id_inside_one_file_is_quarantined(tmp_path):
    records = fixture_records()
    write(tmp_path / MENTAL, [*records, records[1]])
    _, ledger, tables = ingest(tmp_path)
    assert tables.quarantine.select("file", "record", "reason").rows() == [(MENTAL, "2", "duplicate_key")]


def test_truncated_json_fails_the_source_naming_file_and_salvageable_records(tmp_path):
    text = (FIXTURES / MENTAL).read_text(encoding="utf-8")
    (tmp_path / MENTAL).write_text(text[:-40], encoding="utf-8")
    shutil.copy(FIXTURES / STUDY, tmp_path)
    with pytest.raises(IngestError) as err:
        ingest(tmp_path)
    message = str(err.value)
    assert MENTAL in message and "byte" in message and "line" in message and "column" in message
    assert "the 1 record(s) before that point parse" in message and "on_truncated_file: salvage" in message


def test_truncated_json_salvages_the_records_before_the_cut_when_asked(tmp_path):
    text = (FIXTURES / MENTAL).read_text(encoding="utf-8")
    (tmp_path / MENTAL).write_text(text[:-40], encoding="utf-8")
    shutil.copy(FIXTURES / STUDY, tmp_path)
    ledger = Ledger("kmi", kmi.UNIT)
    parsed = kmi.read(tmp_path, ledger, {}, on_truncated_file="salvage")
    tables = build_tables("kmi", "kmi", parsed, ledger, IngestOptions(language="ko"))
    assert len(tables.dialogs) == 2  # record 0 of the cut file, and the other file
    assert (ledger.records_in, ledger.quarantined) == (3, 1)
    row = tables.quarantine.row(0, named=True)
    assert (row["file"], row["reason"], row["n_records"]) == (MENTAL, "truncated_file", 1)
    assert row["record"].startswith("#1@byte ") and "1 record(s) before it salvaged" in row["detail"]
    assert tables.stats["truncated_files"][0]["records_salvaged"] == 1


def test_invalid_utf8_fails_the_source_naming_the_byte(tmp_path):
    data = (FIXTURES / STUDY).read_bytes().replace("허무했어요".encode(), b"\xed\xa0\x80", 1)  # a lone surrogate
    (tmp_path / STUDY).write_bytes(data)
    bad_at = data.index(b"\xed\xa0\x80")
    with pytest.raises(IngestError, match=f"{STUDY} breaks off at byte {bad_at} .*invalid UTF-8"):
        ingest(tmp_path)


def test_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / STUDY).write_bytes(b"\xef\xbb\xbf" + (FIXTURES / STUDY).read_bytes())
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 1 and ledger.quarantined == 0


def test_missing_root_raises_naming_path_and_expected_files(tmp_path):
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "absent")
    message = str(err.value)
    assert str(tmp_path / "absent") in message and "KMI_*.json" in message and "sources.kmi.path" in message


def test_root_without_kmi_files_raises(tmp_path):
    write(tmp_path / "kmi.json", fixture_records())  # the published file name is not this format
    with pytest.raises(IngestError, match="KMI_\\*.json"):
        ingest(tmp_path)


# --- the real pre-release files --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real KMI pre-release files not present at {REAL}")
def test_real_kmi_prerelease_files_match_the_documented_facts():
    parsed, ledger, tables = ingest(REAL)
    assert Counter(d.topic for d in parsed) == {"정신건강": 193, "학업·고시": 92}
    assert (ledger.records_in, ledger.kept, sum(ledger.merged.values()), ledger.quarantined) == (285, 285, 0, 0)
    assert tables.quarantine.height == 0 and tables.dialogs.height == 285
    ids = {topic: {d.meta["kmi_id"] for d in parsed if d.topic == topic} for topic in ("정신건강", "학업·고시")}
    assert ids["정신건강"] == set(range(1, 199)) - {87, 90, 129, 146, 165}
    assert ids["학업·고시"] == set(range(1, 101)) - {28, 60, *range(93, 99)}
    assert not any(d.meta.get("turns_mismatch") for d in parsed) and "turns_field_mismatch" not in ledger.notes
    # label vocabulary: 7 of the 8 therapist labels (no "Advise") plus client change talk
    counselor = tables.turns.filter(tables.turns["role"] == "counselor")
    assert set(counselor["mi_code"]) == {
        "open_question", "closed_question", "simple_reflection", "complex_reflection", "affirm", "general", "information",
    }
    assert set(tables.turns.filter(tables.turns["role"] == "client")["client_talk"]) == {"change", None}
    assert tables.turns.height == 3571 + 1650  # no same-speaker merges, no empty utterance
    assert set(tables.dialogs["provenance_file"]) == {MENTAL, STUDY}
