"""Config validation: defaults, resolution of redact: auto, and a clear error for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from counseltune.llm import ConfigError
from counseltune.llm.config import Price, parse_config

REMOTE = {"backend": "openai", "model": "gpt-x", "prices": {"gpt-x": {"input_per_m": 0.15, "output_per_m": 0.6}}}
LOCAL = {"backend": "local", "model": "smollm2-135m-instruct", "model_dir": "models/base/smollm2-135m-instruct"}


def test_defaults_fill_in_and_redaction_is_on_for_remote_off_for_local():
    remote, local = parse_config(REMOTE), parse_config(LOCAL)
    assert (remote.concurrency, remote.timeout_s, remote.max_retries, remote.budget_usd, remote.key_env) == \
        (8, 60.0, 5, 5.0, "OPENAI_API_KEY")
    assert remote.cache_dir == Path(".cache/llm") and remote.price == Price(0.15, 0.6)
    assert remote.redact is True and local.redact is False
    assert local.price == Price(0.0, 0.0) and local.batch_size == 8


@pytest.mark.parametrize("redact, remote, local", [("on", True, True), ("off", False, False), ("auto", True, False)])
def test_redact_modes(redact, remote, local):
    assert parse_config({**REMOTE, "redact": redact}).redact is remote
    assert parse_config({**LOCAL, "redact": redact}).redact is local


def test_model_dir_argument_overrides_the_config():
    assert parse_config(LOCAL, model_dir=Path("/x")).model_dir == Path("/x")
    assert parse_config({**LOCAL, "model_dir": None}, model_dir=Path("/x")).model_dir == Path("/x")


def test_the_price_table_prices_a_request():
    assert Price(0.15, 0.6).cost(1_000_000, 500_000) == pytest.approx(0.45)


@pytest.mark.parametrize("config, message", [
    ({**REMOTE, "backend": "anthropic"}, r"llm.backend must be one of \['local', 'openai'\]"),
    ({**REMOTE, "model": ""}, "llm.model must be a non-empty"),
    ({**REMOTE, "concurency": 4}, r"unknown llm config key\(s\) \['concurency'\]"),
    ({**REMOTE, "concurrency": 0}, "llm.concurrency must be >= 1"),
    ({**REMOTE, "concurrency": "8"}, "llm.concurrency must be an integer"),
    ({**REMOTE, "concurrency": 2.5}, "llm.concurrency must be an integer"),
    ({**REMOTE, "timeout_s": 0}, "llm.timeout_s must be > 0"),
    ({**REMOTE, "budget_usd": True}, "llm.budget_usd must be a number"),
    ({**REMOTE, "redact": "yes"}, "llm.redact must be one of"),
    ({**REMOTE, "key_env": ""}, "llm.key_env must be a non-empty string"),
    ({**REMOTE, "prices": {}}, "llm.prices has no entry for model 'gpt-x'"),
    ({**REMOTE, "prices": {"gpt-x": {"input": 1}}}, r"llm.prices.gpt-x must be \{input_per_m"),
    ({**REMOTE, "prices": {"gpt-x": {"input_per_m": -1, "output_per_m": 1}}}, "llm.prices.gpt-x.input_per_m must be >= 0"),
    ({**LOCAL, "model_dir": None}, "llm.backend local needs llm.model_dir"),
    ({**REMOTE, "base_url": 8080}, "llm.base_url must be a non-empty string"),
    ({**REMOTE, "prices": [1, 2]}, "llm.prices must map model names"),
    ({**REMOTE, "api_key": "sk-..."}, "must not hold the API key"),
    (["backend", "local"], "must be a mapping"),
])
def test_mistakes_are_clear_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config)
