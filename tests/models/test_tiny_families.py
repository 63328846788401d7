"""Tiny random-weight stand-ins of the study's hub families: real architectures, tokens and chat templates, built
locally, through the real base-model stage and the one model loader."""

from __future__ import annotations

import json

import pytest
import torch

from counseltune.models import BaseModelError, loader, tiny
from counseltune.models.base import PROVENANCE, prepare_base_model
from counseltune.models.templates import get_template
from tests.models.conftest import STUDY_MODELS
from tests.models.fake_hub import COMMIT, FakeHub

DIALOG = [{"role": "system", "content": "You are a counselor."}, {"role": "user", "content": "我最近睡不着。"},
          {"role": "assistant", "content": "Tell me more."}, {"role": "user", "content": "I feel low."}]
# What each family's chat format writes around the turns (Llama-3.1, GLM-4 and Baichuan2 hub formats).
RENDERED = {
    "llama-3.1-8b-instruct": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\nYou are a counselor.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "我最近睡不着。<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nTell me more.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI feel low.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "glm-4-9b-chat": ("[gMASK]<sop><|system|>\nYou are a counselor.<|user|>\n我最近睡不着。<|assistant|>\n"
                      "Tell me more.<|user|>\nI feel low.<|assistant|>"),
    "baichuan2-7b-chat": "You are a counselor.<reserved_106>我最近睡不着。<reserved_107>Tell me more.</s>"
                         "<reserved_106>I feel low.<reserved_107>",
}
ARCHITECTURE = {"llama-3.1-8b-instruct": ("llama", "LlamaForCausalLM"),
                "glm-4-9b-chat": ("glm", "GlmForCausalLM"),
                "baichuan2-7b-chat": ("baichuan", "BaichuanForCausalLM")}


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_each_family_loads_renders_its_chat_format_and_generates(name, tiny_bases):
    entry, folder = tiny_bases[name]
    tokenizer = loader.load_tokenizer(name, entry, folder, padding_side="left")
    model = loader.load_model(name, entry, folder)
    assert (model.config.model_type, type(model).__name__) == ARCHITECTURE[name]
    text = tokenizer.apply_chat_template(DIALOG, tokenize=False, add_generation_prompt=True)
    assert text == RENDERED[name]
    ids = tokenizer.apply_chat_template(DIALOG, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
    assert model.num_parameters() < 200_000  # seconds on a CPU


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_the_family_special_tokens_are_single_tokens_and_stop_generation(name, tiny_bases, tiny_sources):
    entry, folder = tiny_bases[name]
    tokenizer = loader.load_tokenizer(name, entry, folder)
    spec = tiny.FAMILIES[tiny.family_of(name)]
    for token in spec.specials:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    stops = loader.load_model(name, entry, folder).generation_config.eos_token_id
    assert set(tokenizer.convert_tokens_to_ids(list(spec.stops))) <= set(stops if isinstance(stops, list) else [stops])


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_the_registry_lora_targets_exist_in_the_stand_in(name, registry, tiny_bases):
    entry, folder = tiny_bases[name]
    modules = {n.rsplit(".", 1)[-1] for n, _ in loader.load_model(name, entry, folder).named_modules()}
    assert set(registry[name]["lora"]["target_modules"]) <= modules


def test_the_baichuan_stand_in_is_custom_code_loaded_only_with_trust_remote_code(tiny_sources):
    folder = tiny_sources["baichuan2-7b-chat"]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_baichuan.BaichuanForCausalLM"
    untrusted = {"source": {"path": str(folder)}, "dtype": "float32", "quantization": "none"}
    for load in (loader.load_tokenizer, loader.load_model):
        with pytest.raises(loader.ModelLoadError) as err:
            load("baichuan2-7b-chat", untrusted, folder)
        assert str(err.value).startswith("models.baichuan2-7b-chat.source.trust_remote_code: the ")
        assert "set models.baichuan2-7b-chat.source.trust_remote_code: true in params.yaml" in str(err.value)
        assert "\n" not in str(err.value)
    trusted = {**untrusted, "source": {"path": str(folder), "trust_remote_code": True}}
    assert type(loader.load_tokenizer("baichuan2-7b-chat", trusted, folder)).__name__ == "BaichuanTokenizer"


def test_the_base_model_stage_carries_the_custom_code_into_the_converted_folder(tiny_bases, tiny_sources):
    entry, folder = tiny_bases["baichuan2-7b-chat"]
    for code in ("configuration_baichuan.py", "modeling_baichuan.py", "tokenization_baichuan.py"):
        assert (folder / code).read_bytes() == (tiny_sources["baichuan2-7b-chat"] / code).read_bytes()
    assert json.loads((folder / PROVENANCE).read_text())["source"]["trust_remote_code"] is True
    assert get_template("baichuan2").jinja == loader.load_tokenizer("baichuan2-7b-chat", {}, folder).chat_template
    # the converted folder is trusted through its provenance: a stage that does not declare the source loads it
    assert type(loader.load_model("baichuan2-7b-chat", {}, folder)).__name__ == "BaichuanForCausalLM"


def test_the_base_model_stage_refuses_the_custom_code_folder_without_trust(tmp_path, tiny_sources):
    entry = {"source": {"path": str(tiny_sources["baichuan2-7b-chat"])}, "template": "baichuan2", "dtype": "float32"}
    with pytest.raises(BaseModelError, match=r"^models\.baichuan2-7b-chat\.source\.trust_remote_code: the model in .* "
                                             r"is custom code .*: true in params\.yaml"):
        prepare_base_model("baichuan2-7b-chat", entry, tmp_path / "out")


def test_a_build_is_deterministic(tmp_path, tiny_sources):
    again = tiny.build("glm4", tmp_path / "glm4")
    assert (again / "model.safetensors").read_bytes() == (tiny_sources["glm-4-9b-chat"] / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (tiny_sources["glm-4-9b-chat"] / "tokenizer.json").read_bytes()


def test_the_stand_in_entry_lists_every_gpu_only_setting_it_swapped(registry, tmp_path):
    glm, changes = tiny.stand_in_entry("glm-4-9b-chat", registry["glm-4-9b-chat"], tmp_path)
    assert glm["distributed"] == {"strategy": "single", "num_processes": 1} and glm["resources"]["gpus"] == 0
    assert changes == [f"models.glm-4-9b-chat.source: THUDM/glm-4-9b-chat-hf -> tiny glm4 stand-in at {tmp_path}",
                       "models.glm-4-9b-chat.distributed: fsdp -> single (one CPU process)",
                       "models.glm-4-9b-chat.resources.gpus: 2 -> 0"]
    baichuan, changes = tiny.stand_in_entry("baichuan2-7b-chat", registry["baichuan2-7b-chat"], tmp_path)
    assert baichuan["source"] == {"path": str(tmp_path), "trust_remote_code": True}
    assert baichuan["quantization"] == "none" and "models.baichuan2-7b-chat.quantization: 4bit -> none" in changes[1]
    assert {k: v for k, v in baichuan.items() if k not in ("source", "quantization", "resources")} == {
        k: v for k, v in registry["baichuan2-7b-chat"].items() if k not in ("source", "quantization", "resources")}


@pytest.mark.parametrize("revision", ["main", COMMIT])
def test_a_hub_source_is_fetched_at_its_revision_and_the_commit_recorded(revision, tmp_path, monkeypatch, capsys,
                                                                           registry, tiny_sources):
    """The study's Baichuan2 entry as it stands (hub id, trust_remote_code), fetched from a loopback hub."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    entry = {**registry["baichuan2-7b-chat"], "quantization": "none"}
    entry["source"] = {**entry["source"], "revision": revision}
    hub = FakeHub(entry["source"]["hub"], tiny_sources["baichuan2-7b-chat"])
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        provenance = prepare_base_model("baichuan2-7b-chat", entry, tmp_path / "base")
    finally:
        hub.close()
    assert (provenance["hub_revision"], provenance["hub_commit"]) == (revision, COMMIT)
    pin_advice = f"set models.baichuan2-7b-chat.source.revision: {COMMIT} to rebuild exactly these weights"
    assert (pin_advice in capsys.readouterr().err) == (revision != COMMIT)
    assert (tmp_path / "base" / "modeling_baichuan.py").is_file()
    model = loader.load_model("baichuan2-7b-chat", entry, tmp_path / "base")
    assert type(model).__name__ == "BaichuanForCausalLM" and {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_an_unreachable_hub_fails_the_base_model_stage_in_one_line_and_leaves_nothing(tmp_path, monkeypatch,
                                                                                       registry):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: refused at once, no traffic out
    with pytest.raises(BaseModelError) as err:
        prepare_base_model("baichuan2-7b-chat", registry["baichuan2-7b-chat"], tmp_path / "models" / "base")
    assert str(err.value).startswith("model baichuan2-7b-chat comes from the hub (baichuan-inc/Baichuan2-7B-Chat); "
                                     "this machine has no hub access (")
    assert str(err.value).endswith("set models.baichuan2-7b-chat.source.path to a local copy")
    assert "\n" not in str(err.value) and list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_left_padded_batches_generate_what_each_prompt_generates_alone(name, tiny_sources):
    """Batched decoding (predict, the local LLM client) pads on the left: the padding must not leak into a reply."""
    folder = tiny_sources[name]
    entry = {"source": {"path": str(folder), "trust_remote_code": name.startswith("baichuan")}, "dtype": "float32"}
    tokenizer = loader.load_tokenizer(name, entry, folder, padding_side="left")
    model = loader.load_model(name, entry, folder)
    prompts = ["I feel low and I cannot sleep at night.", "我最近压力很大"]
    alone = []
    for prompt in prompts:
        ids = tokenizer([prompt], return_tensors="pt")
        alone.append(model.generate(**ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)[0, -6:].tolist())
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert batch["attention_mask"].min() == 0  # the second prompt is padded
    together = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, do_sample=False)[:, -6:].tolist()
    assert together == alone


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_the_training_loss_runs_on_each_family_and_equals_its_own_loss(name, tiny_bases):
    """Baichuan2's hub code has no `logits_to_keep`: the loss falls back to the model's own (the rehearsal found
    a stand-in that claimed it and crashed the fine-tune); the others take the logits-at-labels path."""
    from counseltune.train.loss import causal_lm_loss

    entry, folder = tiny_bases[name]
    model = loader.load_model(name, entry, folder).float()
    ids = torch.randint(5, 400, (2, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        assert causal_lm_loss(model, model, batch).item() == pytest.approx(model(**batch).loss.item(), rel=1e-4)


@pytest.mark.parametrize("name", STUDY_MODELS)
def test_the_pipelines_generate_runs_each_family_with_and_without_padding(name, tiny_bases):
    """models/generate.py decodes every family: Baichuan2's remote code keeps the default cache (the static one
    the CPU path prefers broke its attention mask on unpadded batches: found by the rehearsal)."""
    from counseltune.models.decode import DecodeSettings
    from counseltune.models.generate import generate

    entry, folder = tiny_bases[name]
    tokenizer = loader.load_tokenizer(name, entry, folder, padding_side="left")
    model = loader.load_model(name, entry, folder)
    settings = DecodeSettings(max_new_tokens=4, batch_size=2)
    for lengths in ((12, 12), (12, 20)):
        out, _ = generate(model, tokenizer, [list(range(10, 10 + n)) for n in lengths], settings, seed=0,
                          progress=False)
        assert len(out) == 2
