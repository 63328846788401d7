"""The study's three hub families as tiny local stand-ins, built once per test session (seconds on a CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from counseltune.config import load_params
from counseltune.models import loader, tiny
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


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, registry, tiny_bases) -> dict:
    """registry name -> a LoRA adapter on the registry's target modules, with non-zero (random) LoRA weights."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for name in STUDY_MODELS:
        entry, folder = tiny_bases[name]
        torch.manual_seed(1)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=list(registry[name]["lora"]["target_modules"]),
                            init_lora_weights=False, task_type="CAUSAL_LM")  # random B: the adapter changes logits
        get_peft_model(loader.load_model(name, entry, folder), config).save_pretrained(root / name)
        out[name] = root / name
    return out
