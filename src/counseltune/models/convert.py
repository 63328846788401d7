"""Fetched files -> a plain, trainable transformers model + tokenizer with the run's chat template, saved as safetensors."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Collection
from importlib.metadata import version
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from counseltune.models import BaseModelError
from counseltune.models.loader import refused_custom_code, untrusted_code
from counseltune.models.templates import get_template

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_gguf(model: str, gguf: Path, dtype: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A GGUF file -> (plain model in dtype, tokenizer); the dequantized weights are moved into a model that is not
    flagged quantized, so it can be saved and trained."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        quantized, info = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=DTYPES[dtype], local_files_only=True, output_loading_info=True)
    except Exception as err:
        raise BaseModelError(
            f"model {model}: transformers {version('transformers')} could not load {gguf.name}: {_first_line(err)}; the GGUF's "
            "architecture may be unsupported: upgrade transformers, or give the model as a hub or path source") from err
    plain = dequantized_copy(model, quantized, dtype, missing_in_file=set(info["missing_keys"]))
    return plain, tokenizer


def dequantized_copy(model: str, quantized: PreTrainedModel, dtype: str,
                     missing_in_file: Collection[str] = ()) -> PreTrainedModel:
    """A GGUF-loaded model (flagged quantized: it refuses save/train) -> the same weights in a plain model."""
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    result = plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    missing = _unfilled(plain, set(result.missing_keys) | set(missing_in_file))
    if missing or result.unexpected_keys:
        raise BaseModelError(
            f"model {model}: the GGUF's tensors do not fill the {type(plain).__name__} transformers builds from its "
            f"metadata (missing: {sorted(missing)[:8]}, unexpected: {sorted(result.unexpected_keys)[:8]}); these "
            "weights would be random: use a GGUF of a supported architecture, or a hub or path source")
    plain.generation_config = copy.deepcopy(quantized.generation_config)
    return plain.eval()


def load_folder(model: str, folder: Path, dtype: str,
                trust_remote_code: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A transformers model folder -> (model in dtype, tokenizer)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code,
                                                      local_files_only=True)
    except Exception as err:
        if not trust_remote_code and refused_custom_code(err):
            raise BaseModelError(untrusted_code(model, folder, "model")) from err
        raise BaseModelError(
            f"model {model}: transformers could not load the model folder {folder}: {_first_line(err)}; it must hold "
            "config.json, the weights (*.safetensors or *.bin) and the tokenizer files of a causal LM") from err
    if getattr(loaded, "hf_quantizer", None) is not None:
        raise BaseModelError(f"model {model}: {folder} holds quantized weights "
                             f"({loaded.config.quantization_config}); give a full-precision copy (quantization for "
                             "training is models.<name>.quantization)")
    return loaded.eval(), tokenizer


def apply_template(model_name: str, template: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Set the run's chat template on the tokenizer (native keeps the tokenizer's own) and make generation stop at
    the template's end-of-turn token."""
    key = f"models.{model_name}.template"
    if template == "native":
        if not tokenizer.chat_template:
            raise BaseModelError(f"{key}: native, but the tokenizer of {model_name} ships no chat template: set it "
                                 "to a counseltune template (chatml, gemma, baichuan2) in params.yaml")
    else:
        try:
            spec = get_template(template)
        except KeyError as err:
            raise BaseModelError(f"{key}: {err.args[0]}: fix params.yaml") from None
        for token in spec.control_tokens:
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
                raise BaseModelError(
                    f"{key}: the {template} template writes {token}, which the tokenizer of {model_name} encodes as "
                    f"{ids} instead of one token: choose a template this tokenizer has tokens for (or native)")
        tokenizer.chat_template = spec.jinja
        stops = [tokenizer.convert_tokens_to_ids(t) for t in spec.stop_tokens]
        model.generation_config.eos_token_id = _merge_ids(model.generation_config.eos_token_id, stops)
    if tokenizer.pad_token is None:  # batched decoding and collators need one; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> list[Path]:
    """Write the model (safetensors), generation config and tokenizer (with chat template) to dest; returns the
    weight files."""
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return sorted(dest.glob("*.safetensors"))


def describe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict:
    """Size facts for the provenance: parameters (tied ones once), vocabulary, end-of-turn ids."""
    eos = model.generation_config.eos_token_id
    return {
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.config.get_text_config().vocab_size,
        "tokenizer_size": len(tokenizer),
        "eos_token_ids": eos if isinstance(eos, list) else [eos],
        "architecture": type(model).__name__,
    }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the converted weights and tokenizer."""
    return {name: version(name) for name in ("transformers", "torch", "gguf", "tokenizers", "safetensors")}


def _unfilled(model: PreTrainedModel, missing: set[str]) -> set[str]:
    """The missing names whose tensor no loaded name filled: a name tied to a loaded one (lm_head.weight to the
    embeddings) is filled."""
    by_id = defaultdict(list)
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id[id(param)].append(name)
    filled = {name for names in by_id.values() if any(n not in missing for n in names) for name in names}
    return missing - filled


def _merge_ids(current: int | list[int] | None, extra: list[int]) -> list[int] | int | None:
    ids = [] if current is None else list(current) if isinstance(current, list) else [current]
    ids += [i for i in extra if i not in ids]
    return ids[0] if len(ids) == 1 else ids or None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
