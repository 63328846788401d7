"""The API key comes from the environment only and never shows up in any output, file or log."""

from __future__ import annotations

import logging

import pytest

from counseltune.llm import (
    BudgetExceeded,
    ConfigError,
    MissingAPIKey,
    make_client,
    write_usage,
)

from .conftest import KEY_ENV, SECRET, remote_config, user_requests


def test_a_missing_key_names_the_variable_and_what_to_do(fake_server, monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(MissingAPIKey, match=f"environment variable {KEY_ENV}.*export {KEY_ENV}=.*backend: local"):
        make_client(remote_config(fake_server(), tmp_path))


def test_a_key_in_the_config_is_refused(fake_server, api_key, tmp_path):
    with pytest.raises(ConfigError, match="must not hold the API key"):
        make_client({**remote_config(fake_server(), tmp_path), "api_key": SECRET})


def test_the_key_never_leaks(fake_server, api_key, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # the openai and HTTP libraries' debug logs included
    server = fake_server(faults=["429", "500", "drop", "malformed_json", "hang"], hang_s=1.0)
    client = make_client(remote_config(server, tmp_path / "cache", max_retries=2, concurrency=2, budget_usd=0.5))
    with pytest.raises(BudgetExceeded) as stopped:
        client.complete(user_requests(12))
    results = stopped.value.results
    summary = write_usage(tmp_path / "usage.json", client.usage, stage="test", model=client.model)

    outputs = [str(stopped.value), summary, repr(client), *(repr(r) for r in results), caplog.text, *capfd.readouterr()]
    files = [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 2 and caplog.text
    for text in outputs + files:
        assert SECRET not in text
    # ...and it was sent, as the bearer token, on every request
    assert {e.authorization for e in server.log} == {f"Bearer {SECRET}"}
