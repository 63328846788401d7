"""The study's three hub families as tiny local stand-ins, built once per test session (seconds on a CPU)."""

from __future__ import annotations

import copy

import pytest

from counseltune.config import load_params
from counseltune.models import tiny
from counseltune.models.base import prepare_base_model
from tests.conftest import REPO

STUDY_MODELS = ("llama-3.1-8b-instruct", "glm-4-9b-chat", "baichuan2-7b-chat")


@pytest.fixture(scope="session")
def registry() -> dict:
    return load_params(REPO / "params.yaml")["models"]


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> dict:
    """registry name -> the raw tiny folder of its family (as the hub would ship it)."""
    root = tmp_path_factory.mktemp("tiny-families")
    return {name: tiny.build(tiny.family_of(name), root / tiny.family_of(name)) for name in STUDY_MODELS}


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory, registry, tiny_sources) -> dict:
    """registry name -> (CPU stand-in entry, models/base/<name> folder built by the real base-model stage)."""
    root = tmp_path_factory.mktemp("tiny-bases")
    out = {}
    for name in STUDY_MODELS:
        entry, _ = tiny.stand_in_entry(name, copy.deepcopy(registry[name]), tiny_sources[name])
        out[name] = (entry, root / name)
        prepare_base_model(name, entry, root / name)
    return out
