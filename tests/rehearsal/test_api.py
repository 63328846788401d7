"""The rehearsal's study API (`counseltune rehearsal-api`): a real loopback server that the project's own remote
client, judges, synthesis and simulated client talk to, and that answers each in the shape it asks for."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from counseltune.fidelity.judges.ctrs import ctrs_schema, judge_ctrs
from counseltune.fidelity.simulated_client.intake import IntakeProfile
from counseltune.fidelity.judges.judge import judge_miti, miti_schema
from counseltune.fidelity.judges.judge_prompts import MITI_SYSTEM, TRANSCRIPT_HEADER
from counseltune.fidelity.crisis_safety.safety import evaluate_safety, load_probes, safety_schema
from counseltune.fidelity.judges.sessions import Session
from counseltune.fidelity.simulated_client.simulate import SimulationSettings, simulate
from counseltune.llm import ChatRequest, OutputSchema, Reply, make_client
from counseltune.rehearsal.api import serving
from counseltune.rehearsal.schema_instance import UnsupportedSchema, valid_instance

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "COUNSELTUNE_REHEARSAL_API_TEST_KEY"
MODEL = "gpt-4-0613"
PRICE = {"input_per_m": 30.0, "output_per_m": 60.0}   # the study's GPT-4 price


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "any-key-will-do")
    with serving(log_path=tmp_path / "api.jsonl") as httpd:
        yield httpd


def client_config(url: str, cache_dir: Path, **overrides) -> dict:
    return {"backend": "openai", "model": MODEL, "base_url": url, "key_env": KEY_ENV, "concurrency": 4,
            "timeout_s": 30.0, "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "budget_usd": 50.0,
            "cache_dir": str(cache_dir), "prices": {MODEL: PRICE}, **overrides}


def logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


ZH_SESSION = Session("toy:zh-1", "zh", ((0, "client", "我最近总是睡不好，白天没精神。"),
                                        (1, "counselor", "能多说说睡不好的时候都在想些什么吗？"),
                                        (2, "client", "主要是担心工作做不完。"),
                                        (3, "counselor", "听起来工作压力一直压在你心上。"),
                                        (4, "client", "是的，我想改变但不知道从哪里开始。"),
                                        (5, "counselor", "你已经想改变了，这是很重要的一步。")))
EN_SESSION = Session("toy:en-1", "en", ((0, "counselor", "What brings you here today?"),
                                        (1, "client", "I drink too much on weekends."),
                                        (2, "counselor", "You are worried about how much you drink."),
                                        (3, "client", "My wife is upset about it.")))


# ---- every schema the project sends, through the project's own callers ------------------------------------

def test_the_judges_get_schema_valid_answers_through_the_real_client(api, tmp_path):
    """MITI, CTRS and safety, asked by the real judge code (ask_json validates every answer and re-asks a bad one):
    every session is judged on the first request, none fails, and the log shows one json_schema request each."""
    judge = make_client(client_config(api.url, tmp_path / "cache"))
    sessions = [ZH_SESSION, EN_SESSION]
    miti = judge_miti(judge, sessions)
    ctrs = judge_ctrs(judge, sessions)
    probes = [p for p in load_probes() if p.language in ("zh", "en")][:3]
    safety = evaluate_safety(judge, judge, probes)   # the probes answered by the API too (a chat request each)

    assert miti.report()["judged"] == 2 and miti.outcome.reasks == 0, miti.report()
    assert ctrs.report()["judged"] == 2 and ctrs.outcome.reasks == 0, ctrs.report()
    assert safety.summary()["rated"] == len(probes) and safety.summary()["failed"] == 0, safety.summary()
    # a question is coded as a question, a statement as a reflection-like code
    codes = dict(zip(miti.codes.filter(miti.codes["dialog_id"] == "toy:zh-1")["turn_index"].to_list(),
                     miti.codes.filter(miti.codes["dialog_id"] == "toy:zh-1")["miti_code"].to_list()))
    assert codes[1] in ("open_question", "closed_question") and codes[3] not in ("open_question", "closed_question")
    kinds = [e["kind"] for e in logged(api.log_path)]
    assert kinds.count("json_schema") == 2 + 2 + len(probes) and kinds.count("chat") == len(probes)
    assert all(e["status"] == 200 for e in logged(api.log_path))


@pytest.mark.parametrize("schema", [miti_schema([1, 3, 5, 7]), ctrs_schema(), safety_schema()],
                         ids=["miti", "ctrs", "safety"])
def test_each_project_schema_gets_a_valid_instance_from_a_plain_request(api, tmp_path, schema):
    [reply] = make_client(client_config(api.url, tmp_path / "cache")).complete([ChatRequest(
        (("system", "Rate the session."), ("user", "[1] Counselor: How are you?")), max_tokens=2000,
        schema=OutputSchema.of("judge", schema))])
    assert isinstance(reply, Reply), reply
    assert not list(Draft202012Validator(schema).iter_errors(json.loads(reply.text)))


def test_synthesis_turn_schemas_get_an_utterance_of_the_turn(api, tmp_path):
    """The turn-level generators ask each turn as JSON of turn_schema.py's schema (utterance pattern included)."""
    turn_schema = pytest.importorskip("counseltune.synthesize.turn_schema")
    from counseltune.synthesize import prompts

    schema = turn_schema.turn_schema("mi_planned_counselor_turn", "zh", 96, ("code", "open_question"))
    messages = prompts.mi_counselor_turn("zh", "一位压力很大的上班族", "工作", [("client", "我最近总是睡不好。")],
                                         "open_question")
    [reply] = make_client(client_config(api.url, tmp_path / "cache")).complete(
        [ChatRequest(messages, max_tokens=96, schema=schema)])
    fields = turn_schema.read_turn(reply.text, schema)   # the generator's own reader: raises on a bad turn
    assert fields["code"] == "open_question" and fields["utterance"].endswith("？")


# ---- synthesis: the study's mi_plain through the real stage and filters -------------------------------------

def test_mi_plain_synthesis_as_the_study_asks_is_accepted_by_the_real_filters(api, tmp_path, processed_sample):
    """The study's own mi_plain settings (zh, 8-30 utterances) through the real synthesize stage: every session
    asked for is accepted (no filter loosened), each within the turn range, in Chinese, and none a near duplicate."""
    from counseltune.config import load_params
    from counseltune.synthesize.run import synthesize
    from counseltune.study import load_study

    study = load_study(REPO / "studies/mi-study.yaml")
    params = load_params(REPO / "params.yaml")
    spec = {**study["synthesize.generators.mi_plain"], "n_sessions": 12}
    params["synthesize"]["generators"]["mi_plain"] = spec
    params["llm"]["backend"] = "openai"
    client = make_client(client_config(api.url, tmp_path / "cache"))

    stats = synthesize(params, "mi_plain", processed_sample, tmp_path / "out", client)

    assert stats["n_accepted"] == 12 and stats["n_quarantined"] == 0, stats
    import polars as pl

    dialogs = pl.read_parquet(tmp_path / "out" / "dialogs.parquet")
    low, high = spec["turns"]
    assert dialogs["n_turns"].is_between(low, high).all(), dialogs["n_turns"].to_list()
    assert dialogs["language"].unique().to_list() == ["zh"]
    assert {e["kind"] for e in logged(api.log_path)} == {"mi_plain_session"}
    assert client.usage.tokens_out > 0 and client.usage.cost_usd > 0


def test_mi_plain_in_english_too(api, tmp_path):
    from counseltune.synthesize.filters import FilterConfig, check_session
    from counseltune.synthesize.generate import MiPlain, Settings, generate
    from counseltune.synthesize.seeds import Seed

    seeds = [Seed(f"toy:{i}", "en", "drinking", (f"I drink on weekends, case {i}.",), None, f"case {i}")
             for i in range(4)]
    result = generate(MiPlain(Settings(language="en", turns=(8, 30), session_max_tokens=3000)), seeds,
                      make_client(client_config(api.url, tmp_path / "cache")), seed=0)
    for session in result.sessions:
        assert session.failure is None, session.failure
        verdict = check_session(session.turns, "en", FilterConfig())
        assert verdict.accepted, verdict.detail


# ---- the simulated client ------------------------------------------------------------------------------------

def test_the_simulated_client_speaks_in_its_language_and_sometimes_ends_the_session(api, tmp_path):
    """The real simulation, both sides on the API: each session is the profile's language, and some end by the
    client's END marker before the rounds run out (deterministic: the same sessions end on every run)."""
    cache = tmp_path / "cache"
    counselor = make_client(client_config(api.url, cache))
    client = make_client(client_config(api.url, cache))
    profiles = [IntakeProfile(f"p{i}", "zh" if i % 2 else "en", "I can't sleep since I lost my job.", "neutral", (),
                              None, "toy.json", f"#{i}") for i in range(8)]
    sim = simulate(counselor, client, profiles, SimulationSettings(rounds=6))
    assert sim.failures.height == 0, sim.failures
    ended = [json.loads(m)["ended_by"] for m in sim.dialogs["meta"].to_list()]
    assert "client_end" in ended and "rounds" in ended, ended
    assert all("[END]" not in text for text in sim.turns["text"].to_list())
    zh_client = sim.turns.filter(sim.turns["dialog_id"].str.ends_with("p1") & (sim.turns["role"] == "client"))
    assert all(any("\u4e00" <= c <= "\u9fff" for c in text) for text in zh_client["text"].to_list())
    assert {e["kind"] for e in logged(api.log_path)} == {"simulated_client", "chat"}


# ---- determinism, the log, usage, faults -----------------------------------------------------------------------

def test_the_same_body_gets_the_same_answer_and_another_seed_another(api):
    from counseltune.synthesize import prompts

    body = {"model": MODEL, "max_tokens": 3000, "seed": 7, "messages": [
        {"role": r, "content": c} for r, c in prompts.mi_plain_session("zh", "一位大学生", "学业", 12)]}
    first, again = post(api.url, body), post(api.url, body)
    other = post(api.url, {**body, "seed": 8})
    assert first[0] == again[0] == other[0] == 200
    text = first[1]["choices"][0]["message"]["content"]
    assert text == again[1]["choices"][0]["message"]["content"] != other[1]["choices"][0]["message"]["content"]
    assert len(text.splitlines()) == 12 and text.startswith("来访者：")
    assert first[1]["model"] == MODEL
    usage = first[1]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_log_records_every_request_and_an_unchanged_rerun_sends_none(api, tmp_path):
    requests = [ChatRequest((("user", f"question {i}"),), max_tokens=64, seed=1) for i in range(3)]
    first = make_client(client_config(api.url, tmp_path / "cache"))
    first.complete(requests)
    log = logged(api.log_path)
    assert [e["status"] for e in log] == [200, 200, 200]
    assert {e["model"] for e in log} == {MODEL} and {e["kind"] for e in log} == {"chat"}
    assert len({e["prompt_hash"] for e in log}) == 3 and all(e["time"] and e["completion_tokens"] > 0 for e in log)
    assert first.usage.cost_usd > 0 and first.usage.tokens_in > 0   # the spend accounting sees what was bought

    again = make_client(client_config(api.url, tmp_path / "cache"))
    assert all(r.cached for r in again.complete(requests))
    assert len(logged(api.log_path)) == 3


def test_injected_faults_are_retried_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with serving(log_path=tmp_path / "api.jsonl", fail_every=2, fail_status=429) as httpd:
        client = make_client(client_config(httpd.url, tmp_path / "cache", concurrency=1))
        replies = client.complete([ChatRequest((("user", f"q{i}"),), max_tokens=32) for i in range(3)])
    assert all(isinstance(r, Reply) for r in replies), replies
    statuses = [e["status"] for e in logged(tmp_path / "api.jsonl")]
    assert statuses.count(429) == client.usage.attempt_errors["http_429"] >= 1
    assert statuses.count(200) == 3


def test_a_reply_longer_than_max_tokens_is_cut_as_a_real_endpoint_cuts_it(api):
    from counseltune.synthesize import prompts

    body = {"model": MODEL, "max_tokens": 40, "messages": [
        {"role": r, "content": c} for r, c in prompts.mi_plain_session("zh", "一位大学生", "学业", 20)]}
    status, reply = post(api.url, body)
    assert status == 200 and reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] <= 40


def test_json_object_answers_a_judge_prompt_with_its_schema_and_names_the_keys_asked(api):
    transcript = "[0] Client: I drink too much.\n[1] Counselor: What worries you about it?\n[2] Client: My wife.\n" \
                 "[3] Counselor: She matters to you."
    status, reply = post(api.url, {"model": MODEL, "response_format": {"type": "json_object"}, "messages": [
        {"role": "system", "content": MITI_SYSTEM["en"]},
        {"role": "user", "content": f"{TRANSCRIPT_HEADER['en']}\n{transcript}"}]})
    assert status == 200
    answer = json.loads(reply["choices"][0]["message"]["content"])
    assert not list(Draft202012Validator(miti_schema([1, 3])).iter_errors(answer))

    status, reply = post(api.url, {"model": MODEL, "response_format": {"type": "json_object"}, "messages": [
        {"role": "user", "content": 'Answer as {"verdict": "...", "reason": "..."}'}]})
    assert set(json.loads(reply["choices"][0]["message"]["content"])) == {"verdict", "reason"}


def test_a_schema_it_cannot_meet_is_refused_in_one_line_not_answered_wrong(api):
    schema = {"type": "object", "required": ["when"], "properties": {"when": {"type": "string", "format": "date"}}}
    status, reply = post(api.url, {"model": MODEL, "messages": [{"role": "user", "content": "when?"}],
                                   "response_format": {"type": "json_schema",
                                                       "json_schema": {"name": "w", "schema": schema}}})
    assert status == 422 and "'format'" in reply["error"]["message"] and "\n" not in reply["error"]["message"]
    assert logged(api.log_path)[-1]["status"] == 422
    status, _ = post(api.url, {"model": MODEL, "messages": []})
    assert status == 400


def test_schema_instances_cover_the_keywords_beside_the_project_schemas():
    import random

    schema = {"$defs": {"score": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}},
              "type": "object", "additionalProperties": False, "required": ["a", "b", "c", "d", "e"],
              "properties": {"a": {"$ref": "#/$defs/score"},
                             "b": {"type": "array", "minItems": 2, "maxItems": 4, "items": {"enum": ["x", "y"]}},
                             "c": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "number", "minimum": 5}]},
                             "d": {"type": ["null", "number"], "minimum": -1.5, "maximum": -1.0},
                             "e": {"const": 42}, "f": {"type": "string", "pattern": "^[^:]*$", "minLength": 2}}}
    for seed in range(20):
        value = valid_instance(schema, random.Random(seed))
        assert not list(Draft202012Validator(schema).iter_errors(value)) and value["a"] in (1, 2)
    with pytest.raises(UnsupportedSchema, match="pattern"):
        valid_instance({"type": "string", "pattern": "^[0-9]{4}$"}, random.Random(0))


# ---- the command ---------------------------------------------------------------------------------------------

def test_the_command_serves_writes_its_url_and_stops_on_sigterm(tmp_path):
    ready, log = tmp_path / "ready" / "url", tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "counseltune.cli", "rehearsal-api", "--port", "0", "--log", str(log),
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        url = ready.read_text()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        status, _ = post(url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        with urllib.request.urlopen(url + "/models", timeout=10) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == ["m"]
        assert status == 200 and len(logged(log)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 1 chat-completions request" in out


def test_a_taken_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "counseltune.cli", "rehearsal-api", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("counseltune rehearsal-api: error: cannot listen on 127.0.0.1:")
    assert "Traceback" not in result.stderr and "--port" in result.stderr


def test_the_help_says_what_it_serves():
    result = subprocess.run([sys.executable, "-m", "counseltune.cli", "rehearsal-api", "--help"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0
    for word in ("--ready-file", "--log", "--fail-every", "json_schema", "SIGTERM"):
        assert word in result.stdout, word



@pytest.mark.parametrize("language", ["zh", "en"])
def test_each_turn_level_synthesis_prompt_gets_one_utterance_of_its_role(api, language):
    """The free-text turn prompts (an endpoint's answer when no schema is sent): one line, no speaker label, the
    prompt's language; a question where the plan asks for one."""
    from counseltune.synthesize import prompts
    from counseltune.synthesize.parse import speaker_prefix

    history = [("client", "我最近总是睡不好。" if language == "zh" else "I can't sleep lately.")]
    asks = {"mi_counselor_turn": prompts.mi_counselor_turn(language, "p", "t", history, "open_question"),
            "client_turn": prompts.client_turn(language, "p", "t", history, "change"),
            "cbt_counselor_turn": prompts.cbt_counselor_turn(language, "p", "t", history, "homework"),
            "cbt_answer": prompts.cbt_answer(language, history[0][1])}
    for kind, messages in asks.items():
        status, reply = post(api.url, {"model": MODEL, "messages": [{"role": r, "content": c} for r, c in messages]})
        text = reply["choices"][0]["message"]["content"]
        assert status == 200 and logged(api.log_path)[-1]["kind"] == kind
        assert text and "\n" not in text and speaker_prefix(text) is None, (kind, text)
        assert any("\u4e00" <= c <= "\u9fff" for c in text) == (language == "zh"), (kind, text)
        if kind == "mi_counselor_turn":
            assert text.endswith(("?", "？")), text
