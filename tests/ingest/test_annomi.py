"""AnnoMI reader: fixtures in tests/fixtures/annomi (two transcripts; 12 has 3 annotators) through build_tables."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import polars as pl
import pytest

from counseltune.ingest import annomi
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, SourceTables, build_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annomi"
REAL = Path(__file__).resolve().parents[2].parent / "shared/data/raw" / "AnnoMI"
FULL = "AnnoMI-full.csv"
SIMPLE = "AnnoMI-simple.csv"


def ingest(root: Path, same_speaker: str = "merge", **options) -> tuple[SourceTables, Ledger]:
    ledger = Ledger("annomi", annomi.UNIT)
    parsed = annomi.read(root, ledger, options)
    tables = build_tables("annomi", "annomi", parsed, ledger, IngestOptions(language="en", method="MI", same_speaker=same_speaker))
    return tables, ledger


def turns_of(tables: SourceTables, key: str) -> list[dict]:
    return tables.turns.filter(pl.col("dialog_id") == f"annomi:{key}").sort("turn_index").to_dicts()


def meta_of(tables: SourceTables, key: str) -> dict:
    return tables.dialogs.filter(pl.col("dialog_id") == f"annomi:{key}").to_dicts()[0]


def fixture_with_rows(tmp_path: Path, *rows: dict, name: str = FULL) -> Path:
    """Copy a fixture CSV to tmp_path and append rows (a T3 client row with the given overrides)."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    base = {c: "n/a" for c in header} | {
        "mi_quality": "high", "transcript_id": "3", "video_title": 'Brief intervention: "Barbara"',
        "video_url": "https://example.org/video/3", "topic": "reducing alcohol consumption", "utterance_id": "11",
        "interlocutor": "client", "timestamp": "00:01:50", "utterance_text": "Okay.", "annotator_id": "4",
        "client_talk_type": "neutral",
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n", extrasaction="ignore")
    writer.writerows(base | row for row in rows)
    (tmp_path / name).write_text(text + out.getvalue(), encoding="utf-8")
    return tmp_path


def assert_balanced(tables: SourceTables, ledger: Ledger) -> None:
    stats = tables.stats
    assert stats["records_in"] == ledger.records_in == stats["kept"] + sum(stats["merged"].values()) + stats["quarantined"]
    assert stats["quarantined"] == tables.quarantine["n_records"].sum()


def test_majority_vote_keeps_one_row_per_utterance_with_agreement():
    tables, ledger = ingest(FIXTURES)
    stats = tables.stats
    assert (stats["records_in"], stats["kept"], stats["merged"], stats["quarantined"]) == (16, 9, {"extra_annotator_rows": 7}, 0)
    assert (stats["dialogs"], stats["turns"]) == (2, 9)
    assert_balanced(tables, ledger)
    turns = turns_of(tables, "12")
    # utterance 0: question (annotators 1, 2) beats reflection (0); the subtype comes from annotator 1.
    assert (turns[0]["mi_behavior"], turns[0]["mi_code"]) == ("question", "open_question")
    assert turns[0]["code_agreement"] == pytest.approx(2 / 3)
    assert turns[0]["n_annotators"] == 3
    assert turns[0]["location"] == f"{FULL}:3"
    # utterance 3: unanimous.
    assert (turns[3]["client_talk"], turns[3]["code_agreement"], turns[3]["n_annotators"]) == ("change", 1.0, 3)


def test_vote_ties_go_to_the_lowest_annotator_id():
    turns = turns_of(ingest(FIXTURES)[0], "12")
    # utterance 1: neutral / change / sustain from annotators 0 / 1 / 2.
    assert (turns[1]["client_talk"], turns[1]["code_agreement"], turns[1]["location"]) == ("neutral", pytest.approx(1 / 3), f"{FULL}:5")
    # utterance 2: annotator 2 (first in the file) says other, annotator 1 says therapist_input: 1 wins.
    assert (turns[2]["mi_behavior"], turns[2]["mi_code"]) == ("therapist_input", "information")
    assert (turns[2]["code_agreement"], turns[2]["n_annotators"], turns[2]["location"]) == (0.5, 2, f"{FULL}:9")


def test_first_rule_takes_the_lowest_annotator_id():
    tables, ledger = ingest(FIXTURES, annotator_rule="first")
    turns = turns_of(tables, "12")
    assert [(t["mi_behavior"], t["mi_code"], t["client_talk"]) for t in turns] == [
        ("reflection", "simple_reflection", None), (None, None, "neutral"),
        ("therapist_input", "information", None), (None, None, "change"),
    ]
    assert [t["code_agreement"] for t in turns] == pytest.approx([1 / 3, 1 / 3, 1 / 2, 1.0])
    assert ledger.merged == {"extra_annotator_rows": 7}


def test_utterances_are_ordered_by_integer_id():
    turns = turns_of(ingest(FIXTURES)[0], "3")
    # File order and string order are both 0, 1, 10, 2, 9; the integer order is 0, 1, 2, 9, 10.
    assert [t["location"] for t in turns] == [f"{FULL}:{n}" for n in (13, 14, 16, 18, 15)]
    assert [t["text"][:12] for t in turns] == ["Is it okay i", "Sure.", "So, let's se", "I want to cu", "I'd recommen"]


def test_codes_map_subtypes_and_roles():
    turns = turns_of(ingest(FIXTURES)[0], "3")
    assert [(t["role"], t["mi_behavior"], t["mi_code"], t["client_talk"]) for t in turns] == [
        ("counselor", "question", "open_question", None), ("client", None, None, "neutral"),
        ("counselor", "reflection", "complex_reflection", None), ("client", None, None, "change"),
        ("counselor", "therapist_input", "advice", None),
    ]
    assert {(t["code_agreement"], t["n_annotators"]) for t in turns} == {(1.0, 1)}


def test_simple_variant_has_behaviours_without_subtypes_or_agreement():
    tables, ledger = ingest(FIXTURES, variant="simple")
    assert (tables.stats["records_in"], tables.stats["kept"], tables.stats["merged"], tables.stats["turns"]) == (9, 9, {}, 9)
    turns = turns_of(tables, "12")
    assert [(t["mi_behavior"], t["client_talk"]) for t in turns] == [("question", None), (None, "neutral"), ("therapist_input", None), (None, "change")]
    # The simple file neither has subtypes nor says how many annotators stand behind a label.
    assert tables.turns.select(pl.col("mi_code", "code_agreement", "n_annotators").null_count()).row(0) == (9, 9, 9)
    assert turns_of(tables, "3")[2]["location"] == f"{SIMPLE}:5"
    assert turns_of(tables, "3")[3]["location"] == f"{SIMPLE}:7"  # after the embedded newline


def test_dialog_key_topic_method_and_meta():
    tables, _ = ingest(FIXTURES)
    dialog = meta_of(tables, "3")
    assert (dialog["topic"], dialog["method"], dialog["language"], dialog["n_turns"]) == ("reducing alcohol consumption", "MI", "en", 5)
    assert (dialog["provenance_file"], dialog["provenance_record"]) == (FULL, "transcript_id=3")
    assert json.loads(dialog["meta"]) == {
        "mi_quality": "high", "transcript_id": 3, "video_title": 'Brief intervention: "Barbara"',
        "video_url": "https://example.org/video/3",
    }
    assert json.loads(meta_of(tables, "12")["meta"])["mi_quality"] == "low"


def test_locations_point_at_the_physical_csv_line():
    lines = (FIXTURES / FULL).read_text(encoding="utf-8").split("\n")
    tables, _ = ingest(FIXTURES)
    for turn in tables.turns.iter_rows(named=True):
        file, line = turn["location"].split(":")
        assert file == FULL
        assert turn["text_raw"].split("\n")[0].replace('"', '""') in lines[int(line) - 1]
    assert turns_of(tables, "3")[2]["text_raw"] == "So, let's see.\nYou drink at least four times a week."


def test_locations_fall_back_to_row_index_when_lines_cannot_be_mapped(monkeypatch):
    monkeypatch.setattr(annomi, "_row_starts", lambda lines: None)
    tables, ledger = ingest(FIXTURES)
    assert turns_of(tables, "3")[4]["location"] == f"{FULL}#row13"
    assert ledger.notes["csv_lines_unmapped"] == 1


def test_missing_file_names_path_and_params(tmp_path):
    with pytest.raises(IngestError, match=r"AnnoMI-simple\.csv.*sources\.<name>\.path.*options\.variant") as err:
        ingest(tmp_path, variant="simple")
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("options, word", [({"variant": "fancy"}, "variant"), ({"annotator_rule": "random"}, "annotator_rule")])
def test_unknown_options_are_rejected(options, word):
    with pytest.raises(IngestError, match=word):
        ingest(FIXTURES, **options)


def test_missing_columns_fail_with_file_and_columns(tmp_path):
    df = pl.read_csv(FIXTURES / SIMPLE, infer_schema=False).drop("utterance_id", "client_talk_type")
    df.write_csv(tmp_path / SIMPLE)
    with pytest.raises(IngestError, match=r"AnnoMI-simple\.csv: missing required column\(s\) \['utterance_id', 'client_talk_type'\]"):
        ingest(tmp_path, variant="simple")
    # The full variant needs annotator_id and the subtype columns as well.
    pl.read_csv(FIXTURES / FULL, infer_schema=False).drop("annotator_id").write_csv(tmp_path / FULL)
    with pytest.raises(IngestError, match=r"AnnoMI-full\.csv: missing required column\(s\) \['annotator_id'\]"):
        ingest(tmp_path)


def test_unparseable_csv_fails_with_file(tmp_path):
    (tmp_path / FULL).write_text((FIXTURES / FULL).read_text() + "high,3,too,many,fields" + ",x" * 30 + "\n")
    with pytest.raises(IngestError, match=r"AnnoMI-full\.csv: not a readable CSV"):
        ingest(tmp_path)


BAD_ROWS = {
    "unknown_role": {"interlocutor": "coach"},
    "bad_id": {"utterance_id": "11a"},
    "bad_transcript_id": {"transcript_id": "T3"},
    "bad_annotator_id": {"annotator_id": ""},
    "unknown_behavior": {"interlocutor": "therapist", "main_therapist_behaviour": "affirm", "client_talk_type": "n/a"},
    "missing_behavior": {"interlocutor": "therapist", "main_therapist_behaviour": "n/a", "client_talk_type": "n/a"},
    "unknown_subtype": {"interlocutor": "therapist", "main_therapist_behaviour": "question", "question_subtype": "rhetorical", "client_talk_type": "n/a"},
    "unknown_talk_type": {"client_talk_type": "positive"},
    "therapist_code_on_client_row": {"main_therapist_behaviour": "question"},
    "client_code_on_therapist_row": {"interlocutor": "therapist", "main_therapist_behaviour": "question", "client_talk_type": "change"},
    "subtype_on_client_row": {"reflection_subtype": "simple"},
    "empty_utterance": {"utterance_text": " \t "},
}
REASONS = {
    "bad_transcript_id": "bad_id", "bad_annotator_id": "bad_id", "missing_behavior": "unknown_behavior",
    "therapist_code_on_client_row": "label_role_mismatch", "client_code_on_therapist_row": "label_role_mismatch",
    "subtype_on_client_row": "label_role_mismatch",
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_quarantined_alone(tmp_path, case):
    root = fixture_with_rows(tmp_path, BAD_ROWS[case])
    tables, ledger = ingest(root)
    reason = REASONS.get(case, case)
    assert tables.stats["quarantine_reasons"] == {reason: 1}
    [row] = tables.quarantine.to_dicts()
    appended = (root / FULL).read_text().split("\n")[18]
    assert (row["file"], row["record"], row["n_records"], row["raw"]) == (FULL, "line 19", 1, appended)
    assert row["detail"]
    # The rest is untouched: 16 rows as before, both transcripts kept whole.
    assert (tables.stats["records_in"], tables.stats["kept"], tables.stats["dialogs"]) == (17, 9, 2)
    assert meta_of(tables, "3")["n_turns"] == 5
    assert_balanced(tables, ledger)


def test_empty_utterance_loses_only_its_row(tmp_path):
    # An empty row in the middle of transcript 3 (utterance 5, between 2 and 9).
    root = fixture_with_rows(tmp_path, {"utterance_id": "5", "utterance_text": ""}, {"utterance_id": "11", "utterance_text": "Okay."})
    tables, ledger = ingest(root)
    assert tables.stats["quarantine_reasons"] == {"empty_utterance": 1}
    assert meta_of(tables, "3")["n_turns"] == 6  # utterances 0, 1, 2, 9, 10, 11: the dialog survives the empty row
    assert ledger.notes["dialogs_with_quarantined_rows"] == 1
    assert tables.stats["kept"] == 10


def test_bad_row_in_simple_file_is_quarantined(tmp_path):
    root = fixture_with_rows(tmp_path, {"interlocutor": "narrator"}, name=SIMPLE)
    tables, ledger = ingest(root, variant="simple")
    assert tables.quarantine.select("reason", "record").rows() == [("unknown_role", "line 12")]
    assert (tables.stats["records_in"], tables.stats["kept"]) == (10, 9)


def test_duplicate_rows_are_quarantined_and_the_first_kept(tmp_path):
    # A second copy of annotator 2's row for transcript 12, utterance 3, with another label.
    root = fixture_with_rows(tmp_path, {"transcript_id": "12", "utterance_id": "3", "annotator_id": "2", "client_talk_type": "sustain",
                                        "mi_quality": "low", "topic": "smoking cessation", "utterance_text": "Maybe I could try cutting down."})
    tables, ledger = ingest(root)
    [row] = tables.quarantine.to_dicts()
    assert (row["reason"], row["record"]) == ("duplicate_row", "line 19")
    assert "line 12" in row["detail"]
    assert turns_of(tables, "12")[3]["code_agreement"] == 1.0
    assert_balanced(tables, ledger)


def test_transcript_metadata_conflict_keeps_majority_and_notes(tmp_path):
    root = fixture_with_rows(tmp_path, {"mi_quality": "low", "topic": "weight loss"})
    tables, ledger = ingest(root)
    assert tables.stats["quarantined"] == 0
    assert ledger.notes["transcript_metadata_conflict"] == 1
    dialog = meta_of(tables, "3")
    assert (dialog["topic"], json.loads(dialog["meta"])["mi_quality"], dialog["n_turns"]) == ("reducing alcohol consumption", "high", 6)


def test_metadata_outer_whitespace_is_not_a_conflict(tmp_path):
    root = fixture_with_rows(tmp_path, {"topic": "reducing alcohol consumption "})
    tables, ledger = ingest(root)
    assert ledger.notes["transcript_metadata_conflict"] == 0
    assert meta_of(tables, "3")["topic"] == "reducing alcohol consumption"


def test_unknown_mi_quality_is_left_empty_and_noted(tmp_path):
    (tmp_path / FULL).write_text((FIXTURES / FULL).read_text().replace("low,12,", "medium,12,"))
    tables, ledger = ingest(tmp_path)
    assert json.loads(meta_of(tables, "12")["meta"])["mi_quality"] is None
    assert ledger.notes["unknown_mi_quality"] == 1
    assert tables.stats["quarantined"] == 0


def test_invalid_utf8_quarantines_only_the_affected_row(tmp_path):
    data = (FIXTURES / FULL).read_bytes()
    bad_row = b'high,3,x,y,reducing alcohol consumption,11,client,00:01:50,"Caf\xe9\nau lait",4,n/a,n/a,n/a,n/a,n/a,n/a,n/a,neutral\n'
    (tmp_path / FULL).write_bytes(data + bad_row)
    tables, ledger = ingest(tmp_path)
    [row] = tables.quarantine.to_dicts()
    assert (row["reason"], row["record"]) == ("invalid_utf8", "line 19")
    offset = len(data) + bad_row.index(b"\xe9")
    assert row["detail"] == f"invalid UTF-8 at byte {offset} of the file"
    assert row["raw"] == bad_row.decode("utf-8", errors="backslashreplace").rstrip("\n")
    assert (tables.stats["records_in"], tables.stats["kept"], tables.stats["dialogs"]) == (17, 9, 2)
    assert_balanced(tables, ledger)


def test_invalid_utf8_in_header_fails_with_file_and_offset(tmp_path):
    data = (FIXTURES / FULL).read_bytes()
    (tmp_path / FULL).write_bytes(b"\xef\xbb\xbfmi_qu\xa4lity" + data[len("mi_quality"):])
    with pytest.raises(IngestError, match=r"AnnoMI-full\.csv: invalid UTF-8 at byte 8 in the header"):
        ingest(tmp_path)


def test_bom_at_file_start_is_accepted(tmp_path):
    (tmp_path / SIMPLE).write_bytes(b"\xef\xbb\xbf" + (FIXTURES / SIMPLE).read_bytes())
    with_bom, _ = ingest(tmp_path, variant="simple")
    plain, _ = ingest(FIXTURES, variant="simple")
    assert with_bom.turns.equals(plain.turns)
    assert with_bom.dialogs.equals(plain.dialogs)


def test_blank_lines_are_skipped_and_noted(tmp_path):
    lines = (FIXTURES / SIMPLE).read_text().split("\n")
    # One blank line before transcript 12 and one at the end (the file already ends with a newline).
    (tmp_path / SIMPLE).write_text("\n".join(lines[:7] + [""] + lines[7:]) + "\n")
    tables, ledger = ingest(tmp_path, variant="simple")
    assert (tables.stats["records_in"], tables.stats["kept"], ledger.notes["blank_lines_skipped"]) == (9, 9, 2)
    assert turns_of(tables, "12")[0]["location"] == f"{SIMPLE}:9"


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real AnnoMI CSVs not found at {REAL}")
def test_real_annomi_files_match_documented_counts():
    # same_speaker=keep: AnnoMI has consecutive same-speaker utterances, and here one turn = one utterance.
    simple, ledger = ingest(REAL, same_speaker="keep", variant="simple")
    assert (simple.stats["records_in"], simple.stats["kept"], simple.stats["quarantined"]) == (8063, 8063, 0)
    assert (simple.stats["dialogs"], simple.stats["turns"]) == (113, 8063)
    csv_counts = pl.read_csv(REAL / SIMPLE, infer_schema=False).filter(pl.col("interlocutor") == "therapist")["main_therapist_behaviour"].value_counts()
    turn_counts = simple.turns.drop_nulls("mi_behavior")["mi_behavior"].value_counts()
    assert dict(turn_counts.rows()) == dict(csv_counts.rows())

    started = time.perf_counter()
    full_ledger = Ledger("annomi", annomi.UNIT)
    parsed = annomi.read(REAL, full_ledger, {"variant": "full"})
    seconds = time.perf_counter() - started
    full = build_tables("annomi", "annomi", parsed, full_ledger, IngestOptions(language="en", method="MI", same_speaker="keep"))
    assert (full.stats["records_in"], full.stats["dialogs"], full.stats["turns"], full.stats["quarantined"]) == (11330, 113, 8063, 0)
    assert full.stats["kept"] + full.stats["merged"]["extra_annotator_rows"] == 11330
    assert seconds < 1.5, f"reading the full AnnoMI CSV took {seconds:.2f}s"
