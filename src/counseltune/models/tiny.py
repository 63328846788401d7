"""Tiny random-weight models of the study's hub families, built locally (no hub): the rehearsal's stand-ins.

Each is a plain transformers folder (usable as a registry `source: {path: ...}`) with the family's architecture
(transformers' own config class; Baichuan2 as custom code behind trust_remote_code, as on the hub), the family's
special tokens and chat template, and a small byte-level BPE tokenizer trained on the given text. Hidden size 64,
2 layers: they load, train and generate in seconds on a CPU. Deterministic: same family, text and seed -> same
weights.

    python -m counseltune.models.tiny llama3 models/tiny/llama3 [TEXT_FILE ...]
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128
CONTEXT = 4096  # the study's max_len (2048) plus decoding fits
VOCAB = 1024  # BPE merges over the 256 byte symbols and the family's special tokens
BAICHUAN_CODE = Path(__file__).with_name("tiny_baichuan")
# Text the BPE is trained on when none is given: English and Chinese counseling turns.
DEFAULT_TEXT = (
    "I have been feeling low and anxious about work. Tell me more about what happens when you feel that way.",
    "It sounds like you want to change, and part of you is not sure you can. What would be different?",
    "我最近压力很大，晚上睡不着。听起来你很辛苦，能多说说是什么让你压力这么大吗？",
    "你觉得改变的理由是什么？我想多陪陪家人，也想让自己的身体好起来。",
)

# Llama-3.1-Instruct's chat template without its tool-calling branches (the study sends no tools).
LLAMA3_TEMPLATE = r"""
{{- bos_token }}
{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
{%- set system_message = messages[0]['content']|trim %}
{%- set messages = messages[1:] %}
{%- else %}
{%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
""".strip()

# glm-4-9b-chat(-hf)'s chat template without its tool branch.
GLM4_TEMPLATE = (
    "[gMASK]<sop>{% for item in messages %}{% if item['content'] %}<|{{ item['role'] }}|>\n{{ item['content'] }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    hub_model: str  # the registry entry it stands in for
    specials: tuple[str, ...]  # ids 0.. in this order, like the real vocabularies' reserved tokens
    bos: str | None
    eos: str
    pad: str | None
    stops: tuple[str, ...]  # generation_config.eos_token_id, as the hub model ships it
    chat_template: str | None  # None: the registry names a counseltune template (baichuan2)


FAMILIES = {
    "llama3": Family("llama3", "llama-3.1-8b-instruct",
                     ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eom_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"),
                     "<|begin_of_text|>", "<|eot_id|>", None, ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
                     LLAMA3_TEMPLATE),
    "glm4": Family("glm4", "glm-4-9b-chat",
                   ("<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                    "<|assistant|>", "<|observation|>"),
                   None, "<|endoftext|>", "<|endoftext|>", ("<|endoftext|>", "<|user|>", "<|observation|>"),
                   GLM4_TEMPLATE),
    "baichuan2": Family("baichuan2", "baichuan2-7b-chat",
                        ("<unk>", "<s>", "</s>", "<reserved_106>", "<reserved_107>"),
                        "<s>", "</s>", "<unk>", ("</s>",), None),
}


def build(family: str, out_dir: Path, text: Iterable[str] = DEFAULT_TEXT, seed: int = 0) -> Path:
    """A tiny random-weight model of `family` (llama3 | glm4 | baichuan2) saved at out_dir; returns out_dir."""
    import torch

    spec = FAMILIES[family]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(spec, text)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in spec.specials}
    torch.manual_seed(seed)
    model = _model(spec, len(tokenizer), ids)
    model.generation_config.eos_token_id = [ids[t] for t in spec.stops]
    model.generation_config.pad_token_id = ids[spec.pad] if spec.pad else None
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if family == "baichuan2":
        _as_custom_code(out_dir)
    return out_dir


def _tokenizer(spec: Family, text: Iterable[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(spec.specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(list(text), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=spec.bos, eos_token=spec.eos,
                                        pad_token=spec.pad, unk_token=None, model_max_length=CONTEXT,
                                        clean_up_tokenization_spaces=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in spec.specials
                                                                if t not in (spec.bos, spec.eos, spec.pad)]})
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    return tokenizer


def _model(spec: Family, vocab: int, ids: dict[str, int]):
    bos = ids.get(spec.bos) if spec.bos else None
    pad = ids.get(spec.pad) if spec.pad else None
    common = {"vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
              "num_attention_heads": HEADS, "bos_token_id": bos, "eos_token_id": [ids[t] for t in spec.stops],
              "pad_token_id": pad, "tie_word_embeddings": False}
    if spec.name == "llama3":
        from transformers import LlamaConfig, LlamaForCausalLM

        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": CONTEXT // 2}
        config = LlamaConfig(**common, num_key_value_heads=KV_HEADS, max_position_embeddings=CONTEXT,
                             rope_parameters=rope, rms_norm_eps=1e-5)
        return LlamaForCausalLM(config)
    if spec.name == "glm4":  # glm-4-9b-chat-hf is transformers' GlmForCausalLM (Glm4 is the later GLM-4-0414)
        from transformers import GlmConfig, GlmForCausalLM

        config = GlmConfig(**common, num_key_value_heads=KV_HEADS, head_dim=HIDDEN // HEADS,
                           max_position_embeddings=CONTEXT, attention_bias=True,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                            "partial_rotary_factor": 0.5})
        return GlmForCausalLM(config)
    from counseltune.models.tiny_baichuan.configuration_baichuan import BaichuanConfig
    from counseltune.models.tiny_baichuan.modeling_baichuan import BaichuanForCausalLM

    config = BaichuanConfig(**common, model_max_length=CONTEXT, user_token_id=ids["<reserved_106>"],
                            assistant_token_id=ids["<reserved_107>"])
    return BaichuanForCausalLM(config)


def _as_custom_code(folder: Path) -> None:
    """Point config.json and tokenizer_config.json at the custom code files copied beside them (auto_map), as
    Baichuan2's hub repo does: transformers then loads the folder only with trust_remote_code=True."""
    import json

    for name in ("configuration_baichuan.py", "modeling_baichuan.py", "tokenization_baichuan.py"):
        shutil.copyfile(BAICHUAN_CODE / name, folder / name)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "configuration_baichuan.BaichuanConfig",
                          "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"}
    config["architectures"] = ["BaichuanForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config["auto_map"] = {"AutoTokenizer": ["tokenization_baichuan.BaichuanTokenizer", None]}
    tok_config["tokenizer_class"] = "BaichuanTokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")


def family_of(registry_name: str) -> str:
    """The tiny family standing in for a registry model (KeyError for a model without one)."""
    return next(f.name for f in FAMILIES.values() if f.hub_model == registry_name)


def stand_in_entry(name: str, entry: dict, folder: Path) -> tuple[dict, list[str]]:
    """A hub model's registry entry with its tiny stand-in as the source and its GPU-only settings swapped for CPU
    ones -> (the new entry, one line per swapped setting). Template, dtype, LoRA targets and the rest stay."""
    hub = entry["source"]
    new = {**entry, "source": {"path": str(folder), **({"trust_remote_code": True}
                                                         if hub.get("trust_remote_code") else {})}}
    changes = [f"models.{name}.source: {hub.get('hub', hub)} -> tiny {family_of(name)} stand-in at {folder}"]
    if entry.get("quantization", "none") != "none":
        new["quantization"] = "none"
        changes.append(f"models.{name}.quantization: {entry['quantization']} -> none (bitsandbytes needs CUDA)")
    dist = entry.get("distributed", {"strategy": "single"})
    if dist.get("strategy") != "single":
        new["distributed"] = {"strategy": "single", "num_processes": 1}
        changes.append(f"models.{name}.distributed: {dist['strategy']} -> single (one CPU process)")
    if entry.get("resources", {}).get("gpus", 0):
        new["resources"] = {**entry["resources"], "gpus": 0}
        changes.append(f"models.{name}.resources.gpus: {entry['resources']['gpus']} -> 0")
    return new, changes


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in FAMILIES:
        raise SystemExit(f"usage: python -m counseltune.models.tiny {{{'|'.join(FAMILIES)}}} OUT_DIR [TEXT_FILE ...]")
    texts = [Path(p).read_text(encoding="utf-8") for p in argv[2:]] or DEFAULT_TEXT
    print(build(argv[0], Path(argv[1]), texts))


if __name__ == "__main__":
    main(sys.argv[1:])
