"""The one model loader: registry dtype, quantization, trust_remote_code and revision honoured; a peft adapter on
top that can be switched off, so one resident copy of the base weights serves base and fine-tuned generation."""

from __future__ import annotations

import pytest
import torch

from counseltune.models import base, loader
from tests.models.conftest import STUDY_MODELS, logits


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_the_adapter_switched_off_reproduces_the_base_logits_exactly(name, tiny_bases, adapters):
    entry, folder = tiny_bases[name]
    tokenizer = loader.load_tokenizer(name, entry, folder)
    ids = torch.tensor([tokenizer.encode("I feel low. 我最近睡不着。")])
    plain = logits(loader.load_model(name, entry, folder), ids)
    tuned_model = loader.load_model(name, entry, folder, adapter=adapters[name])
    tuned = logits(tuned_model, ids)
    assert not torch.allclose(tuned, plain, atol=1e-4)  # the adapter does change the model
    with loader.adapter_disabled(tuned_model) as base_view:
        assert torch.equal(logits(base_view, ids), plain)
    assert torch.equal(logits(tuned_model, ids), tuned)  # and is back after the block
    base_weights = sum(p.numel() for n, p in tuned_model.named_parameters() if "lora_" not in n)
    assert base_weights == loader.load_model(name, entry, folder).num_parameters()  # one copy serves both


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_a_merged_adapter_computes_the_same_as_the_unmerged_one(name, tiny_bases, adapters):
    entry, folder = tiny_bases[name]
    ids = torch.tensor([[3, 40, 41, 42, 43]])
    plain = logits(loader.load_model(name, entry, folder), ids)
    unmerged = logits(loader.load_model(name, entry, folder, adapter=adapters[name]), ids)
    merged_model = loader.load_model(name, entry, folder, adapter=adapters[name], merge_adapter=True)
    assert not hasattr(merged_model, "disable_adapter")
    # bfloat16 weights (the registry dtype) round the merged sum: close to the unmerged model, far from the base
    assert (logits(merged_model, ids) - unmerged).abs().max() < (unmerged - plain).abs().max() / 4
    with pytest.raises(TypeError, match="no adapter to disable"):
        with loader.adapter_disabled(merged_model):
            pass


def test_training_loads_a_trainable_adapter_and_inference_a_frozen_one(tiny_bases, adapters):
    entry, folder = tiny_bases["llama-3.1-8b-instruct"]
    trained = loader.load_model("llama-3.1-8b-instruct", entry, folder, adapters["llama-3.1-8b-instruct"],
                                purpose="training")
    assert any(p.requires_grad for n, p in trained.named_parameters() if "lora_" in n)
    assert trained.config.use_cache is False
    served = loader.load_model("llama-3.1-8b-instruct", entry, folder, adapters["llama-3.1-8b-instruct"])
    assert not any(p.requires_grad for p in served.parameters()) and served.training is False


@pytest.mark.parametrize("name", ["llama-3.1-8b-instruct", "baichuan2-7b-chat"])
def test_the_registry_dtype_is_honoured_and_cpu_training_gets_float32(name, tmp_path, tiny_sources):
    import copy

    from counseltune.models import tiny
    from counseltune.config import load_params
    from tests.conftest import REPO

    hub_entry = load_params(REPO / "params.yaml")["models"][name]  # bfloat16 in the registry
    entry, _ = tiny.stand_in_entry(name, copy.deepcopy(hub_entry), tiny_sources[name])
    assert entry["dtype"] == "bfloat16"
    base.prepare_base_model(name, entry, tmp_path / name)
    served = loader.load_model(name, entry, tmp_path / name)
    assert {p.dtype for p in served.parameters()} == {torch.bfloat16}
    # a stage that does not declare the dtype loads what the base-model stage built (its provenance)
    assert {p.dtype for p in loader.load_model(name, {}, tmp_path / name).parameters()} == {torch.bfloat16}
    if not torch.cuda.is_available():
        trained = loader.load_model(name, entry, tmp_path / name, purpose="training")
        assert {p.dtype for p in trained.parameters()} == {torch.float32}


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_each_family_trains_its_registry_lora_with_gradient_checkpointing(name, registry, tiny_bases):
    from peft import LoraConfig, get_peft_model

    entry, folder = tiny_bases[name]
    model = loader.load_model(name, entry, folder, purpose="training")
    assert registry[name]["train"]["gradient_checkpointing"] is True  # as the study trains them
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lora = registry[name]["lora"]
    net = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], task_type="CAUSAL_LM",
                                           target_modules=list(lora["target_modules"])))
    net.train()
    ids = torch.tensor([[3, 40, 41, 42, 43, 44, 45, 46]])
    loss = net(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in net.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_plain_folder_takes_the_dtype_from_the_entry(tiny_sources):
    folder = tiny_sources["glm-4-9b-chat"]
    model = loader.load_model("glm", {"source": {"path": str(folder)}, "dtype": "float16"}, folder)
    assert {p.dtype for p in model.parameters()} == {torch.float16}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantization_without_cuda_is_refused_in_one_line_naming_the_key_and_the_fix(quantization, tiny_bases):
    entry, folder = tiny_bases["glm-4-9b-chat"]
    with pytest.raises(loader.ModelLoadError) as err:
        loader.load_model("glm-4-9b-chat", {**entry, "quantization": quantization}, folder)
    message = str(err.value)
    assert message.startswith(f"models.glm-4-9b-chat.quantization is '{quantization}' (QLoRA), which needs a CUDA GPU")
    assert "Set models.glm-4-9b-chat.quantization: none in params.yaml" in message and "\n" not in message


def test_a_missing_adapter_or_base_folder_says_which_stage_builds_it(tmp_path, tiny_bases):
    entry, folder = tiny_bases["glm-4-9b-chat"]
    with pytest.raises(loader.ModelLoadError, match=r"^model glm-4-9b-chat: .*nothing holds no peft adapter .*run "
                                                    r"the finetune stage for glm-4-9b-chat first$"):
        loader.load_model("glm-4-9b-chat", entry, folder, adapter=tmp_path / "nothing")
    with pytest.raises(loader.ModelLoadError, match=r"^model glm-4-9b-chat: .*missing is neither a model folder here "
                                                    r"nor loadable from the hub .*: build models/base/glm-4-9b-chat "
                                                    r"with the base-model stage, or fix the path$"):
        loader.load_tokenizer("glm-4-9b-chat", entry, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(loader.ModelLoadError, match=r"empty is not a model folder \(no config\.json\): rebuild it"):
        loader.load_model("glm-4-9b-chat", entry, tmp_path / "empty")


def test_a_hub_id_is_loaded_at_the_pinned_revision_and_a_folder_offline(tiny_bases):
    entry = {"source": {"hub": "THUDM/glm-4-9b-chat-hf", "revision": "0123abc"}, "dtype": "bfloat16"}
    assert loader._source_kwargs(entry, "THUDM/glm-4-9b-chat-hf") == {"trust_remote_code": False,
                                                                      "revision": "0123abc"}
    _, folder = tiny_bases["baichuan2-7b-chat"]
    assert loader._source_kwargs({}, folder) == {"trust_remote_code": True, "local_files_only": True}


def test_the_loader_reads_the_provenance_file_the_base_model_stage_writes():
    assert loader.PROVENANCE == base.PROVENANCE


def test_each_loading_stage_loads_through_its_declared_params_alone(tiny_bases):
    """Stages read params through a view of the keys they declare; none of them declares models.<m>.source, so
    trust_remote_code (Baichuan2) comes from the folder's provenance, never from an undeclared read."""
    from counseltune.stage_params import stage_view

    name = "baichuan2-7b-chat"
    entry, folder = tiny_bases[name]
    params = {"models": {name: entry}, "sft": {}, "synthesize": {"seed": 0}, "predict": {}}
    sft = stage_view(params, "sft-data", model=name)["models"][name]
    assert type(loader.load_tokenizer(name, sft, folder)).__name__ == "BaichuanTokenizer"
    for command, purpose in (("finetune", "training"), ("predict", "inference")):
        view = stage_view(params, command, model=name)["models"][name]
        assert type(loader.load_model(name, view, folder, purpose=purpose)).__name__ == "BaichuanForCausalLM"
