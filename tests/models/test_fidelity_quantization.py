"""The fidelity stage's counselors load as the registry says: its quantization reaches the one model loader, which
refuses 4-bit weights on a machine without CUDA in one line naming the key and the fix."""

from __future__ import annotations

import copy

import pytest
import torch

from counseltune.fidelity.stage_clients import StageClients
from counseltune.llm import ChatRequest
from counseltune.models import resident
from counseltune.models.loader import ModelLoadError

NAME = "llama-3.1-8b-instruct"  # a study model, its tiny stand-in built by the real base-model stage


@pytest.fixture
def quantized_run(params, tiny_bases, tmp_path):
    entry, folder = tiny_bases[NAME]
    resident.release(folder)  # an earlier test's unquantized copy of this base must not answer for it
    run = copy.deepcopy(params)
    run["models"][NAME] = {**copy.deepcopy(entry), "quantization": "4bit"}
    run["llm"]["cache_dir"] = str(tmp_path / "cache")
    return StageClients(run, NAME, folder, tmp_path / "no-adapter")


def test_the_counselors_get_the_registrys_quantization(quantized_run, params, tiny_bases, tmp_path):
    assert quantized_run.base_counselor.config.quantization == "4bit"
    assert quantized_run.counselor.config.quantization == "4bit"
    entry, folder = tiny_bases[NAME]
    full = StageClients({**params, "models": {**params["models"], NAME: entry},
                         "llm": {**params["llm"], "cache_dir": str(tmp_path / "cache")}}, NAME, folder, tmp_path / "none")
    assert full.base_counselor.config.quantization == "none"
    # the LLM cache keys on the client's model: a 4-bit counselor is never answered with the full weights' replies
    assert quantized_run.base_counselor.model == full.base_counselor.model + "+4bit"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_4bit_counselor_is_refused_without_cuda_in_one_line(quantized_run):
    request = ChatRequest.of([{"role": "user", "content": "How are you feeling today?"}], max_tokens=4)
    with pytest.raises(ModelLoadError) as err:
        quantized_run.base_counselor.complete([request])
    message = str(err.value)
    assert message.startswith(f"models.{NAME}.quantization is '4bit' (QLoRA), which needs a CUDA GPU")
    assert f"Set models.{NAME}.quantization: none in params.yaml" in message and "\n" not in message
