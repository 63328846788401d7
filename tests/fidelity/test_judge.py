"""The MITI judge through a real client and a loopback endpoint: valid path, re-asks, failures, the cache."""

from __future__ import annotations

import json

import polars as pl
from jsonschema import Draft202012Validator

from counseltune.fidelity.judges.judge import (
    JUDGE_CODES,
    PROMPT_VERSION,
    judge_miti,
    miti_schema,
)
from counseltune.fidelity.judges.sessions import Session, sessions_from_tables
from counseltune.llm.structured import REASK_NOTE

from .test_judge_loopback import JUDGE


def session(dialog_id: str, marker: str = "", language: str = "en") -> Session:
    return Session(dialog_id, language, (
        (0, "counselor", "Hello, what brings you in today?"),
        (1, "client", f"I drink too much on weekends. {marker}".strip()),
        (2, "counselor", "You are worried about the weekends."),
        (3, "client", f"Yes, a bit ({dialog_id})."),
        (4, "counselor", "What would you like to change?"),
    ))


def test_valid_answers_become_codes_globals_and_summaries(loopback):
    server, client_for = loopback
    judge = client_for(JUDGE)
    sessions = [session("toy:a"), session("toy:b"), Session("toy:c", "zh", ((0, "client", "我睡不着。"),
                                                                        (1, "counselor", "你最近睡得不好？")))]
    result = judge_miti(judge, sessions, seed=3)

    assert judge.calls == [3]  # one request per session, all in one complete() call
    assert result.report() == {"sessions": 3, "judged": 3, "failed": 0, "failures_by_reason": {}, "reasks": 0,
                               "skipped_no_counselor_turn": 0, "asks": 3, "truncated": 0, "paid_attempts": 3,
                               "cache_hits": 0, "cost_usd": 0.0}
    a = result.codes.filter(pl.col("dialog_id") == "toy:a")
    assert a["turn_index"].to_list() == [0, 2, 4]
    assert a["miti_code"].to_list() == ["open_question", "simple_reflection", "open_question"]
    assert set(result.codes["judge_model"]) == {JUDGE}
    assert result.globals.height == 12 and set(result.globals["score"]) == {4}
    summary = {r["summary"]: r for r in result.summary.filter(pl.col("dialog_id") == "toy:a").iter_rows(named=True)}
    assert summary["technical"]["value"] == 4.0 and summary["technical"]["grade"] == "good"
    assert summary["reflection_to_question"]["value"] == 0.5  # 1 reflection : 2 questions
    # requests run concurrently, so the server's log order is not the session order: find toy:a's request
    body = next(e.body for e in server.log if "(toy:a)" in json.dumps(e.body, ensure_ascii=False))
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["strict"]
    assert body["response_format"]["json_schema"]["schema"]["properties"]["codes"]["required"] == ["0", "2", "4"]
    assert body["temperature"] == 0 and body["seed"] == 3
    assert "咨询师" in next(e.body for e in server.log if "我睡不着" in json.dumps(e.body, ensure_ascii=False))[
        "messages"][1]["content"]


def test_an_invalid_answer_is_reasked_with_a_note(loopback):
    server, client_for = loopback
    judge = client_for(JUDGE)
    result = judge_miti(judge, [session("toy:ok"), session("toy:bad", "BAD1")])

    assert judge.calls == [2, 1]  # the second call re-asks only the invalid session
    assert result.report()["judged"] == 2 and result.outcome.reasks == 1
    [bad] = [a for a in result.outcome.answers if a.key == "toy:bad"]
    assert bad.attempts == 2
    reask = server.log[-1].body["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[3]["content"].startswith(REASK_NOTE["en"].split("{")[0]) and "globals/empathy/score" in reask[3]["content"]


def test_exhausted_reasks_are_a_counted_failure_never_data(loopback):
    server, client_for = loopback
    result = judge_miti(client_for(JUDGE), [session("toy:ok"), session("toy:hopeless", "BADALL")], max_reasks=2)

    assert result.report()["failed"] == 1 and result.outcome.failures == {"schema_invalid": 1}
    assert result.failures.row(0, named=True)["dialog_id"] == "toy:hopeless"
    assert result.failures["attempts"].to_list() == [3]
    assert "toy:hopeless" not in set(result.codes["dialog_id"]) | set(result.globals["dialog_id"])
    assert len(server.log) == 4  # 2 first asks + 2 re-asks of the hopeless one


def test_a_reply_that_is_not_json_is_reasked_then_a_counted_failure(loopback):
    server, client_for = loopback
    server.script("not_json", "not_json", "not_json")  # re-asked here (max_reasks 2), not retried by the client
    result = judge_miti(client_for(JUDGE), [session("toy:a")])
    assert result.outcome.failures == {"not_json": 1} and result.codes.is_empty()
    assert len(server.log) == 3 and result.outcome.reasks == 2


def test_rerun_sends_nothing_and_a_changed_session_only_itself(loopback):
    server, client_for = loopback
    sessions = [session("toy:a"), session("toy:b", "BAD1"), session("toy:c")]
    first = judge_miti(client_for(JUDGE), sessions)
    sent = len(server.log)
    assert sent == 4  # three sessions and one re-ask

    again = client_for(JUDGE)  # a new client (a new run) on the same cache
    second = judge_miti(again, sessions)
    assert len(server.log) == sent and again.usage.requests == 0
    assert second.codes.equals(first.codes) and second.globals.equals(first.globals)

    changed = [sessions[0], Session("toy:b", "en", sessions[1].turns[:4] + ((4, "counselor", "BAD1 What next?"),)),
               sessions[2]]
    judge_miti(client_for(JUDGE), changed)
    new = server.log[sent:]
    assert len(new) == 2  # toy:b and its re-ask; toy:a and toy:c come from the cache
    assert all("BAD1 What next?" in e.body["messages"][1]["content"] for e in new)


def test_sessions_without_counselor_turns_are_skipped(loopback):
    server, client_for = loopback
    result = judge_miti(client_for(JUDGE), [Session("toy:quiet", "en", ((0, "client", "Hi."),))])
    assert result.skipped == ["toy:quiet"] and len(server.log) == 0


def test_the_schema_takes_every_counselor_turn_once_and_nothing_else():
    schema = miti_schema(session("toy:a").counselor_turns)
    rated = {"score": 3, "justification": "ok"}
    answer = {"codes": {"0": "other", "2": "affirm", "4": "open_question"},
              "globals": {name: rated for name in schema["properties"]["globals"]["required"]}}
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors(answer))
    for codes in ({"0": "other", "2": "affirm"}, {**answer["codes"], "1": "other"}, {**answer["codes"], "4": "x"}):
        assert list(validator.iter_errors({**answer, "codes": codes})), codes


def test_schema_lists_the_miti_codes():
    codes = miti_schema([1])["properties"]["codes"]["properties"]["1"]["enum"]
    assert set(codes) == set(JUDGE_CODES) and "question" not in codes and len(codes) == 12
    assert PROMPT_VERSION.startswith("miti-judge-")


def test_sessions_from_tables_keeps_language_and_drops_system_turns():
    from tests.conftest import dialog_rows, frames

    dialogs, turns = frames(dialog_rows("toy:1", [("system", "be kind"), ("client", "嗨"), ("counselor", "你好")]))
    [s] = sessions_from_tables(dialogs, turns)
    assert s.language == "zh" and s.turns == ((1, "client", "嗨"), (2, "counselor", "你好"))
    assert s.transcript() == "[1] 来访者: 嗨\n[2] 咨询师: 你好"


def test_sessions_from_predictions_swap_in_the_model_turns():
    from counseltune.fidelity.judges.sessions import sessions_from_predictions
    from tests.conftest import dialog_rows, frames

    dialogs, turns = frames(dialog_rows("toy:1", [("client", "a"), ("counselor", "ref 1"), ("client", "b"),
                                                  ("counselor", "ref 3"), ("client", "c"), ("counselor", "ref 5")]))
    predictions = pl.DataFrame({"model": ["m", "m"], "variant": ["finetuned"] * 2, "dialog_id": ["toy:1"] * 2,
                                "turn_index": [1, 3], "hypothesis": ["model 1", ""]})
    [s] = sessions_from_predictions(dialogs, turns, predictions)
    assert s.turns == ((0, "client", "a"), (1, "counselor", "model 1"), (2, "client", "b"), (3, "counselor", "(no reply)"))


def test_a_failed_semantic_check_is_reasked_like_a_schema_error():
    from counseltune.llm.structured import Settings, Task, ask_json, parse_object
    from counseltune.llm import Reply

    class Scripted:  # an in-process Client: answers {"n": <number of re-asks so far>}
        backend, model = "stub", "stub"

        def __init__(self):
            self.calls = []

        def complete(self, requests, desc=""):
            self.calls.append(len(requests))
            return [Reply(json.dumps({"n": (len(r.messages) - 1) // 2}), 1, 1, "stop", False) for r in requests]

    task = Task("t", (("user", "count"),), {"type": "object", "required": ["n"]}, 50,
                check=lambda data: None if data["n"] >= 2 else f"n is {data['n']}, want 2")
    client = Scripted()
    outcome = ask_json(client, [task], Settings("test-v1", max_reasks=2))
    assert client.calls == [1, 1, 1] and outcome.answers[0].data == {"n": 2} and outcome.reasks == 2
    assert parse_object('```json\n{"a": 1}\n```') == {"a": 1} and parse_object("[1]") is None
