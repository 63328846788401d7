"""Simulated sessions: both sides real clients on a loopback endpoint, in lockstep; canonical tables out."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from counseltune.schemas.tables import Dialogs, Turns

from counseltune.fidelity.simulated_client.intake import (
    IntakeError,
    IntakeProfile,
    cpsycoune_profiles,
    load_cactus,
    profiles_from_dialogs,
)
from counseltune.fidelity.simulated_client.simulated_sessions import intake_profiles
from counseltune.ingest.run import read_source
from counseltune.fidelity.simulated_client.simulate import (
    SimulationSettings,
    simulate,
    source_name,
    write_simulation,
)
from counseltune.tables.io import read_table

from .test_judge_loopback import COUNSELOR, SIM_CLIENT


CACTUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "raw" / "Cactus"
CPSYCOUNE = CACTUS.parent / "CPsyCounE"


def profile(profile_id: str, opening=(("counselor", "Hi, what brings you here?"), ("client", "Work stress.")),
            intake: str = "Age 30, office worker, stressed.", language: str = "en") -> IntakeProfile:
    return IntakeProfile(profile_id, language, intake, "neutral", tuple(opening), "work", "toy.json", f"#{profile_id}")


def test_sessions_advance_in_lockstep_and_become_canonical_tables(loopback, tmp_path):
    server, client_for = loopback
    counselor, client = client_for(COUNSELOR), client_for(SIM_CLIENT)
    profiles = [profile("p1"), profile("p2", opening=()), profile("p3", intake="LEAVE early")]
    sim = simulate(counselor, client, profiles, SimulationSettings(rounds=3, seed=5))

    # one call per side per round: the client who has not spoken yet goes first (one extra client call),
    # and p3's client ends the session after its first reply, so the later calls are smaller
    assert client.calls == [1, 3, 2] and counselor.calls == [3, 2, 2]
    assert sim.calls == {"counselor": 3, "client": 3}
    assert sim.failures.is_empty()
    ids = sim.dialogs["dialog_id"].to_list()
    assert ids == ["simulated:counselor-model:p1", "simulated:counselor-model:p2", "simulated:counselor-model:p3"]
    assert set(sim.dialogs["source"]) == {source_name(COUNSELOR)} == {"simulated:counselor-model"}
    assert set(sim.dialogs["method"]) == {"CBT"} and set(sim.dialogs["split"]) == {"test"}
    meta = [json.loads(m) for m in sim.dialogs["meta"]]
    assert [m["ended_by"] for m in meta] == ["rounds", "rounds", "client_end"]

    p1 = sim.turns.filter(pl.col("dialog_id") == ids[0])
    assert p1["role"].to_list() == ["counselor", "client", "counselor", "client", "counselor", "client", "counselor"]
    assert p1["location"][0] == "toy.json#p1" and p1["location"][2] == "generated:counselor-model#round1"
    p2 = sim.turns.filter(pl.col("dialog_id") == ids[1])
    assert p2["role"].to_list() == ["client", "counselor", "client", "counselor", "client", "counselor"]
    p3 = sim.turns.filter(pl.col("dialog_id") == ids[2])
    assert p3["text"].to_list()[-1] == "Thanks, that helps. Goodbye."

    # the simulated client sees the counselor as the user and itself as the assistant, with its intake
    client_bodies = [e.body for e in server.log if e.body["model"] == SIM_CLIENT]
    assert all("Age 30" in b["messages"][0]["content"] or "LEAVE" in b["messages"][0]["content"]
               for b in client_bodies)
    assert all(b["seed"] == 5 and b["temperature"] == 0.7 for b in client_bodies)

    write_simulation(sim, tmp_path / "dialogs.parquet", tmp_path / "turns.parquet")
    assert read_table(tmp_path / "dialogs.parquet", Dialogs).height == 3
    assert read_table(tmp_path / "turns.parquet", Turns).height == sim.turns.height


def test_rerun_replays_from_the_cache(loopback):
    server, client_for = loopback
    profiles = [profile("p1"), profile("p2", opening=())]
    first = simulate(client_for(COUNSELOR), client_for(SIM_CLIENT), profiles, SimulationSettings(rounds=2))
    sent = len(server.log)
    second = simulate(client_for(COUNSELOR), client_for(SIM_CLIENT), profiles, SimulationSettings(rounds=2))
    assert len(server.log) == sent and second.turns.equals(first.turns)


def test_a_failed_request_drops_its_session_and_is_counted(loopback):
    server, client_for = loopback
    server.script("500", "500", "500")  # the counselor's first request fails every attempt (max_retries=2)
    sim = simulate(client_for(COUNSELOR), client_for(SIM_CLIENT), [profile("p1")], SimulationSettings(rounds=2))
    assert sim.dialogs.is_empty() and sim.turns.is_empty()
    assert sim.failures.row(0, named=True) | {"detail": ""} == {"profile_id": "p1", "side": "counselor",
                                                                 "reason": "http_5xx", "detail": ""}
    assert sim.report()["failed"] == 1


def test_counselor_system_prompt_per_language(loopback):
    server, client_for = loopback
    settings = SimulationSettings(rounds=1, counselor_system={"zh": "你是一名心理咨询师。"})
    simulate(client_for(COUNSELOR), client_for(SIM_CLIENT),
             [profile("zh1", opening=(("client", "我很焦虑。"),), language="zh"), profile("en1")], settings)
    bodies = {e.body["messages"][-1]["content"]: e.body for e in server.log}
    assert bodies["我很焦虑。"]["messages"][0] == {"role": "system", "content": "你是一名心理咨询师。"}
    assert bodies["Work stress."]["messages"][0]["role"] == "assistant"  # no English system prompt given


def test_profiles_from_curated_dialogs_open_with_the_client_turns():
    from tests.conftest import dialog_rows, frames

    dialogs, turns = frames(
        dialog_rows("toy:1", [("counselor", "你好"), ("client", "我失眠"), ("counselor", "多久了"), ("client", "一个月"),
                              ("counselor", "嗯"), ("client", "还有别的")]),
        dialog_rows("toy:2", [("counselor", "只有我说话")]))
    dialogs = dialogs.with_columns(pl.lit("test").alias("split"))
    [p] = profiles_from_dialogs(dialogs, turns, opening_turns=2, attitude="negative")
    assert p.profile_id == "toy-1-negative" and p.language == "zh"
    assert p.opening == (("counselor", "你好"), ("client", "我失眠"), ("counselor", "多久了"), ("client", "一个月"))
    assert p.intake == "我失眠\n一个月"


def test_cactus_loader_reads_a_small_file(tmp_path):
    record = {"AI_client": {"intake_form": "Name: A\n", "attitude": "negative", "attitude_instruction": "Be wary.",
                            "dialogue_history_init": "", "dialogue_history": None},
              "AI_counselor": {"CBT": {"init_history_counselor": "Hi.", "init_history_client": "I'm fine, I guess."}},
              "ground_truth_CBT": ["Decatastrophizing"]}
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps([record, {**record, "AI_client": {**record["AI_client"], "attitude": "positive"}}]))
    profiles = load_cactus(path, attitudes=("negative",))
    assert [p.profile_id for p in profiles] == ["cactus-en-000-negative"]
    assert profiles[0].opening == (("counselor", "Hi."), ("client", "I'm fine, I guess."))
    assert profiles[0].attitude_instruction == "Be wary."


@pytest.mark.skipif(not CACTUS.is_dir(), reason="raw Cactus files not present")
def test_cactus_loader_reads_the_real_files():
    english = load_cactus(CACTUS / "evaluation.json")
    chinese = load_cactus(CACTUS / "evaluation_chinese.json", limit=6)
    assert len(english) == 450 and len({p.profile_id for p in english}) == 450
    assert {p.attitude for p in english} == {"positive", "neutral", "negative"}
    assert chinese[0].language == "zh" and chinese[0].opening[1][1].startswith("最近我跑步")
    assert chinese[0].attitude_instruction is None  # Cactus's English wording is not used for Chinese sessions


def ingested_cpsycoune(params, root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    tables = read_source(params, "cpsycoune", root)
    return tables.dialogs, tables.turns


def test_cpsycoune_profiles_come_from_the_pipeline_tables(params):
    """The ingested sample cases, as the raw parser once read them: raw topic in the id, numeric file order."""
    dialogs, turns = ingested_cpsycoune(params, Path(params["sources"]["cpsycoune"]["path"]))
    profiles = cpsycoune_profiles(dialogs, turns, attitude="negative")
    assert len(profiles) == 18 and profiles[0].profile_id == "cpsycoune-Career-1-negative"
    family = next(p for p in profiles if p.topic == "Family Relationship")  # the dialog id reads Family_Relationship
    assert family.profile_id == "cpsycoune-Family-Relationship-1-negative" and family.provenance_file.endswith("1.json")
    first = turns.filter((pl.col("dialog_id") == dialogs["dialog_id"].sort()[0]) & (pl.col("role") == "client"))
    case = next(p for p in profiles if p.provenance_file == dialogs.sort("dialog_id")["provenance_file"][0])
    assert case.opening == (("client", first["text"][0]),) and case.intake.endswith("\n".join(first["text"]))
    cfg = {"source": "cpsycoune", "path": None, "limit": 3, "attitudes": ["neutral"], "opening_turns": 1}
    assert [p.profile_id for p in intake_profiles(cfg, dialogs, turns)] == [
        "cpsycoune-Career-1-neutral", "cpsycoune-Career-2-neutral", "cpsycoune-Education-1-neutral"]
    with pytest.raises(IntakeError, match="no dialog of source 'cpsycoune'"):
        cpsycoune_profiles(dialogs.with_columns(source=pl.lit("other")), turns)


@pytest.mark.skipif(not CPSYCOUNE.is_dir(), reason="raw CPsyCounE files not present")
def test_cpsycoune_profiles_of_the_real_cases(params):
    profiles = cpsycoune_profiles(*ingested_cpsycoune(params, CPSYCOUNE))
    assert len(profiles) == 45 and all(p.language == "zh" and p.opening[0][0] == "client" for p in profiles)
    assert len({p.profile_id for p in profiles}) == 45
