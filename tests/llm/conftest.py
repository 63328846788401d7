"""Fixtures for the LLM client tests: a loopback OpenAI server and a config pointing at it."""

from __future__ import annotations

import pytest

from counseltune.llm import ChatRequest

from .fake_openai import FakeOpenAI

KEY_ENV = "COUNSELTUNE_TEST_LLM_KEY"
SECRET = "sk-test-5f0c3a9e-NEVER-PRINT-ME"
PRICE = {"input_per_m": 1000.0, "output_per_m": 2000.0}  # $0.001 a prompt token: budgets in round numbers


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def fake_server():
    """FakeOpenAI(**kwargs) started for the test and stopped after it."""
    started = []

    def start(**kwargs) -> FakeOpenAI:
        server = FakeOpenAI(**kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def remote_config(server: FakeOpenAI, cache_dir, **overrides) -> dict:
    """A fast llm config for the loopback server: short timeout and backoff."""
    return {"backend": "openai", "model": "fake-model", "base_url": server.url, "key_env": KEY_ENV,
            "concurrency": 4, "timeout_s": 0.5, "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
            "budget_usd": 100.0, "cache_dir": str(cache_dir), "prices": {"fake-model": PRICE}, **overrides}


def user_requests(n: int, prefix: str = "question", **kwargs) -> list[ChatRequest]:
    return [ChatRequest.of([{"role": "system", "content": "You are a counselor."},
                            {"role": "user", "content": f"{prefix} {i}"}], max_tokens=64, **kwargs)
            for i in range(n)]
