"""One resident base copy per process: the fine-tuned and the base counselor of fidelity share it, in any order,
and each computes exactly what its own separately loaded model computes."""

from __future__ import annotations

import pytest
import torch

from counseltune.models import loader, resident
from tests.models.conftest import STUDY_MODELS, logits


@pytest.fixture(autouse=True)
def fresh():
    resident._HELD.clear()
    yield
    resident._HELD.clear()


@pytest.mark.parametrize("name", STUDY_MODELS)
@pytest.mark.parametrize("base_first", [True, False])
def test_base_and_finetuned_clients_share_one_copy_and_compute_as_their_own_models(name, base_first, tiny_bases,
                                                                                   adapters):
    entry, folder = tiny_bases[name]
    ids = torch.tensor([[3, 40, 41, 42, 43, 44]])
    expected_base = logits(loader.load_model(name, entry, folder), ids)
    expected_tuned = logits(loader.load_model(name, entry, folder, adapter=adapters[name]), ids)

    order = [None, adapters[name]] if base_first else [adapters[name], None]
    held = [resident.acquire(name, entry, folder, adapter) for adapter in order]
    assert held[0] is held[1] and resident.resident_count() == 1
    base_weights = sum(p.numel() for n, p in held[0].model.named_parameters() if "lora_" not in n)
    assert base_weights == loader.load_model(name, entry, folder).num_parameters()  # one copy of the base

    for _ in range(2):  # alternate: switching must not leak one client's state into the other
        with resident.serving(held[0], None) as model:
            assert torch.equal(logits(model, ids), expected_base)
        with resident.serving(held[0], adapters[name]) as model:
            assert torch.equal(logits(model, ids), expected_tuned)


def test_a_base_client_alone_gets_the_plain_model(tiny_bases):
    entry, folder = tiny_bases["glm-4-9b-chat"]
    held = resident.acquire("glm-4-9b-chat", entry, folder)
    with resident.serving(held, None) as model:
        assert not hasattr(model, "peft_config")
    resident.release(folder)
    assert resident.resident_count() == 0
