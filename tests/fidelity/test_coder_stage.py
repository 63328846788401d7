"""The miti-coder stage on the bundled AnnoMI sample: a saved, validated coder and coder-vs-human reference rows."""

from __future__ import annotations

import copy
import json

import polars as pl
import pytest

from counseltune.fidelity.embedded_coder.coder import load_coder
from counseltune.fidelity.embedded_coder.coder_stage import run_coder_stage
from counseltune.config import ParamsError, validate_params
from counseltune.ingest import annomi
from counseltune.ingest.base import IngestOptions, Ledger, build_tables
from counseltune.schemas.tables import Dialogs, Turns
from counseltune.tables.io import TableError, write_table
from tests.fidelity.conftest import FULL, SAMPLE, ingested_annomi
from tests.fidelity.stage_inputs import fidelity_params


@pytest.fixture(scope="module")
def stage(tmp_path_factory, sample_ingested):
    from counseltune.config import load_params
    from tests.conftest import REPO

    params = fidelity_params(load_params(REPO / "params.yaml"))
    out = tmp_path_factory.mktemp("coder-stage")
    summary = run_coder_stage(params, sample_ingested, out / "coder.joblib", out / "reference.parquet", out / "coder.json",
                              held_out_dir=out / "held_out")
    return out, summary


def test_the_coder_is_saved_and_validated_on_held_out_transcripts(stage):
    out, summary = stage
    coder = load_coder(out / "coder.joblib")
    validation = summary["validation"]
    assert set(coder.train_dialogs) <= set(validation["train_dialogs"])
    assert not set(validation["train_dialogs"]) & set(validation["test_dialogs"])
    behavior = validation["agreement"]["behavior"]
    assert behavior["n"] == validation["n_test_turns"] > 0
    assert -1 <= behavior["kappa"] <= 1 and 0 <= behavior["macro_f1"] <= 1
    assert summary["n_transcripts"] == len(validation["train_dialogs"]) + len(validation["test_dialogs"])
    assert json.loads((out / "coder.json").read_text()) == json.loads(json.dumps(summary))


def test_reference_rows_put_coder_and_human_codes_side_by_side(stage):
    out, summary = stage
    reference = pl.read_parquet(out / "reference.parquet")
    test_dialogs = set(summary["validation"]["test_dialogs"])
    for coding in ("coder", "human"):
        assert set(reference.filter(pl.col("coding") == coding)["dialog_id"]) == test_dialogs
    assert set(reference["mi_quality"]) <= {"high", "low"}
    # the coder cannot code giving_information, the human AnnoMI codes can: null, never 0
    assert reference.filter(pl.col("coding") == "coder")["giving_information"].null_count() == len(test_dialogs)
    assert reference.filter(pl.col("coding") == "human")["giving_information"].null_count() == 0
    for quality, codings in summary["reference"].items():
        assert set(codings) == {"coder", "human"}, quality
        for profile in codings.values():
            rq = profile["scores"]["reflection_to_question"]
            if rq["estimate"] is not None:
                assert rq["low"] <= rq["estimate"] <= rq["high"] and rq["grade"] in ("below_fair", "fair", "good")
            assert profile["shares"]["question"]["estimate"] is not None


def test_the_held_out_transcripts_are_written_with_their_human_codes(stage):
    # the judge_validation stage reads these instead of parsing the corpus again
    from counseltune.schemas.tables import Dialogs, Turns
    from counseltune.tables.io import read_table

    out, summary = stage
    test_dialogs = summary["validation"]["test_dialogs"]
    dialogs = read_table(out / "held_out" / "dialogs.parquet", Dialogs)
    turns = read_table(out / "held_out" / "turns.parquet", Turns)
    assert sorted(dialogs["dialog_id"]) == sorted(set(turns["dialog_id"])) == sorted(test_dialogs)
    counselor = turns.filter(pl.col("role") == "counselor")
    assert counselor["mi_behavior"].drop_nulls().len() == summary["validation"]["n_test_turns"]


def test_what_the_coder_cannot_code_is_reported(stage):
    _, summary = stage
    missing = summary["not_coded"]["miti_codes"]
    assert {"persuade", "affirm", "confront", "giving_information"} <= set(missing)
    assert "question" not in missing and summary["not_coded"]["global_scores"]


def test_a_folder_without_ingested_tables_fails_clearly(tmp_path, params):
    with pytest.raises(TableError, match="Dialogs table not found at .*run the stage that writes it"):
        run_coder_stage(fidelity_params(params), tmp_path, tmp_path / "c.joblib", tmp_path / "r.parquet", tmp_path / "m.json")


def raw_parsed_annomi(params: dict, root, out):
    """The coder's former input, independently: the raw CSV parsed with the options the stage used to force
    (ingest defaults, full CSV, majority vote, same_speaker keep), written as tables."""
    policies, extra = params["ingest"], {"variant": "full", "annotator_rule": "majority"}
    options = IngestOptions(language="en", method="MI", width=policies["width"], same_speaker="keep",
                            trailing_client=policies["trailing_client"], empty_utterance=policies["empty_utterance"],
                            extra=extra)
    ledger = Ledger("annomi", annomi.UNIT)
    tables = build_tables("annomi", "annomi", annomi.read(root, ledger, extra), ledger, options)
    write_table(tables.dialogs, out / "dialogs.parquet", Dialogs)
    write_table(tables.turns, out / "turns.parquet", Turns)
    return out


def _coder_numbers(params, tables, out) -> dict:
    summary = run_coder_stage(params, tables, out / "coder.joblib", out / "reference.parquet", out / "coder.json")
    for timing in ("train_seconds", "code_seconds"):
        summary["validation"].pop(timing)
    summary.pop("wall_s")
    return summary


@pytest.mark.parametrize("root", [SAMPLE, pytest.param(FULL, marks=[
    pytest.mark.slow, pytest.mark.skipif(not FULL.is_dir(), reason="the full AnnoMI is not in ../shared/data/raw")])],
    ids=["sample", "full"])
def test_the_ingested_tables_give_the_coder_numbers_of_the_raw_parse(root, tmp_path, params):
    # the source's ingest (params.yaml: same_speaker keep) hands the coder every annotated utterance, as its own
    # parse of the raw CSV did: same transcripts, same split, same kappa and F1 per label family
    p = fidelity_params(params)
    ingested = _coder_numbers(p, ingested_annomi(p, root, tmp_path / "interim"), tmp_path / "a")
    raw = _coder_numbers(p, raw_parsed_annomi(p, root, tmp_path / "raw"), tmp_path / "b")
    assert ingested["validation"]["agreement"] == raw["validation"]["agreement"]
    assert ingested == raw


def test_a_coder_source_that_merges_same_speaker_utterances_is_refused(params):
    p = copy.deepcopy(params)
    validate_params(p)
    p["sources"]["annomi"]["same_speaker"] = "merge"
    with pytest.raises(ParamsError, match="sources.annomi.same_speaker must be keep"):
        validate_params(p)
    p["sources"]["annomi"]["same_speaker"] = "keep"
    p["fidelity"]["coder"]["source"] = "kmi"
    with pytest.raises(ParamsError, match="fidelity.coder.source 'kmi' must name a sources entry of format annomi"):
        validate_params(p)
