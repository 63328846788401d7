"""The judge_validation stage against the loopback judge: Cohen's kappa per behavior on a tiny held-out set whose
answer is worked out by hand; the size bounds, the cache, the not-measured cases and the human-code mapping."""

from __future__ import annotations

import json

import polars as pl
import pytest

from counseltune.fidelity.judges.judge_agreement import behavior_agreement, human_indicator
from counseltune.fidelity.judges.judge_validation import run_judge_validation
from counseltune.schemas.tables import Dialogs, Turns
from counseltune.tables.io import write_table
from tests.fidelity.stage_inputs import fidelity_params
from tests.fidelity.test_judge_loopback import JUDGE, KEY_ENV, ScriptedOpenAI

# The loopback judge codes a counselor line ending in "?" open_question, every other one simple_reflection.
# (text, human mi_behavior, human mi_code) of the counselor turns of the first transcript:
SCRIPT = [
    ("How are you?", "question", "open_question"),                        # judge: open_question
    ("Is it work?", "question", "closed_question"),                       # judge: open_question
    ("You feel stuck.", "reflection", "simple_reflection"),               # judge: simple_reflection
    ("You feel stuck and want out.", "reflection", "complex_reflection"),  # judge: simple_reflection
    ("Drinking less helps sleep.", "therapist_input", "information"),     # judge: simple_reflection
    ("Hello there.", "other", None),                                      # judge: simple_reflection
]
# Hand-computed Cohen's kappa, (p_o - p_e) / (1 - p_e), over the 6 utterances:
#   question            human 110000, judge 110000: p_o 1                      -> 1
#   reflection          human 001100, judge 001111: p_o 4/6, p_e 16/36         -> 0.4
#   open_question       human 100000, judge 110000: p_o 5/6, p_e 22/36         -> 4/7
#   simple_reflection   human 001000, judge 001111: p_o 3/6, p_e 14/36         -> 2/11
#   complex_reflection  human 000100, judge 000000: p_o 5/6, p_e 30/36         -> 0
#   giving_information  human 000010, judge 000000: p_o 5/6, p_e 30/36         -> 0
EXPECTED_KAPPA = {"question": 1.0, "reflection": 0.4, "open_question": 4 / 7, "simple_reflection": 2 / 11,
                  "complex_reflection": 0.0, "giving_information": 0.0}


def held_out(folder, n_transcripts=2):
    """dialogs/turns parquet of `n_transcripts` copies of SCRIPT (client line, then a counselor line)."""
    dialogs, turns = [], []
    for d in range(n_transcripts):
        dialog_id = f"annomi:{d}"
        rows = []
        for text, behavior, code in SCRIPT:
            rows += [("client", f"I am not sure ({d}).", None, None), ("counselor", text, behavior, code)]
        rows.append(("client", "OK.", None, None))  # past max_turns below: never shown to the judge
        dialogs.append({"dialog_id": dialog_id, "source": "annomi", "language": "en", "topic": None, "method": "MI",
                        "split": None, "n_turns": len(rows), "provenance_file": "AnnoMI-full.csv",
                        "provenance_record": f"transcript_id={d}", "meta": '{"mi_quality": "high"}'})
        turns += [{"dialog_id": dialog_id, "turn_index": i, "role": role, "text": text, "text_raw": text,
                   "mi_behavior": behavior, "mi_code": code, "client_talk": None, "code_agreement": None,
                   "n_annotators": None, "location": f"AnnoMI-full.csv:{i + 2}"}
                  for i, (role, text, behavior, code) in enumerate(rows)]
    write_table(pl.DataFrame(dialogs), folder / "dialogs.parquet", Dialogs)
    write_table(pl.DataFrame(turns), folder / "turns.parquet", Turns)
    return folder


def judge_params(params, server, cache_dir, **validation):
    remote = {"model": JUDGE, "base_url": server.url, "key_env": KEY_ENV, "concurrency": 2, "timeout_s": 10,
              "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "redact": "off", "budget_usd": 1.0}
    p = fidelity_params(params, judge=True, backend="openai", remote=remote, cache_dir=str(cache_dir),
                        prices={JUDGE: {"input_per_m": 0.0, "output_per_m": 0.0}})
    p["fidelity"]["judge_validation"] = {"enabled": True, "max_transcripts": 1, "max_turns": 12, **validation}
    return p


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-judge-validation")
    with ScriptedOpenAI() as running:
        yield running


def test_kappa_per_behavior_matches_the_hand_computed_answer(params, server, tmp_path):
    folder = held_out(tmp_path / "held_out")
    p = judge_params(params, server, tmp_path / "cache")
    stats = run_judge_validation(p, folder, tmp_path / "codes.parquet", tmp_path / "validation.json")

    assert stats["measured"] and stats["transcripts"] == ["annomi:0"]  # max_transcripts: 1 of 2
    assert len(server.log) == 1 and stats["judged"] == 1 and stats["failed"] == 0
    assert stats["human_coded_utterances"] == stats["judged_utterances"] == 6
    for behavior, kappa in EXPECTED_KAPPA.items():
        assert stats["behaviors"][behavior]["kappa"] == pytest.approx(kappa, abs=1e-12), behavior
        assert stats["behaviors"][behavior]["n"] == 6
    # closed_question: human 010000, judge 000000 -> p_o 5/6, p_e 5/6 + 0 -> kappa 0
    assert stats["behaviors"]["closed_question"]["kappa"] == pytest.approx(0.0)
    assert stats["behaviors"]["reflection"]["confusion"] == [[2, 2], [0, 2]]  # rows human no/yes, cols judge
    assert (stats["behaviors"]["reflection"]["human_count"], stats["behaviors"]["reflection"]["judge_count"]) == (2, 4)
    assert stats["globals"]["measured"] is False and "no human MITI global scores" in stats["globals"]["why"]
    assert json.loads((tmp_path / "validation.json").read_text()) == json.loads(json.dumps(stats))
    # the transcript the judge saw: its first max_turns turns, with the same prompt as on a model's sessions
    prompt = server.log[0].body["messages"]
    assert "MITI 4.2.1" in prompt[0]["content"] and "[11] Counselor: Hello there." in prompt[1]["content"]
    assert "[12]" not in prompt[1]["content"]
    codes = pl.read_parquet(tmp_path / "codes.parquet")
    assert codes.height == 6 and set(codes["judge_model"]) == {JUDGE}
    assert codes["miti_code"].to_list() == ["open_question", "open_question"] + ["simple_reflection"] * 4


def test_a_rerun_is_answered_from_the_cache(params, server, tmp_path):
    folder = held_out(tmp_path / "held_out")
    p = judge_params(params, server, tmp_path / "cache", max_transcripts=None)
    first = run_judge_validation(p, folder, tmp_path / "codes.parquet", tmp_path / "validation.json")
    again = run_judge_validation(p, folder, tmp_path / "codes.parquet", tmp_path / "validation.json")
    assert len(server.log) == 2 and first["behaviors"] == again["behaviors"]
    assert again["usage"]["cache_hits"] == 2 and again["behaviors"]["question"]["n"] == 12


@pytest.mark.parametrize(("judge", "enabled", "why"), [
    (False, True, "fidelity.judge.enabled is false"), (True, False, "fidelity.judge_validation.enabled is false")])
def test_not_measured_says_why_and_asks_nothing(params, server, tmp_path, judge, enabled, why):
    p = judge_params(params, server, tmp_path / "cache", enabled=enabled)
    p["fidelity"]["judge"]["enabled"] = judge
    stats = run_judge_validation(p, held_out(tmp_path / "held_out"), tmp_path / "codes.parquet", tmp_path / "v.json")
    assert not stats["measured"] and why in stats["why"] and len(server.log) == 0
    assert pl.read_parquet(tmp_path / "codes.parquet").height == 0


@pytest.mark.parametrize(("behavior", "mi_behavior", "mi_code", "expected"), [
    ("question", "question", None, True), ("open_question", "question", None, None),
    ("open_question", "reflection", "simple_reflection", False), ("complex_reflection", "reflection", None, None),
    ("giving_information", "therapist_input", "information", True),
    ("giving_information", "therapist_input", "advice", False),
    ("giving_information", "therapist_input", "options", None),  # MITI may code offering options as GI
    ("giving_information", "other", None, False), ("reflection", None, None, None),
])
def test_human_codes_answer_only_what_they_can(behavior, mi_behavior, mi_code, expected):
    assert human_indicator(behavior, mi_behavior, mi_code) is expected


def test_uncoded_turns_and_unanswerable_human_codes_are_left_out():
    pairs = pl.DataFrame({"mi_behavior": ["reflection", "reflection", "question"],
                          "mi_code": [None, "complex_reflection", "open_question"],
                          "miti_code": ["complex_reflection", "complex_reflection", None]})  # last: judge failed
    result = behavior_agreement(pairs)
    assert result["reflection"]["n"] == 2 and result["complex_reflection"]["n"] == 1
    assert result["question"]["n"] == 2 and result["question"]["judge_count"] == 0
