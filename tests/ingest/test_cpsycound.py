"""CPsyCounD reader: case_<N>.txt transcripts -> ParsedDialogs -> validated tables, nothing dropped silently."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from counseltune.ingest import cpsycound
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, ParsedDialog, SourceTables, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpsycound"
RAW = Path(__file__).resolve().parents[2].parent / "shared/data/raw"


def ingest(root: Path, same_speaker: str = "merge", empty_utterance: str = "drop") -> tuple[list[ParsedDialog], Ledger, SourceTables]:
    ledger = Ledger("cpsycound", cpsycound.UNIT)
    parsed = cpsycound.read(root, ledger, {})
    options = IngestOptions(language="zh", same_speaker=same_speaker, empty_utterance=empty_utterance)
    tables = build_tables("cpsycound", "cpsycound", parsed, ledger, options)
    assert ledger.records_in == ledger.kept + sum(ledger.merged.values()) + ledger.quarantined
    return parsed, ledger, tables


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path


def only_quarantine_row(tables: SourceTables) -> dict:
    rows = tables.quarantine.to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


# --- well-formed files ---------------------------------------------------------------------------

def test_cases_are_read_in_numeric_order_and_other_files_are_ignored():
    parsed, ledger, tables = ingest(FIXTURES)
    assert [d.key for d in parsed] == ["case_2", "case_9", "case_10"]  # notes.md is not a record
    assert ledger.records_in == 3 and ledger.kept == 3 and ledger.quarantined == 0
    assert tables.dialogs["dialog_id"].to_list() == ["cpsycound:case_2", "cpsycound:case_9", "cpsycound:case_10"]


def test_fixture_folder_builds_valid_tables_with_provenance():
    parsed, _, tables = ingest(FIXTURES)
    row = tables.dialogs.row(0, named=True)
    assert row["provenance_file"] == "case_2.txt" and row["provenance_record"] == "-"
    assert row["topic"] is None and row["language"] == "zh" and row["n_turns"] == 4
    assert json.loads(row["meta"]) == {"case": 2, "file_line_endings": "lf"}
    assert parsed[0].raw == (FIXTURES / "case_2.txt").read_text(encoding="utf-8")
    assert tables.turns.filter(tables.turns["dialog_id"] == "cpsycound:case_2")["role"].to_list() == [
        "client", "counselor", "client", "counselor",
    ]


def test_speaker_prefix_is_removed_and_roles_are_mapped():
    parsed, _, _ = ingest(FIXTURES)
    first, second = parsed[0].turns[:2]
    assert (first.role, first.text) == ("client", "你好，我最近总是睡不好。")
    assert (second.role, second.text) == ("counselor", "你好，能具体说说睡不好的情况吗？")


def test_turn_locations_name_the_file_and_first_line_of_the_utterance():
    parsed, _, _ = ingest(FIXTURES)
    case_10 = parsed[2]
    assert [t.location for t in case_10.turns] == [
        "case_10.txt:1", "case_10.txt:3", "case_10.txt:7", "case_10.txt:9", "case_10.txt:13",
    ]


def test_continuation_lines_join_the_previous_utterance():
    parsed, _, _ = ingest(FIXTURES)
    turns = parsed[2].turns
    assert len(turns) == 5
    assert turns[1].text == "我给你几个建议：\n1. 深呼吸，慢慢数到四。\n2. 把复习计划写下来。"
    assert turns[3].text == "我们现在一起练习一下。\n（深呼吸练习）\n感觉怎么样？"


def test_unknown_speaker_names_continue_the_current_utterance_and_qualified_ones_start_their_own():
    # `妈妈：` is no speaker word: a quoted role-play line. `来访者（小李）：` is the client speaking (as in the
    # real case_56 `来访者（姚先生）：`), so it starts a client utterance instead of joining the counselor's.
    parsed, _, _ = ingest(FIXTURES)
    turns = parsed[1].turns
    assert [t.role for t in turns] == ["client", "counselor", "client", "client"]
    assert turns[1].text == "我们来做一个角色扮演，你来演妈妈。\n妈妈：你怎么又这么晚回家？"
    assert turns[2].text == "我只是想有自己的时间。"


def test_ascii_colon_and_leading_whitespace_before_the_speaker_are_accepted(tmp_path):
    root = write(tmp_path, "case_1.txt", "来访者:你好。\n\n  心理咨询师：你好。\n\n\u3000来访者: 谢谢。\n".encode())
    parsed, ledger, _ = ingest(root)
    assert [(t.role, t.text) for t in parsed[0].turns] == [("client", "你好。"), ("counselor", "你好。"), ("client", " 谢谢。")]
    assert ledger.kept == 1


def test_crlf_lf_and_bom_files_give_the_same_turns(tmp_path):
    text = "来访者：你好。\n\n心理咨询师：请讲。\n1. 第一点\n\n来访者：好的。\n"
    write(tmp_path, "case_1.txt", text.encode())
    write(tmp_path, "case_2.txt", text.replace("\n", "\r\n").encode())
    write(tmp_path, "case_3.txt", b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    parsed, ledger, tables = ingest(tmp_path)
    as_tuples = [[(t.role, t.text, t.location.split(":")[1]) for t in d.turns] for d in parsed]
    assert as_tuples[0] == as_tuples[1] == as_tuples[2]
    assert as_tuples[0][1] == ("counselor", "请讲。\n1. 第一点", "3")
    assert [d.meta["file_line_endings"] for d in parsed] == ["lf", "crlf", "crlf"]
    assert not parsed[2].raw.startswith("\ufeff")
    assert ledger.kept == 3 and tables.turns.height == 9


def test_identical_files_stay_separate_dialogs(tmp_path):
    # case_1762 = case_2274 = case_2301 in the real data: curation deduplicates, not the reader.
    text = (FIXTURES / "case_2.txt").read_bytes()
    for number in (1762, 2274, 2301):
        write(tmp_path, f"case_{number}.txt", text)
    parsed, ledger, tables = ingest(tmp_path)
    assert [d.key for d in parsed] == ["case_1762", "case_2274", "case_2301"]
    assert ledger.kept == 3 and tables.dialogs.height == 3


@pytest.mark.parametrize("policy, kept, turns, reason", [
    ("merge", 1, ["client", "counselor"], None),
    ("keep", 1, ["client", "client", "counselor"], None),
    ("quarantine", 0, [], "same_speaker_twice"),
], ids=["merge", "keep", "quarantine"])
def test_consecutive_same_speaker_utterances_follow_the_policy(tmp_path, policy, kept, turns, reason):
    write(tmp_path, "case_5.txt", "来访者：第一句。\n\n来访者：第二句。\n\n心理咨询师：嗯。\n".encode())
    parsed, ledger, tables = ingest(tmp_path, same_speaker=policy)
    assert len(parsed[0].turns) == 3  # the reader yields every utterance; base applies the policy
    assert ledger.kept == kept
    assert tables.turns["role"].to_list() == turns
    if policy == "merge":
        assert tables.turns["text"][0] == "第一句。\n第二句。"
        assert tables.turns["location"][0] == "case_5.txt:1"
    if reason:
        row = only_quarantine_row(tables)
        assert (row["file"], row["record"], row["reason"]) == ("case_5.txt", "-", reason)


# --- bad files -----------------------------------------------------------------------------------

def test_invalid_utf8_is_quarantined_with_file_and_reason(tmp_path):
    data = "来访者：你好".encode() + b"\xff\xfe" + "。\n".encode()
    write(tmp_path, "case_1.txt", data)
    write(tmp_path, "case_2.txt", (FIXTURES / "case_2.txt").read_bytes())
    parsed, ledger, tables = ingest(tmp_path)
    assert [d.key for d in parsed] == ["case_2"]
    row = only_quarantine_row(tables)
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "-", "invalid_utf8")
    assert "byte 18" in row["detail"] and "case_1.txt" in row["detail"]
    assert row["raw"] == "来访者：你好\\xff\\xfe。\n"
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (2, 1, 1)


@pytest.mark.parametrize("data", [b"", b"  \r\n\n\t\n", b"\xef\xbb\xbf"], ids=["empty", "whitespace_only", "bom_only"])
def test_empty_or_whitespace_only_file_is_quarantined_as_empty_file(tmp_path, data):
    write(tmp_path, "case_1.txt", data)
    parsed, ledger, tables = ingest(tmp_path)
    assert parsed == []
    row = only_quarantine_row(tables)
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "-", "empty_file")
    assert ledger.quarantined == 1


def test_text_before_the_first_speaker_quarantines_the_file(tmp_path):
    write(tmp_path, "case_1.txt", "\n咨询记录（第一次）\n\n来访者：你好。\n\n心理咨询师：你好。\n".encode())
    parsed, ledger, tables = ingest(tmp_path)
    assert parsed == []
    row = only_quarantine_row(tables)
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "2", "text_before_first_speaker")
    assert "case_1.txt:2" in row["detail"]
    assert row["raw"].startswith("\n咨询记录（第一次）")
    assert ledger.quarantined == 1


def test_file_without_a_known_speaker_is_quarantined_as_no_speaker_prefix(tmp_path):
    write(tmp_path, "case_1.txt", "求助者：你好。\n\n支持者：你好。\n".encode())
    parsed, ledger, tables = ingest(tmp_path)
    assert parsed == []
    row = only_quarantine_row(tables)
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "-", "no_speaker_prefix")
    assert ledger.quarantined == 1


def test_speaker_prefix_with_nothing_after_it_is_dropped_and_counted_by_default(tmp_path):
    # The real case_983 and case_1408 end like this: a bare `来访者：` as the last line.
    write(tmp_path, "case_1.txt", "来访者：你好。\r\n\r\n心理咨询师：你好。\r\n\r\n来访者：".encode())
    parsed, ledger, tables = ingest(tmp_path)
    assert tables.turns["text"].to_list() == ["你好。", "你好。"]
    assert tables.stats["events"]["empty_utterances_dropped"] == 1
    assert (ledger.kept, ledger.quarantined) == (1, 0)


def test_speaker_prefix_with_nothing_after_it_is_quarantined_when_the_policy_says_so(tmp_path):
    write(tmp_path, "case_1.txt", "来访者：你好。\r\n\r\n心理咨询师：你好。\r\n\r\n来访者：".encode())
    parsed, ledger, tables = ingest(tmp_path, empty_utterance="quarantine")
    assert parsed[0].turns[-1].text == ""  # the reader yields it; build_tables rejects the dialog
    row = only_quarantine_row(tables)
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "-", "empty_utterance")
    assert "case_1.txt:5" in row["detail"]
    assert (ledger.kept, ledger.quarantined) == (0, 1)


def test_missing_root_raises_ingest_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(IngestError, match="nope.*case_<N>.txt.*params.yaml"):
        cpsycound.read(missing, Ledger("cpsycound", "file"), {})


def test_root_without_case_files_raises_ingest_error(tmp_path):
    write(tmp_path, "SOURCE.md", b"# notes\n")
    (tmp_path / "Data").mkdir()  # the usual mistake: pointing at the parent of Data/
    with pytest.raises(IngestError, match=re.escape(f"no case_<N>.txt files in {tmp_path}")):
        cpsycound.read(tmp_path, Ledger("cpsycound", "file"), {})


# --- the real corpus -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (RAW / "CPsyCounD").is_dir(), reason=f"real CPsyCounD not present at {RAW / 'CPsyCounD'}")
def test_real_cpsycound_matches_the_documented_facts():
    ledger = Ledger("cpsycound", cpsycound.UNIT)
    parsed = cpsycound.read(RAW / "CPsyCounD" / "Data", ledger, {})
    # What SOURCE.md documents about the raw files.
    assert ledger.records_in == 3084 and len(parsed) == 3084 and ledger.quarantined == 0
    assert len({d.key for d in parsed}) == 3084
    assert all(d.turns[0].role == "client" for d in parsed)
    # SOURCE.md counts 49,780 utterances by the plain `来访者：`/`心理咨询师：` prefix. The reader also starts
    # an utterance at the 21 qualified prefixes of role-plays and couples (`来访者（姚先生）：`, `来访者1：`,
    # `心理咨询师（扮演丈夫）：` in 9 files; before, they joined the other speaker's utterance) and at the bare
    # `来访者` that ends case_1755 (before, glued to the counselor's last utterance): 49,780 + 21 + 1.
    assert sum(len(d.turns) for d in parsed) == 49780 + 21 + 1
    assert sum(d.turns[-1].role == "client" for d in parsed) == 731 + 1  # case_1755's bare 来访者
    assert sum(any(a.role == b.role for a, b in zip(d.turns, d.turns[1:])) for d in parsed) == 341 + 1
    assert sum(d.meta["file_line_endings"] == "crlf" for d in parsed) == 2050
    # Three files (case_983, case_1408: `来访者：`; case_1755: `来访者`) end on a bare speaker word (an empty,
    # truncated client utterance): by default that utterance is dropped and counted, and the dialogs are kept.
    tables = build_tables("cpsycound", "cpsycound", parsed, ledger, IngestOptions(language="zh"))
    assert (ledger.kept, ledger.quarantined) == (3084, 0)
    assert tables.stats["events"]["empty_utterances_dropped"] == 3
    assert tables.dialogs.height == 3084
