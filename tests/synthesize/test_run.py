"""synthesize(): processed tables in, canonical parquet tables + generation metadata out (read back with read_table)."""

from __future__ import annotations

import copy
import json

import polars as pl
import pytest
from counseltune.config import ParamsError
from counseltune.schemas.tables import CuratedDialogs, Quarantine, Turns

from counseltune.synthesize.generate import GenerationError
from counseltune.synthesize.planner import Planner
from counseltune.synthesize.run import fit_planner_file, synthesize
from counseltune.tables.io import read_table
from tests.synthesize.helpers import ScriptedClient, meta_of, processed_dir

PARAMS = {"synthesize": {
    "seed": 7,
    "planner": {"sources": ["annomi"], "k": 0.5, "min_context_count": 3},
    "filters": {"min_turns": 4, "max_turns": 40, "min_language_share": 0.7, "min_plan_adherence": 0.8,
                "near_threshold": 0.85, "shingle_chars": 5},
    "generators": {
        "mi_planned": {"method": "MI", "n_sessions": 8, "language": "zh", "turns": [6, 10], "temperature": 0.7},
        "mi_plain": {"method": "MI", "n_sessions": 4, "language": "zh", "turns": [6, 8]},
        "cbt_session": {"method": "CBT", "n_sessions": 4, "language": "zh", "turns": [8, 10]},
        "cbt_answer": {"method": "CBT", "n_sessions": 4, "language": "zh", "filters": {"min_turns": 2}},
    },
}}


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    return processed_dir(tmp_path_factory.mktemp("data") / "processed")


def read_outputs(out):
    return (read_table(out / "dialogs.parquet", CuratedDialogs), read_table(out / "turns.parquet", Turns),
            read_table(out / "quarantine.parquet", Quarantine), json.loads((out / "generation.json").read_text()))


def test_mi_planned_writes_valid_tables_with_failures_quarantined(processed, tmp_path):
    client = ScriptedClient(fail=lambda request, call: "timeout" if call == 3 and request.seed % 3 == 0 else None)
    stats = synthesize(PARAMS, "mi_planned", processed, tmp_path / "out", client, metrics_path=tmp_path / "m.json")
    dialogs, turns, quarantine, meta = read_outputs(tmp_path / "out")

    failed = stats["n_failed"].get("llm_timeout", 0)
    assert failed >= 1 and stats["n_requested"] == 8
    # the failed sessions were replaced by new ones: n_sessions counts accepted sessions
    assert dialogs.height == stats["n_accepted"] == 8 and stats["n_attempted"] == 8 + failed
    assert stats["stop_reason"] == "target_reached" and stats["attempt_rounds"][0] == {"attempted": 8, "accepted": 8 - failed}
    assert stats["acceptance_rate"] == pytest.approx(8 / (8 + failed))
    assert stats["rounds"] == len(client.batches)
    assert quarantine.height == failed and set(quarantine["reason"]) == {"llm_timeout"}
    assert set(quarantine["record"]).isdisjoint(dialogs["dialog_id"])  # a failed session is never data
    assert meta == stats == json.loads((tmp_path / "m.json").read_text())
    assert (meta["backend"], meta["model"], meta["seed"]) == ("scripted", "echo-1", 7)
    assert meta["prompt_version"] == "mi_counselor_turn/v2+client_turn/v2"
    assert meta["usage"]["requests"] == client.usage.requests and meta["usage"]["failures"] == {"timeout": failed}
    assert meta["planner"]["dialogs"] >= 5  # fitted from the processed AnnoMI train turns

    row = dialogs.row(0, named=True)
    assert (row["source"], row["method"], row["split"], row["language"]) == ("synthetic:mi_planned", "MI", "train", "zh")
    assert row["provenance_file"] == f"mi_planned:{meta_of(row)['seed_dialog_id']}"
    dialog_meta = meta_of(row)
    assert {"backend", "model", "prompt_version", "seed", "session_seed", "planned", "plan_adherence"} <= set(dialog_meta)
    mine = turns.filter(pl.col("dialog_id") == row["dialog_id"]).sort("turn_index")
    labels = [f"counselor:{c or b}" if r == "counselor" else f"client:{t}" for r, c, b, t in
              mine.select("role", "mi_code", "mi_behavior", "client_talk").iter_rows()]
    assert labels == dialog_meta["planned"]


def test_no_held_out_dialog_seeds_a_session(processed, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["synthesize"]["generators"]["mi_planned"]["n_sessions"] = 12  # more than the 3 zh train dialogs
    synthesize(params, "mi_planned", processed, tmp_path, ScriptedClient())
    dialogs = read_table(tmp_path / "dialogs.parquet", CuratedDialogs)
    used = {meta_of(r)["seed_dialog_id"] for r in dialogs.iter_rows(named=True)}
    assert used == {"toy:train-1", "toy:train-2", "toy:train-3"}


def test_same_seed_same_output(processed, tmp_path):
    synthesize(PARAMS, "mi_planned", processed, tmp_path / "a", ScriptedClient())
    synthesize(PARAMS, "mi_planned", processed, tmp_path / "b", ScriptedClient())
    for name in ["dialogs.parquet", "turns.parquet"]:
        assert pl.read_parquet(tmp_path / "a" / name).equals(pl.read_parquet(tmp_path / "b" / name))


@pytest.mark.parametrize("generator, method, rounds", [("mi_plain", "MI", 1), ("cbt_session", "CBT", 10), ("cbt_answer", "CBT", 1)])
def test_other_generators_end_to_end(processed, tmp_path, generator, method, rounds):
    client = ScriptedClient()
    stats = synthesize(PARAMS, generator, processed, tmp_path, client)
    dialogs, turns, quarantine, _ = read_outputs(tmp_path)
    assert stats["acceptance_rate"] == 1.0 and quarantine.height == 0
    assert set(dialogs["method"]) == {method} and set(dialogs["source"]) == {f"synthetic:{generator}"}
    assert len(client.batches) <= rounds and turns["mi_code"].null_count() == turns.height


def test_filtered_sessions_are_quarantined_with_reasons(processed, tmp_path):
    def text(request):  # English replies in a zh run, and the same reply for every session
        return "As an AI language model, I think you should rest."

    stats = synthesize(PARAMS, "cbt_answer", processed, tmp_path, ScriptedClient(text=text))
    dialogs, _, quarantine, meta = read_outputs(tmp_path)
    assert dialogs.height == 0 and stats["acceptance_rate"] == 0.0
    assert set(quarantine["reason"]) == {"wrong_language"}
    assert all("role_leakage" in d for d in quarantine["detail"])  # every failure is in the detail
    # every replacement failed too: the attempt cap (3 x n_sessions) stopped the run
    assert meta["quarantine_reasons"] == {"wrong_language": 12} and meta["stop_reason"] == "attempt_cap"


def test_duplicate_sessions_are_quarantined(processed, tmp_path):
    def text(request):  # the same zh answer every time
        return "听起来你承受了很大的压力，我们可以一起看看这些想法背后的证据，再找一个更平衡的看法，这周试着每天记录一次。"

    stats = synthesize(PARAMS, "cbt_answer", processed, tmp_path, ScriptedClient(text=text))
    _, _, quarantine, _ = read_outputs(tmp_path)
    assert stats["n_accepted"] >= 1
    assert set(quarantine["reason"]) <= {"exact_duplicate", "near_duplicate"} and quarantine.height >= 1


def test_planner_file_is_used_when_given(processed, tmp_path):
    fitted = fit_planner_file(PARAMS, processed, tmp_path / "planner.json")
    assert fitted["dialogs"] >= 5 and "open_question" in fitted["codes"]
    stats = synthesize(PARAMS, "mi_planned", processed, tmp_path / "out", ScriptedClient(), planner_path=tmp_path / "planner.json")
    assert stats["planner"] == Planner.load(tmp_path / "planner.json").fitted_on


def test_unknown_generator_and_settings_are_refused(processed, tmp_path):
    with pytest.raises(ParamsError, match="no 'mi_magic'"):  # a CounseltuneError: one line from the CLI
        synthesize(PARAMS, "mi_magic", processed, tmp_path, ScriptedClient())
    params = copy.deepcopy(PARAMS)
    params["synthesize"]["generators"]["mi_plain"]["temprature"] = 0.1
    with pytest.raises(GenerationError, match="temprature"):
        synthesize(params, "mi_plain", processed, tmp_path, ScriptedClient())
