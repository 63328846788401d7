"""A loopback OpenAI endpoint that answers like a judge, a counselor or a simulated client (shared by the
test_judge*, test_ctrs*, test_safety* and test_simulate* modules), and checks of the endpoint itself.

ScriptedOpenAI is tests/llm/fake_openai.FakeOpenAI (real HTTP, request log, injectable faults) whose normal
replies are computed from the request by `respond`. Markers in the conversation steer it:
  BAD<k>      in a session: the judge's first k answers break the schema (then it answers validly)
  BADALL      in a session: the judge's answers always break the schema
  LEAVE       in a simulated client's intake: the client ends the session on its second turn
"""

from __future__ import annotations

import json
import re


from counseltune.llm import make_client
from tests.llm.fake_openai import FakeOpenAI, _completion, _handler

KEY_ENV = "COUNSELTUNE_TEST_JUDGE_KEY"
JUDGE, COUNSELOR, SIM_CLIENT = "judge-model", "counselor-model", "client-model"
SAFE_MODEL, UNSAFE_MODEL = "safe-model", "unsafe-model"
_COUNSELOR_LINE = re.compile(r"^\[(\d+)\] (?:Counselor|咨询师|상담자): (.*)$", re.MULTILINE)
_CTRS_KEYS = re.compile(r"^- ([a-z_]+): ", re.MULTILINE)


class ScriptedOpenAI(FakeOpenAI):
    """FakeOpenAI whose 'ok' replies are respond(body); every other fault is served as FakeOpenAI serves it."""

    def __init__(self, respond=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.respond = respond or answer
        outer = self

        class Handler(_handler(self)):
            def _serve(self, fault: str, body: dict):
                if fault != "ok":
                    return super()._serve(fault, body)
                outer.wait(outer.latency_s)
                payload = _completion(body, "ok")
                payload["choices"][0]["message"]["content"] = outer.respond(body)
                self._send(200, payload)
                return 200

        self._server.RequestHandlerClass = Handler

    def models(self) -> list[str]:
        return [entry.body["model"] for entry in self.log if entry.status == 200]


def answer(body: dict) -> str:
    """What each test model says: a function of the request only, so answers are reproducible."""
    messages = body["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    model = body["model"]
    if model == JUDGE:
        reask = (len(messages) - 2) // 2  # each re-ask appends the bad answer and a note
        if "MITI" in system:
            return _miti(messages[1]["content"], reask)
        if "CTRS" in system:
            return _ctrs(system, messages[1]["content"], reask)
        return _safety(messages[1]["content"])
    if model == COUNSELOR:
        return f"How does that feel? (counselor turn {len(messages)})"
    if model == SIM_CLIENT:
        if "LEAVE" in system and len(messages) >= 4:
            return "Thanks, that helps. Goodbye. [END]"
        return f"I feel stuck at work. (client turn {len(messages)})"
    if model == SAFE_MODEL:
        return ("I'm really glad you told me. Are you safe right now? Please call the crisis hotline 988 or 120 "
                "now (in Korea 109).")
    if model == UNSAFE_MODEL:
        return "That sounds hard. Maybe just sleep on it."
    return f"reply to: {messages[-1]['content']}"


def _broken(transcript: str, reask: int) -> bool:
    marker = re.search(r"BAD(\d+|ALL)", transcript)
    return marker is not None and (marker.group(1) == "ALL" or reask < int(marker.group(1)))


def _miti(transcript: str, reask: int) -> str:
    turns = [(int(i), text) for i, text in _COUNSELOR_LINE.findall(transcript)]
    codes = {str(i): "open_question" if text.rstrip().endswith(("?", "？")) else "simple_reflection"
             for i, text in turns}
    rated = {"score": 4, "justification": "Warm and curious."}
    globals_ = {name: dict(rated) for name in
                ("cultivating_change_talk", "softening_sustain_talk", "partnership", "empathy")}
    if _broken(transcript, reask):
        globals_["empathy"]["score"] = 7  # out of range: schema-invalid
    return json.dumps({"codes": codes, "globals": globals_}, ensure_ascii=False)


def _ctrs(system: str, transcript: str, reask: int) -> str:
    items = {key: {"score": 4, "justification": "Adequate."} for key in _CTRS_KEYS.findall(system)}
    if _broken(transcript, reask):
        items.pop(next(iter(items)))  # an item left out: schema-invalid
    return json.dumps({"items": items})


def _safety(exchange: str) -> str:
    reply = exchange.rsplit("\n", 1)[-1]
    helped = "hotline" in reply or "热线" in reply
    return json.dumps({"acknowledges": True, "assesses_risk": helped, "points_to_resources": helped,
                       "avoids_encouraging_harm": True, "safe": helped, "justification": "Checked."})


def llm_config(server: FakeOpenAI, cache_dir, model: str, **overrides) -> dict:
    return {"backend": "openai", "model": model, "base_url": server.url, "key_env": KEY_ENV, "concurrency": 4,
            "timeout_s": 5.0, "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "budget_usd": 100.0,
            "cache_dir": str(cache_dir), "prices": {model: {"input_per_m": 0.0, "output_per_m": 0.0}}, **overrides}


class CountingClient:
    """A Client that records the size of every complete() call it passes on."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.backend, self.model, self.usage = inner.backend, inner.model, inner.usage

    def complete(self, requests, desc: str = ""):
        self.calls.append(len(requests))
        return self.inner.complete(requests, desc)


def serve(monkeypatch, tmp_path):
    """Generator behind each module's `loopback` fixture: yields (server, client_for(model)), a started
    ScriptedOpenAI and a maker of real clients for it that share one cache; stops the server after the test."""
    monkeypatch.setenv(KEY_ENV, "sk-test-fidelity")
    server = ScriptedOpenAI().__enter__()

    def client_for(model: str, **overrides):
        return CountingClient(make_client(llm_config(server, tmp_path / "llm-cache", model, **overrides)))

    yield server, client_for
    server.__exit__(None, None, None)


def test_answers_are_computed_from_the_request(loopback):
    server, client_for = loopback
    from counseltune.llm import ChatRequest

    [reply] = client_for(COUNSELOR).complete([ChatRequest((("user", "hi"),))])
    assert reply.text == "How does that feel? (counselor turn 1)"
    assert server.models() == [COUNSELOR]


def test_broken_marker_counts_reasks():
    assert _broken("BAD2", 0) and _broken("BAD2", 1) and not _broken("BAD2", 2)
    assert _broken("BADALL", 9) and not _broken("fine", 0)
