"""Issue 12: one id naming different content is quarantined in every format (none of the versions is kept);
identical copies keep the first; AnnoMI's genuine extra annotators (same utterance texts) still merge."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import polars as pl

from counseltune.ingest import annomi, cpsycound, cpsycoune, kmi, psydtcorpus
from counseltune.ingest.base import IngestOptions, Ledger, SourceTables, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def ingest(reader, root: Path, language: str = "zh", **options) -> tuple[SourceTables, Ledger]:
    ledger = Ledger("src", reader.UNIT)
    parsed = reader.read(root, ledger, options)
    tables = build_tables("src", "fmt", parsed, ledger, IngestOptions(language=language))
    assert ledger.records_in == ledger.kept + sum(ledger.merged.values()) + ledger.quarantined
    return tables, ledger


def psydt(i: int, text: str) -> dict:
    return {"id": i, "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "嗯，说说看。"}]}


def test_psydtcorpus_same_id_different_content_quarantines_both(tmp_path):
    (tmp_path / "x_train.json").write_text(json.dumps([psydt(1, "我失眠。"), psydt(2, "我焦虑。"), psydt(1, "我和室友吵架了。")]), encoding="utf-8")
    tables, ledger = ingest(psydtcorpus, tmp_path)
    assert tables.dialogs["dialog_id"].to_list() == ["src:x_train/2"]
    assert tables.quarantine.select("record", "reason").rows() == [("0", "conflicting_duplicate_key"), ("2", "conflicting_duplicate_key")]
    assert "x_train.json record 0, x_train.json record 2" in tables.quarantine["detail"][0]


def test_kmi_same_category_and_id_with_different_dialogue_quarantines_both(tmp_path):
    name = "KMI_정신건강_id1~.json"
    records = json.loads((FIXTURES / "kmi" / name).read_text(encoding="utf-8"))
    other = json.loads(json.dumps(records[1]))
    other["id"] = records[0]["id"]
    (tmp_path / name).write_text(json.dumps([records[0], records[1]], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "KMI_정신건강_id1~ (2).json").write_text(json.dumps([other], ensure_ascii=False), encoding="utf-8")
    tables, ledger = ingest(kmi, tmp_path, language="ko")
    assert ledger.reasons() == {"conflicting_duplicate_key": 2} and tables.dialogs.height == 1


def test_cpsycound_case_numbers_that_collide_with_different_text_quarantine_both(tmp_path):
    (tmp_path / "case_1.txt").write_text("来访者：我失眠。\n\n心理咨询师：多久了？\n", encoding="utf-8")
    (tmp_path / "case_01.txt").write_text("来访者：我焦虑。\n\n心理咨询师：为什么？\n", encoding="utf-8")
    (tmp_path / "case_2.txt").write_text("来访者：你好。\n\n心理咨询师：你好。\n", encoding="utf-8")
    (tmp_path / "case_02.txt").write_text("来访者：你好。\r\n\r\n心理咨询师：你好。\r\n", encoding="utf-8")  # same dialog, CRLF
    tables, ledger = ingest(cpsycound, tmp_path)
    assert ledger.reasons() == {"conflicting_duplicate_key": 2, "duplicate_key": 1}
    assert tables.dialogs["dialog_id"].to_list() == ["src:case_2"]


def test_cpsycoune_case_numbers_that_collide_with_different_text_quarantine_both(tmp_path):
    (tmp_path / "Career").mkdir()
    (tmp_path / "Career" / "1.json").write_text('["求助者：我失眠。", "支持者：多久了？"]', encoding="utf-8")
    (tmp_path / "Career" / "01.json").write_text('["求助者：我焦虑。", "支持者：为什么？"]', encoding="utf-8")
    tables, ledger = ingest(cpsycoune, tmp_path)
    assert ledger.reasons() == {"conflicting_duplicate_key": 2} and tables.dialogs.height == 0


# --- AnnoMI: a transcript relabelled with an existing id -------------------------------------------------

def relabelled(tmp_path: Path, name: str, into: str, annotator: str | None) -> Path:
    """The fixture CSV plus transcript 3's rows copied under transcript_id `into` (another annotator id)."""
    text = (FIXTURES / "annomi" / name).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    copies = [row | {"transcript_id": into} | ({"annotator_id": annotator} if annotator else {}) for row in rows if row["transcript_id"] == "3"]
    out = io.StringIO()
    csv.DictWriter(out, list(rows[0]), lineterminator="\n").writerows(copies)
    (tmp_path / name).write_text(text + out.getvalue(), encoding="utf-8")
    return tmp_path


def test_annomi_full_relabelled_transcript_is_not_taken_as_extra_annotators(tmp_path):
    before, _ = ingest(annomi, FIXTURES / "annomi", language="en")
    tables, ledger = ingest(annomi, relabelled(tmp_path, "AnnoMI-full.csv", into="12", annotator="7"), language="en")
    n_12 = (FIXTURES / "annomi" / "AnnoMI-full.csv").read_text(encoding="utf-8").count("\nlow,12,")
    copied = before.stats["records_in"] - n_12
    # every row of transcript 12 (its own and the impostor's) is quarantined; transcript 3 is untouched
    assert ledger.reasons() == {"conflicting_transcript_id": n_12 + copied}
    assert tables.dialogs["dialog_id"].to_list() == ["src:3"]
    assert tables.turns.filter(pl.col("dialog_id") == "src:3").equals(before.turns.filter(pl.col("dialog_id") == "src:3"))
    assert "transcript_id 12 names more than one transcript (utterance_id 0 differs" in tables.quarantine["detail"][0]


def test_annomi_simple_relabelled_transcript_does_not_append_utterances(tmp_path):
    shutil.copy(FIXTURES / "annomi" / "AnnoMI-full.csv", tmp_path)
    tables, ledger = ingest(annomi, relabelled(tmp_path, "AnnoMI-simple.csv", into="12", annotator=None), language="en", variant="simple")
    assert set(ledger.reasons()) == {"conflicting_transcript_id"}
    assert tables.dialogs["dialog_id"].to_list() == ["src:3"]


def test_annomi_genuine_extra_annotators_still_merge(tmp_path):
    # transcript 3's rows again under a new annotator id: same utterance texts -> a further annotator
    tables, ledger = ingest(annomi, relabelled(tmp_path, "AnnoMI-full.csv", into="3", annotator="8"), language="en")
    assert ledger.quarantined == 0 and tables.dialogs.height == 2
    assert set(tables.turns.filter(pl.col("dialog_id") == "src:3")["n_annotators"]) == {2}
