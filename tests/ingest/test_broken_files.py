"""Issue 12: multi-record files that break off, deeply nested JSON, symlink loops — no source vanishes quietly.

Every fixture is generated here in a tmp dir: real files, read through the same entry points the stage uses
(read_source / ingest_source, and the CLI once).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from counseltune.ingest import cpsycound, cpsycoune, kmi, psydtcorpus
from counseltune.ingest.base import IngestError, Ledger
from counseltune.ingest.run import ingest_source, read_source

KMI_FILE = "KMI_정신건강_id1~.json"


def kmi_record(i: int) -> dict:
    return {
        "id": i, "category": "정신건강", "context": "요즘 잠을 못 자요.", "turns": 2,
        "dialogue": [
            {"role": "Client", "utterance_ko": f"잠이 안 와요 {i}.", "utterance_en": "I can't sleep.", "label": None},
            {"role": "Therapist", "utterance_ko": "언제부터 그랬나요?", "utterance_en": "Since when?", "label": "Open Question"},
        ],
    }


def psydt_record(i: int) -> dict:
    return {"id": i, "normalizedTag": "情绪", "messages": [
        {"role": "system", "content": "你是一位心理咨询师。"},
        {"role": "user", "content": f"我最近总是失眠，第{i}天了。"},
        {"role": "assistant", "content": "失眠让你白天也很疲惫吧。"},
    ]}


def dump(records: list) -> str:
    return json.dumps(records, ensure_ascii=False, indent=1)


def with_source(params: dict, name: str, fmt: str, path: Path, language: str, **overrides) -> dict:
    params = copy.deepcopy(params)
    params["sources"] = {name: {"format": fmt, "path": str(path), "language": language, **overrides}}
    return params


# --- 1. a truncated multi-record file fails the source ---------------------------------------------

def test_psydtcorpus_train_file_cut_short_fails_the_source(tmp_path, params):
    # The tester's case: 2,000 train dialogs cut short + a 40-dialog test file gave "41 records -> 40 dialogs,
    # 1 quarantined" (2.4%) and exit 0.
    train = dump([psydt_record(i) for i in range(2000)])
    (tmp_path / "PsyDTCorpus_train_mulit_turn_packing.json").write_text(train[: len(train) // 3], encoding="utf-8")
    (tmp_path / "PsyDTCorpus_test_packing.json").write_text(dump([psydt_record(i) for i in range(40)]), encoding="utf-8")
    p = with_source(params, "psydt", "psydtcorpus", tmp_path, "zh")
    with pytest.raises(IngestError) as err:
        ingest_source(p, "psydt", tmp_path, tmp_path / "out", tmp_path / "stats.json")
    message = str(err.value)
    salvageable = len(json.loads(train[: train.rindex("},\n {", 0, len(train) // 3) + 1] + "]"))
    assert "PsyDTCorpus_train_mulit_turn_packing.json breaks off at byte" in message
    assert f"the {salvageable} record(s) before that point parse" in message and "on_truncated_file: salvage" in message
    assert "\n" not in message and not (tmp_path / "out").exists()


def test_kmi_file_cut_short_fails_and_salvage_keeps_the_records_before_the_cut(tmp_path, params):
    text = dump([kmi_record(i) for i in range(1, 601)])
    cut = len(text) // 2
    (tmp_path / KMI_FILE).write_text(text[:cut], encoding="utf-8")
    salvageable = text[:cut].count('"category"') - 1  # the last record is cut inside
    with pytest.raises(IngestError, match=f"{KMI_FILE} breaks off at byte \\d+ .*the {salvageable} record"):
        read_source(with_source(params, "kmi", "kmi", tmp_path, "ko"), "kmi", tmp_path)

    tables = read_source(with_source(params, "kmi", "kmi", tmp_path, "ko", on_truncated_file="salvage"), "kmi", tmp_path)
    assert tables.dialogs.height == salvageable
    row = tables.quarantine.row(0, named=True)
    assert (tables.quarantine.height, row["file"], row["reason"], row["n_records"]) == (1, KMI_FILE, "truncated_file", 1)
    assert row["record"].startswith(f"#{salvageable}@byte ")
    assert f"{salvageable} record(s) before it salvaged" in row["detail"]
    assert tables.stats["truncated_files"][0]["records_salvaged"] == salvageable


def test_kmi_file_corrupt_in_the_middle_counts_the_unread_records_and_fails_even_when_salvaging(tmp_path, params):
    records = [kmi_record(i) for i in range(1, 601)]
    text = dump(records[:100]).removesuffix("]") + ", {garbage" + dump(records[100:]).removeprefix("[")
    (tmp_path / KMI_FILE).write_text(text, encoding="utf-8")
    p = with_source(params, "kmi", "kmi", tmp_path, "ko", on_truncated_file="salvage")
    tables = read_source(p, "kmi", tmp_path)
    lost = tables.quarantine["n_records"][0]
    assert tables.dialogs.height == 100 and 450 <= lost <= 550  # about 500 records' worth of bytes unread
    with pytest.raises(IngestError, match="quarantined .*above max_quarantine_share"):  # most of the source is gone
        ingest_source(p, "kmi", tmp_path, tmp_path / "out", tmp_path / "stats.json")


def test_annomi_csv_cut_mid_row_fails_the_source_and_salvage_quarantines_the_cut_row(tmp_path, params):
    data = (Path(__file__).resolve().parents[1] / "fixtures" / "annomi" / "AnnoMI-full.csv").read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 40  # 40 bytes into a row: half the file and a partial row remain
    (tmp_path / "AnnoMI-full.csv").write_bytes(data[:cut])
    line, row_start = data[:cut].count(b"\n") + 1, data.rindex(b"\n", 0, cut) + 1
    p = with_source(params, "annomi", "annomi", tmp_path, "en", method="MI")
    with pytest.raises(IngestError, match=f"AnnoMI-full.csv breaks off in its last row \\(line {line}, byte {row_start}\\)"):
        read_source(p, "annomi", tmp_path)
    p["sources"]["annomi"]["on_truncated_file"] = "salvage"
    tables = read_source(p, "annomi", tmp_path)
    assert tables.quarantine.select("record", "reason").rows() == [(f"line {line}@byte {row_start}", "truncated_file")]
    assert tables.stats["records_in"] == line - 1  # the complete rows + the cut one


def test_data_after_the_array_is_a_file_level_failure(tmp_path):
    records = [kmi_record(i) for i in range(1, 4)]
    (tmp_path / KMI_FILE).write_text(dump(records) + "\n" + dump(records), encoding="utf-8")  # two arrays pasted
    with pytest.raises(IngestError, match="data after the closing"):
        kmi.read(tmp_path, Ledger("kmi", kmi.UNIT), {})


def test_on_truncated_file_is_a_per_source_param_validated_by_the_schema(tmp_path, repo):
    from counseltune.config import ParamsError, load_params, source_policies

    text = (repo / "params.yaml").read_text(encoding="utf-8")
    per_source = text.replace("    options: {text_language: ko}\n", "    options: {text_language: ko}\n    on_truncated_file: salvage\n", 1)
    (tmp_path / "params.yaml").write_text(per_source, encoding="utf-8")
    params = load_params(tmp_path / "params.yaml")
    assert source_policies(params, "kmi")["on_truncated_file"] == "salvage"
    assert source_policies(params, "annomi")["on_truncated_file"] == "fail"  # the ingest: default
    (tmp_path / "params.yaml").write_text(per_source.replace("on_truncated_file: salvage", "on_truncated_file: maybe"), encoding="utf-8")
    with pytest.raises(ParamsError, match="on_truncated_file"):
        load_params(tmp_path / "params.yaml")


def test_cli_names_the_truncated_file_in_one_line_and_exits_1(tmp_path, repo):
    text = dump([kmi_record(i) for i in range(1, 30)])
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / KMI_FILE).write_text(text[:-100], encoding="utf-8")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "counseltune"), "ingest", "--source", "kmi", "--raw", str(raw),
         "--out-dir", str(tmp_path / "o"), "--stats", str(tmp_path / "s.json")],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("counseltune ingest: error: ingest[kmi]: ") and KMI_FILE in lines[0]


# --- 6. deeply nested JSON and symlink loops: one clear line, no traceback --------------------------

DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("reader, name", [(kmi, KMI_FILE), (psydtcorpus, "x_train.json")])
def test_deeply_nested_record_is_a_clear_error(tmp_path, reader, name):
    first = kmi_record(1) if reader is kmi else psydt_record(1)
    (tmp_path / name).write_text("[" + json.dumps(first) + ", " + DEEP + "]", encoding="utf-8")
    with pytest.raises(IngestError, match=f"{name} breaks off at byte .*record #1 is nested deeper than the JSON parser"):
        reader.read(tmp_path, Ledger("src", reader.UNIT), {})
    ledger = Ledger("src", reader.UNIT)
    assert len(reader.read(tmp_path, ledger, {}, on_truncated_file="salvage")) == 1
    assert ledger.salvaged_files[0]["reason"] == "nested_too_deep"


def test_deeply_nested_cpsycoune_file_is_quarantined_not_a_traceback(tmp_path):
    (tmp_path / "Career").mkdir()
    (tmp_path / "Career" / "1.json").write_text(DEEP, encoding="utf-8")
    (tmp_path / "Career" / "2.json").write_text('["求助者：你好。", "支持者：你好。"]', encoding="utf-8")
    ledger = Ledger("cpsycoune", cpsycoune.UNIT)
    assert len(cpsycoune.read(tmp_path, ledger, {})) == 1
    assert [(r["file"], r["reason"]) for r in ledger.rows] == [("Career/1.json", "invalid_json")]
    assert "nested deeper" in ledger.rows[0]["detail"]


def loop(path: Path) -> Path:
    os.symlink(path.name, path)  # a link to itself: ELOOP on open
    return path


@pytest.mark.parametrize("reader, make", [
    (kmi, lambda root: (root / KMI_FILE).write_text(dump([kmi_record(1)]), encoding="utf-8") and loop(root / "KMI_학업·고시_id1~.json")),
    (psydtcorpus, lambda root: loop(root / "x_train.json")),
    (cpsycound, lambda root: (root / "case_1.txt").write_text("来访者：你好。\n", encoding="utf-8") and loop(root / "case_2.txt")),
    (cpsycoune, lambda root: (root / "Career").mkdir() or loop(root / "Career" / "1.json")),
    (cpsycoune, lambda root: (root / "Career").mkdir() or loop(root / "Education")),  # a topic folder
], ids=["kmi", "psydtcorpus", "cpsycound", "cpsycoune", "cpsycoune_folder"])
def test_symlink_loop_in_a_source_folder_is_one_clear_error(tmp_path, reader, make):
    link = make(tmp_path)
    with pytest.raises(IngestError) as err:
        reader.read(tmp_path, Ledger("src", reader.UNIT), {})
    message = str(err.value)
    assert str(link) in message and "loops back on itself (ELOOP)" in message and "remove the link" in message
