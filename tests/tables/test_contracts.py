"""Pandera contracts reject what the architecture forbids (values, not only schema)."""

import polars as pl
import pytest

from counseltune.schemas.tables import CuratedDialogs, Dialogs, Quarantine, Turns
from counseltune.tables.io import TableError, empty_table, read_table, write_table
from tests.conftest import dialog_rows, frames


def valid():
    return frames(dialog_rows("toy:1", [("client", "我睡不着。"), ("counselor", "能多说一点吗？")]))


def test_valid_tables_round_trip_through_parquet(tmp_path):
    dialogs, turns = valid()
    write_table(turns, tmp_path / "turns.parquet", Turns)
    write_table(dialogs, tmp_path / "dialogs.parquet", Dialogs)
    assert read_table(tmp_path / "turns.parquet", Turns).equals(turns)


@pytest.mark.parametrize("column, value, check", [
    ("role", "therapist", "isin"),
    ("text", "", "str_length"),
    ("text", " padded ", "text_is_normalized"),
    ("text", "bell\x07", "text_is_normalized"),
    ("turn_index", 5, "turn_index_is_contiguous"),
    ("mi_behavior", "question", "codes_match_roles"),  # a code on the client turn
    ("mi_behavior", "advice", "isin"),
    ("client_talk", "maybe", "isin"),
    ("code_agreement", 1.5, "in_range"),
    ("dialog_id", "no colon", "str_matches"),
])
def test_turns_contract_rejects_bad_values(column, value, check):
    _, turns = valid()
    turns = turns.with_columns(pl.when(pl.col("turn_index") == 0).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))
    with pytest.raises(TableError) as err:
        write_table(turns, "/dev/null/never.parquet", Turns)
    assert check in str(err.value) and "Turns table" in str(err.value)


@pytest.mark.parametrize("column, value", [
    ("language", "fr"), ("method", "DBT"), ("n_turns", 0), ("split", "dev"), ("provenance_file", ""),
])
def test_dialogs_contract_rejects_bad_values(column, value):
    dialogs, _ = valid()
    with pytest.raises(TableError, match="Dialogs table"):
        write_table(dialogs.with_columns(pl.lit(value).alias(column)), "/dev/null/x.parquet", Dialogs)


def test_duplicate_dialog_ids_are_rejected():
    dialogs, _ = valid()
    with pytest.raises(TableError, match="unique"):
        write_table(pl.concat([dialogs, dialogs]), "/dev/null/x.parquet", Dialogs)


def test_curated_dialogs_need_a_split():
    dialogs, _ = valid()
    with pytest.raises(TableError, match="CuratedDialogs"):
        write_table(dialogs, "/dev/null/x.parquet", CuratedDialogs)
    write_table(dialogs.with_columns(pl.lit("train").alias("split")), "/tmp/curated-ok.parquet", CuratedDialogs)


def test_missing_and_extra_columns_are_named():
    _, turns = valid()
    with pytest.raises(TableError, match=r"missing columns \['location'\], unexpected \['extra'\]"):
        write_table(turns.drop("location").with_columns(pl.lit(1).alias("extra")), "/dev/null/x.parquet", Turns)


def test_a_lazy_frame_is_checked_on_its_data_too():
    _, turns = valid()
    lazy = turns.with_columns(pl.lit("robot").alias("role")).lazy()
    with pytest.raises(TableError, match="isin"):
        write_table(lazy, "/dev/null/x.parquet", Turns)


def test_quarantine_reason_is_a_code():
    row = {"source": "x", "stage": "ingest", "file": "f", "record": "1", "n_records": 1,
           "reason": "Bad Thing", "detail": "d", "raw": "r"}
    with pytest.raises(TableError, match="str_matches"):
        write_table(pl.DataFrame([row], schema=empty_table(Quarantine).schema), "/dev/null/x.parquet", Quarantine)


def test_a_hand_edited_parquet_is_caught_on_read(tmp_path):
    _, turns = valid()
    turns.with_columns(pl.lit("").alias("text")).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(TableError, match=str(tmp_path / "t.parquet")):
        read_table(tmp_path / "t.parquet", Turns)


def test_a_failed_write_leaves_no_file(tmp_path):
    _, turns = valid()
    with pytest.raises(TableError):
        write_table(turns.with_columns(pl.lit("x").alias("role")), tmp_path / "t.parquet", Turns)
    assert list(tmp_path.iterdir()) == []
