"""PsyDTCorpus reader: packing and single-turn-split files -> validated tables, with a balanced ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from counseltune.ingest import psydtcorpus
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "psydtcorpus"
PACKING = "PsyDTCorpus_train_mulit_turn_packing.json"
SPLIT = "PsyDTCorpus_test_single_turn_split.json"
SYS = "你是一位精通理情行为疗法的心理咨询师。"


def ingest(root: Path, options: dict | None = None, empty_utterance: str = "drop"):
    ledger = Ledger("psydt", psydtcorpus.UNIT)
    parsed = psydtcorpus.read(root, ledger, options or {})
    policy = IngestOptions(language=psydtcorpus.LANGUAGE, empty_utterance=empty_utterance)
    tables = build_tables("psydt", "psydtcorpus", parsed, ledger, policy)
    assert ledger.records_in == ledger.kept + sum(ledger.merged.values()) + ledger.quarantined
    return parsed, ledger, tables


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def sample(*pairs: tuple[str, str], **fields) -> dict:
    return {**fields, "messages": [{"role": r, "content": c} for r, c in pairs]}


GOOD = sample(
    ("system", SYS), ("user", "我最近总是失眠。"), ("assistant", "失眠让你白天也很疲惫吧。"), id=7, normalizedTag="情绪"
)


def texts(tables, dialog_id: str) -> list[tuple[str, str]]:
    turns = tables.turns.filter(tables.turns["dialog_id"] == dialog_id).sort("turn_index")
    return list(zip(turns["role"], turns["text"]))


def meta(tables, dialog_id: str) -> dict:
    row = tables.dialogs.filter(tables.dialogs["dialog_id"] == dialog_id)
    return json.loads(row["meta"][0])


# --- packing ---------------------------------------------------------------------------------------

def test_packing_samples_become_one_dialog_each(tmp_path):
    shutil.copy(FIXTURES / PACKING, tmp_path)
    _, ledger, tables = ingest(tmp_path)
    stem = PACKING.removesuffix(".json")
    assert tables.dialogs["dialog_id"].to_list() == [f"psydt:{stem}/0", f"psydt:{stem}/1", f"psydt:{stem}/2"]
    assert tables.dialogs["topic"].to_list() == ["婚恋", "工作", "学业"]
    assert tables.dialogs["n_turns"].to_list() == [6, 4, 7]
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (3, 3, 0)
    first = texts(tables, f"psydt:{stem}/0")
    assert [role for role, _ in first] == ["client", "counselor"] * 3
    assert first[0][1].startswith("我和男朋友在一起三年了")
    assert meta(tables, f"psydt:{stem}/1")["file_kind"] == "packing"
    assert meta(tables, f"psydt:{stem}/1")["ids"] == [1]
    assert meta(tables, f"psydt:{stem}/1")["normalized_tag"] == "工作"


def test_system_prompt_is_metadata_not_a_turn(tmp_path):
    shutil.copy(FIXTURES / PACKING, tmp_path)
    _, _, tables = ingest(tmp_path)
    assert "system" not in tables.turns["role"].to_list()
    for row in tables.dialogs.iter_rows(named=True):
        assert json.loads(row["meta"])["system_prompt"].startswith("你是一位精通理情行为疗法")
    # locations index the raw message list, so the first utterance is message 1 (message 0 is the prompt)
    first = tables.turns.filter(tables.turns["turn_index"] == 0)["location"].to_list()
    assert first == [f"{PACKING}#0.1", f"{PACKING}#1.1", f"{PACKING}#2.1"]


def test_dialog_without_system_prompt_is_kept(tmp_path):
    write(tmp_path / "x_train.json", [sample(("user", "你好"), ("assistant", "你好，想聊些什么？"))])
    parsed, _, tables = ingest(tmp_path)
    assert "system_prompt" not in parsed[0].meta
    assert parsed[0].turns[0].location == "x_train.json#0.0"
    assert tables.dialogs["dialog_id"].to_list() == ["psydt:x_train/0"]


def test_topic_is_none_when_tag_missing(tmp_path):
    write(tmp_path / "x_train.json", [sample(("user", "你好"), ("assistant", "你好。"))])
    _, _, tables = ingest(tmp_path)
    assert tables.dialogs["topic"].to_list() == [None]


# --- single-turn split ---------------------------------------------------------------------------

def test_split_samples_are_reassembled_without_duplicates(tmp_path):
    shutil.copy(FIXTURES / SPLIT, tmp_path)
    _, ledger, tables = ingest(tmp_path)
    stem = SPLIT.removesuffix(".json")
    ids = tables.dialogs["dialog_id"].to_list()
    assert ids == [f"psydt:{stem}/203", f"psydt:{stem}/2", f"psydt:{stem}/2/branch1"]
    assert tables.dialogs["n_turns"].to_list() == [6, 4, 4]
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (6, 3, 0)
    assert dict(ledger.merged) == {"history_repeated_in_split_sample": 3}
    family = meta(tables, f"psydt:{stem}/203")
    assert family["file_kind"] == "single_turn_split"
    assert family["ids"] == [201, 202, 203]  # every merged sample's id, in history order
    assert family["records"] == [5, 0, 3]
    assert family["system_prompt"].startswith("你是一位精通理情行为疗法")
    assert "ids" not in meta(tables, f"psydt:{stem}/2")
    # no utterance appears twice inside a dialog
    for dialog_id in ids:
        utterances = texts(tables, dialog_id)
        assert len(utterances) == len(set(utterances))


def test_conflicting_branch_is_kept_as_its_own_dialog(tmp_path):
    shutil.copy(FIXTURES / SPLIT, tmp_path)
    _, _, tables = ingest(tmp_path)
    stem = SPLIT.removesuffix(".json")
    main, branch = texts(tables, f"psydt:{stem}/2"), texts(tables, f"psydt:{stem}/2/branch1")
    assert main[:3] == branch[:3] and main[3] != branch[3]
    assert branch[3][1].startswith("听起来你已经很疲惫了")
    branch_meta = meta(tables, f"psydt:{stem}/2/branch1")
    assert (branch_meta["branch_of"], branch_meta["branch"], branch_meta["records"]) == (f"{stem}/2", 1, [4])
    assert tables.dialogs.filter(tables.dialogs["dialog_id"] == f"psydt:{stem}/2/branch1")["provenance_record"][0] == "4"


def test_split_reassembly_does_not_depend_on_sample_order(tmp_path):
    records = json.loads((FIXTURES / SPLIT).read_text(encoding="utf-8"))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    write(tmp_path / "a" / SPLIT, records)
    write(tmp_path / "b" / SPLIT, records[::-1])
    contents = []
    for sub in ("a", "b"):
        _, ledger, tables = ingest(tmp_path / sub)
        contents.append(sorted(tuple(texts(tables, d)) for d in tables.dialogs["dialog_id"]))
        assert dict(ledger.merged) == {"history_repeated_in_split_sample": 3}
    assert contents[0] == contents[1]


def test_split_samples_sharing_one_id_do_not_collide(tmp_path):
    base = [("system", SYS), ("user", "我和室友闹矛盾了。"), ("assistant", "发生了什么？"), ("user", "她总晚归。")]
    records = [
        sample(*base[:3], id="d1"),
        sample(*base, ("assistant", "她晚归影响到你休息了。"), id="d1"),
        sample(*base, ("assistant", "你希望她能顾及你的作息。"), id="d1"),
    ]
    write(tmp_path / "x_test_single_turn_split.json", records)
    _, ledger, tables = ingest(tmp_path)
    stem = "psydt:x_test_single_turn_split"
    assert tables.dialogs["dialog_id"].to_list() == [f"{stem}/d1", f"{stem}/d1/branch1"]
    assert ledger.reasons() == {}
    assert meta(tables, "psydt:x_test_single_turn_split/d1")["ids"] == ["d1", "d1"]


def test_identical_split_samples_are_merged_once(tmp_path):
    write(tmp_path / "x_test_single_turn_split.json", [GOOD, GOOD])
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 1
    assert dict(ledger.merged) == {"identical_split_sample": 1}


def test_split_samples_with_different_system_prompts_are_separate_dialogs(tmp_path):
    other = {**GOOD, "id": 8, "messages": [{"role": "system", "content": "另一段提示词"}, *GOOD["messages"][1:]]}
    write(tmp_path / "x_test_single_turn_split.json", [GOOD, other])
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 2 and not ledger.merged


# --- which files ---------------------------------------------------------------------------------

def test_both_files_are_read_by_default_in_name_order(tmp_path):
    for name in (PACKING, SPLIT):
        shutil.copy(FIXTURES / name, tmp_path)
    write(tmp_path / "unrelated.json", [GOOD])  # neither train nor test: not read
    _, ledger, tables = ingest(tmp_path)
    files = tables.dialogs["provenance_file"].unique(maintain_order=True).to_list()
    assert files == [SPLIT, PACKING]
    assert ledger.records_in == 9 and tables.dialogs.height == 6


def test_files_option_limits_which_files_are_read(tmp_path):
    for name in (PACKING, SPLIT):
        shutil.copy(FIXTURES / name, tmp_path)
    _, ledger, tables = ingest(tmp_path, {"files": [PACKING]})
    assert set(tables.dialogs["provenance_file"]) == {PACKING}
    assert ledger.records_in == 3


def test_files_option_naming_a_missing_file_raises(tmp_path):
    shutil.copy(FIXTURES / PACKING, tmp_path)
    with pytest.raises(IngestError, match="nope.json"):
        ingest(tmp_path, {"files": ["nope.json"]})


def test_missing_root_raises_naming_path_and_expected_files(tmp_path):
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "absent")
    message = str(err.value)
    assert str(tmp_path / "absent") in message and PACKING in message and "sources.psydt.path" in message


def test_root_without_matching_files_raises(tmp_path):
    write(tmp_path / "other.json", [GOOD])
    with pytest.raises(IngestError, match="sources.psydt.path"):
        ingest(tmp_path)


# --- bad records -----------------------------------------------------------------------------------

BAD = {
    "not_an_object": (["user", "你好"], "missing_messages"),
    "no_messages_list": ({"id": 1, "conversation": []}, "missing_messages"),
    "message_without_content": ({"id": 1, "messages": [{"role": "user"}]}, "bad_message"),
    "content_not_a_string": ({"messages": [{"role": "user", "content": ["你好"]}]}, "bad_message"),
    "unknown_role": (sample(("user", "你好"), ("tool", "{}"), ("assistant", "嗯。")), "unknown_role"),
    "system_not_first": (sample(("user", "你好"), ("system", SYS), ("assistant", "你好。")), "system_not_first"),
    "only_system_prompt": (sample(("system", SYS)), "empty_dialog"),
}


@pytest.mark.parametrize("bad, reason", BAD.values(), ids=BAD.keys())
def test_malformed_sample_is_quarantined_with_reason(tmp_path, bad, reason):
    write(tmp_path / "x_train.json", [GOOD, bad])
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 1
    assert (ledger.records_in, ledger.kept, ledger.quarantined) == (2, 1, 1)
    row = tables.quarantine.row(0, named=True)
    assert (row["file"], row["record"], row["reason"], row["n_records"]) == ("x_train.json", "1", reason, 1)
    assert "record 1" in row["detail"] and json.loads(row["raw"]) == bad


def test_malformed_split_sample_is_quarantined_not_reassembled(tmp_path):
    write(tmp_path / "x_test_single_turn_split.json", [GOOD, BAD["unknown_role"][0]])
    _, ledger, _ = ingest(tmp_path)
    assert ledger.reasons() == {"unknown_role": 1} and ledger.kept == 1


def test_empty_content_is_left_to_build_tables(tmp_path):
    write(tmp_path / "x_train.json", [sample(("user", "你好"), ("assistant", "  "))])
    parsed, ledger, _ = ingest(tmp_path, empty_utterance="quarantine")
    assert len(parsed) == 1  # the reader passes it on; the central check rejects it
    assert ledger.reasons() == {"empty_utterance": 1}


def test_truncated_json_fails_the_source_by_default(tmp_path):
    text = (FIXTURES / PACKING).read_text(encoding="utf-8")
    (tmp_path / PACKING).write_text(text[: len(text) // 2], encoding="utf-8")
    shutil.copy(FIXTURES / SPLIT, tmp_path)
    with pytest.raises(IngestError) as err:
        ingest(tmp_path)
    assert PACKING in str(err.value) and "line" in str(err.value) and "column" in str(err.value)


def test_invalid_utf8_part_way_is_salvaged_up_to_the_bad_byte(tmp_path):
    data = (FIXTURES / PACKING).read_bytes().replace("学业".encode(), b"\xff\xfe", 1)  # inside record 2
    (tmp_path / PACKING).write_bytes(data)
    with pytest.raises(IngestError, match="invalid UTF-8"):
        ingest(tmp_path)
    ledger = Ledger("psydt", psydtcorpus.UNIT)
    parsed = psydtcorpus.read(tmp_path, ledger, {}, on_truncated_file="salvage")
    assert len(parsed) == 2 and ledger.reasons() == {"truncated_file": 1}
    row = ledger.rows[0]
    bad_at = data.index(b"\xff")
    assert row["file"] == PACKING and row["record"] == f"#2@byte {bad_at}" and "\\xff" in row["raw"]


def test_top_level_object_fails_the_source_and_is_one_record_when_salvaged(tmp_path):
    write(tmp_path / "x_train.json", {"data": [GOOD]})
    with pytest.raises(IngestError, match="top level is a JSON dict"):
        ingest(tmp_path)
    ledger = Ledger("psydt", psydtcorpus.UNIT)
    assert psydtcorpus.read(tmp_path, ledger, {}, on_truncated_file="salvage") == []
    assert (ledger.records_in, ledger.reasons()) == (1, {"truncated_file": 1})


def test_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / PACKING).write_bytes(b"\xef\xbb\xbf" + (FIXTURES / PACKING).read_bytes())
    _, ledger, tables = ingest(tmp_path)
    assert tables.dialogs.height == 3 and ledger.quarantined == 0


def test_duplicate_ids_in_packing_file_are_quarantined_by_build_tables(tmp_path):
    write(tmp_path / "x_train.json", [GOOD, GOOD])
    _, ledger, tables = ingest(tmp_path)
    assert ledger.reasons() == {"duplicate_key": 1} and tables.quarantine["record"].to_list() == ["1"]
