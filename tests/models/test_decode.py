"""DecodeSettings: the registry's models.<m>.decode as one validated value; a bad value names its key path."""

from __future__ import annotations

import pytest

from counseltune.config import load_params
from counseltune.models.decode import DecodeSettings, DecodeSettingsError
from tests.conftest import REPO


def test_every_registry_entry_gives_valid_settings():
    for name, entry in load_params(REPO / "params.yaml")["models"].items():
        settings = DecodeSettings.from_registry(name, entry["decode"])
        assert settings.repetition_penalty == entry["decode"]["repetition_penalty"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("top_p", 0, r"models\.m\.decode\.top_p: 0 is not in \(0, 1\]: fix params\.yaml"),
    ("temperature", -0.1, r"models\.m\.decode\.temperature: -0\.1 is not >= 0"),
    ("max_new_tokens", 2.5, r"models\.m\.decode\.max_new_tokens: 2\.5 is not an integer >= 1"),
    ("batch_size", True, r"models\.m\.decode\.batch_size: True is not an integer >= 1"),
    ("repetition_penalty", 0, r"models\.m\.decode\.repetition_penalty: 0 is not > 0"),
])
def test_a_bad_value_names_its_key_path(key, value, message):
    decode = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.1, "batch_size": 4}
    with pytest.raises(DecodeSettingsError, match=message):
        DecodeSettings.from_registry("m", decode | {key: value})


def test_missing_and_unknown_keys_are_named():
    with pytest.raises(DecodeSettingsError, match=r"unknown keys \['top_k'\]; missing keys \['batch_size'\]"):
        DecodeSettings.from_registry("m", {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0,
                                           "repetition_penalty": 1.0, "top_k": 5})


def test_a_request_overrides_only_what_it_says():
    registry = DecodeSettings(max_new_tokens=48, temperature=0.0, top_p=1.0, repetition_penalty=1.1, batch_size=8)
    asked = registry.with_request(max_new_tokens=16, temperature=0.7)
    assert asked == DecodeSettings(16, 0.7, 1.0, 1.1, 8) and not asked.greedy and registry.greedy
    with pytest.raises(DecodeSettingsError, match="top_p"):
        registry.with_request(top_p=1.5)
