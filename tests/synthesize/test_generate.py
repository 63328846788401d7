"""The generators and the lockstep loop, driven by scripted clients (no model)."""

from __future__ import annotations

import pytest

from counseltune.llm.types import Reply
from counseltune.synthesize import prompts
from counseltune.synthesize.generate import (
    GenerationError,
    Settings,
    generate,
    make_generator,
    session_length,
    slug,
)
from counseltune.synthesize.planner import fit
from counseltune.synthesize.seeds import Seed
from tests.synthesize.helpers import ScriptedClient, annomi_turns, as_turn, planned_code

SEEDS = [
    Seed("toy:train-1", "zh", "工作压力", ("我最近工作压力很大。",), None, "我最近工作压力很大。"),
    Seed("toy:train-2", "zh", None, ("我和父母经常吵架。",), None, "我和父母经常吵架。"),
    Seed("kmi:3", "zh", "学业", (), "一名担心考试的高中生", "一名担心考试的高中生"),
]


@pytest.fixture(scope="module")
def planner():
    return fit(annomi_turns()[1])


def run(name, client, planner=None, n=6, seed=1, **settings):
    generator = make_generator(name, Settings(**{"language": "zh", **settings}), planner)
    return generate(generator, [SEEDS[i % len(SEEDS)] for i in range(n)], client, seed)


def test_mi_planned_advances_all_sessions_in_lockstep(planner):
    client = ScriptedClient()
    result = run("mi_planned", client, planner, n=6, turns=(4, 10))
    lengths = [len(s.steps) for s in result.sessions]
    assert len(set(lengths)) > 1                             # sessions of different lengths...
    assert len(client.batches) == result.rounds == max(lengths)  # ...one complete() call per round
    for round_index, batch in enumerate(client.batches):
        assert len(batch) == sum(n > round_index for n in lengths)
    assert all(s.failure is None and len(s.turns) == len(s.steps) for s in result.sessions)


def test_planned_codes_and_talk_types_are_on_the_turns(planner):
    client = ScriptedClient()
    result = run("mi_planned", client, planner, n=3, turns=(6, 6))
    asked = {}  # the code each counselor prompt asked for, by (session seed, turn)
    for batch in client.batches:
        for request in batch:
            if request.prompt_version == prompts.MI_COUNSELOR_TURN.prompt_version:
                asked[(request.seed, request.messages[1][1].count("\n"))] = planned_code(request)
    for session in result.sessions:
        assert [t.role for t in session.turns] == ["client", "counselor"] * 3
        for turn, step in zip(session.turns, session.steps):
            assert (turn.code, turn.talk) == (step.code, step.talk)
        assert all(t.talk in ("change", "neutral", "sustain") for t in session.turns if t.role == "client")
        assert all(t.text.endswith("？") == (t.code in ("open_question", "closed_question")) for t in session.turns if t.role == "counselor")
    assert sorted(v for v in asked.values()) == sorted(t.code for s in result.sessions for t in s.turns if t.role == "counselor")


def test_requests_carry_the_session_seed_and_prompt_version(planner):
    client = ScriptedClient()
    result = run("mi_planned", client, planner, n=4, turns=(4, 4), temperature=0.3, max_tokens=77)
    seeds = {s.request_seed for s in result.sessions}
    assert len(seeds) == 4
    for batch in client.batches:
        assert {r.seed for r in batch} == seeds
        assert all(r.temperature == 0.3 and r.max_tokens == 77 and r.tag == "synthesize:mi_planned" for r in batch)
        assert {r.prompt_version for r in batch} <= {prompts.MI_COUNSELOR_TURN.prompt_version, prompts.CLIENT_TURN.prompt_version}


def test_generation_is_deterministic_for_a_seed(planner):
    def snapshot(seed):
        client = ScriptedClient()
        result = run("mi_planned", client, planner, n=5, seed=seed)
        return [(s.dialog_id, s.steps, [t.text for t in s.turns]) for s in result.sessions], client.batches

    first, first_batches = snapshot(9)
    again, again_batches = snapshot(9)
    assert first == again and first_batches == again_batches   # identical requests: stable cache keys
    assert first != snapshot(10)[0]


def test_a_session_plan_does_not_depend_on_how_many_run(planner):
    few = run("mi_planned", ScriptedClient(), planner, n=2).sessions
    many = run("mi_planned", ScriptedClient(), planner, n=6).sessions
    assert [(s.steps, s.request_seed) for s in few] == [(s.steps, s.request_seed) for s in many[:2]]


def test_a_failure_ends_only_its_session(planner):
    doomed = set()

    def fail(request, call):  # sessions whose seed is even fail on the second round
        if call == 2 and request.seed % 2 == 0:
            doomed.add(request.seed)
            return "http_429"
        return None

    client = ScriptedClient(fail=fail)
    result = run("mi_planned", client, planner, n=8, turns=(6, 6))
    assert doomed and len(doomed) < 8
    assert len(client.batches) == result.rounds == 6
    for session in result.sessions:
        if session.request_seed in doomed:
            assert session.failure[0] == "llm_http_429" and "after 3 attempts" in session.failure[1]
            assert len(session.turns) == 1 and not session.active
        else:
            assert session.failure is None and len(session.turns) == 6
    later = [r.seed for batch in client.batches[2:] for r in batch]
    assert not doomed & set(later)   # no request for a session after it failed


def test_mi_plain_writes_a_whole_session_in_one_round():
    client = ScriptedClient()
    result = run("mi_plain", client, n=4, turns=(6, 8))
    assert len(client.batches) == result.rounds == 1 and len(client.batches[0]) == 4
    for session in result.sessions:
        assert len(session.turns) == session.steps[0].n_turns
        assert [t.role for t in session.turns][:2] == ["client", "counselor"]
        assert all(t.code is None for t in session.turns)


def test_mi_plain_unparseable_reply_is_a_failure():
    client = ScriptedClient(text=lambda request: "Sorry, I can't help with that.")
    [session] = run("mi_plain", client, n=1).sessions
    assert session.failure[0] == "unparseable_transcript"


def test_cbt_session_names_the_stage_in_each_counselor_prompt():
    client = ScriptedClient()
    result = run("cbt_session", client, n=3, turns=(10, 10))
    assert result.rounds == 10
    session = result.sessions[0]
    stages = [t.stage for t in session.turns if t.role == "counselor"]
    assert stages == list(prompts.CBT_STAGES)
    counselor_prompts = [b[0].messages[1][1] for b in client.batches if b[0].prompt_version.startswith("cbt_counselor_turn")]
    for stage, prompt in zip(stages, counselor_prompts):
        assert prompts.CBT_STAGE_DESCRIPTIONS["zh"][stage] in prompt
    client_prompts = [b[0].messages[1][1] for b in client.batches if b[0].prompt_version.startswith("client_turn")]
    assert all("改变语句" not in p for p in client_prompts)  # CBT clients are not steered to MI talk types


def test_cbt_answer_keeps_the_seed_question():
    client = ScriptedClient()
    result = run("cbt_answer", client, n=3)
    assert result.rounds == 1
    for session, seed in zip(result.sessions, SEEDS):
        assert [t.role for t in session.turns] == ["client", "counselor"]
        assert session.turns[0].text == (seed.opening[0] if seed.opening else seed.summary)
        assert session.turns[0].text in client.batches[0][session.index].messages[1][1]


def test_truncated_invalid_and_empty_turns_end_the_session(planner):
    cut = '{"talk":"change","utterance":"我最近很累。我想'

    def text(request):
        return [cut, "咨询师：你好。", as_turn(request, "“”")][request.seed % 3]

    class Truncating(ScriptedClient):
        def complete(self, requests, desc=""):
            replies = super().complete(requests, desc)
            return [Reply(r.text, 1, 1, "length" if r.text == cut else "stop", False) for r in replies]

    result = run("mi_planned", Truncating(text=text), planner, n=9)
    reasons = {s.request_seed % 3: s.failure[0] for s in result.sessions}
    # a cut JSON turn is never trimmed into a turn; text that is not a turn of its schema is reported as such
    assert reasons == {0: "truncated_reply", 1: "invalid_turn", 2: "empty_reply"}
    assert all(len(s.turns) == 0 for s in result.sessions)


def test_each_turn_is_asked_under_its_bounded_schema(planner):
    client = ScriptedClient()
    result = run("mi_planned", client, planner, n=3, turns=(6, 6), language="en", max_tokens=96)
    cbt = ScriptedClient()
    run("cbt_session", cbt, n=2, turns=(10, 10), language="en", max_tokens=96)
    by_seed = {s.request_seed: s for s in result.sessions}
    for round_index, batch in enumerate(client.batches):
        for request in batch:
            step = by_seed[request.seed].steps[round_index]
            schema = request.schema.schema
            label = ("code", step.code) if step.role == "counselor" else ("talk", step.talk)
            assert request.schema.name == f"mi_planned_{step.role}_turn"
            assert schema["properties"][label[0]] == {"type": "string", "enum": [label[1]]}
            assert schema["required"] == sorted([label[0], "utterance"]) and not schema["additionalProperties"]
            assert 16 <= schema["properties"]["utterance"]["maxLength"] < 96 * 4
    first = [b[0].schema for b in cbt.batches]   # one session's requests, in order
    assert [s.schema["properties"]["stage"]["enum"][0] for s in first if s.name == "cbt_session_counselor_turn"] \
        == list(prompts.CBT_STAGES)
    assert {s.name for s in first} == {"cbt_session_counselor_turn", "cbt_session_client_turn"}
    # the turn text is the utterance, not the JSON around it
    assert all(not t.text.startswith("{") for s in result.sessions for t in s.turns)


def test_a_turn_prompt_shows_only_the_last_turns(planner):
    client = ScriptedClient()
    run("mi_planned", client, planner, n=1, turns=(8, 8), language="en")
    last_prompt = client.batches[-1][0].messages[1][1]
    shown = [line for line in last_prompt.split("\n") if line.startswith(("Client: ", "Counselor: "))]
    assert len(shown) == prompts.HISTORY_TURNS


class CutOff(ScriptedClient):
    """Every reply hits max_tokens in the middle of its second sentence."""

    def complete(self, requests, desc=""):
        return [Reply("I hear you. It sounds like you want to chan", 1, 1, "length", False) for _ in requests]


def test_an_unstructured_reply_cut_by_max_tokens_keeps_its_complete_sentences():
    result = run("cbt_answer", CutOff(), n=2, language="en")
    assert all(s.failure is None for s in result.sessions)
    assert {s.turns[-1].text for s in result.sessions} == {"I hear you."}
    assert all(s.meta["replies_trimmed"] == 1 for s in result.sessions)


def test_on_truncated_quarantine_ends_the_session_instead():
    result = run("cbt_answer", CutOff(), n=2, language="en", on_truncated="quarantine")
    assert {s.failure[0] for s in result.sessions} == {"truncated_reply"}


def test_a_client_that_loses_replies_is_an_error(planner):
    class Lossy(ScriptedClient):
        def complete(self, requests, desc=""):
            return super().complete(requests, desc)[:-1]

    with pytest.raises(GenerationError, match="replies for"):
        run("mi_planned", Lossy(), planner, n=3)


def test_unknown_generator_and_missing_planner():
    with pytest.raises(GenerationError, match="unknown generator"):
        make_generator("mi_magic", Settings())
    with pytest.raises(GenerationError, match="needs a fitted planner"):
        make_generator("mi_planned", Settings())
    with pytest.raises(GenerationError, match="turns"):
        Settings.from_params({"turns": [5, 2]})


def test_session_length_prefers_even_counts():
    import numpy as np

    rng = np.random.default_rng(0)
    lengths = {session_length(rng, 5, 9) for _ in range(200)}
    assert lengths == {6, 8}
    assert session_length(rng, 3, 3) == 3
    assert slug("HTTP 5xx!") == "http_5xx" and slug("???") == "unknown"
