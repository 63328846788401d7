"""The one way a stage loads a registry model (models.<name>): its tokenizer, its weights, and a peft adapter on top.

Every stage that loads a model (SFT data, finetune, predict, the local LLM client of synthesize and fidelity) goes
through here, so the registry entry's dtype, quantization, source.trust_remote_code and source.revision mean the
same everywhere. A custom-code model (Baichuan2) keeps its code files in models/base/<name>, so its converted
folder needs trust_remote_code too.

What a converted folder is (its source, so trust_remote_code and the pinned revision, and its dtype) is read from
the provenance the base-model stage wrote beside the weights (counseltune_base.json): the registry entry it was
built from. A stage then needs to declare only what loading adds (quantization), and a folder without provenance
(a plain transformers folder, a hub id) takes these from the entry.

One resident copy of the base weights serves both the fine-tuned and the base model: load with the adapter, and
generate as the base model inside `adapter_disabled(model)` (peft bypasses the LoRA layers there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from counseltune.errors import CounseltuneError

log = logging.getLogger(__name__)

PROVENANCE = "counseltune_base.json"  # written by models/base.py beside the converted weights
Purpose = Literal["inference", "training"]
QUANTIZED = ("4bit", "8bit")


class ModelLoadError(CounseltuneError, RuntimeError):
    """A registry model cannot be loaded as configured; the message names the key or folder and what to do."""


def built_from(entry: Mapping[str, Any], folder: Path | str) -> dict[str, Any]:
    """{source, dtype} of the registry entry that `folder` was built from: its provenance when the base-model stage
    built it, else the entry itself."""
    provenance = Path(folder) / PROVENANCE
    if provenance.is_file():
        built = json.loads(provenance.read_text(encoding="utf-8"))
        return {"source": built.get("source", {}), "dtype": built.get("dtype", "float32")}
    return {"source": entry.get("source", {}), "dtype": entry.get("dtype", "float32")}


def trust_remote_code(entry: Mapping[str, Any], folder: Path | str) -> bool:
    """models.<name>.source.trust_remote_code (default false) of the entry `folder` was built from."""
    return bool(built_from(entry, folder)["source"].get("trust_remote_code", False))


def load_tokenizer(name: str, entry: Mapping[str, Any], folder: Path | str, padding_side: str | None = None) -> Any:
    """The tokenizer of `folder` (a model folder, or a hub id at the entry's pinned revision), with a pad token
    (eos when the tokenizer has none: batching and collators need one)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **_source_kwargs(entry, folder))
    except Exception as err:
        raise ModelLoadError(_explain(name, entry, folder, "tokenizer", err)) from err
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, entry: Mapping[str, Any], folder: Path | str, adapter: Path | str | None = None,
               purpose: Purpose = "inference", *, merge_adapter: bool = False, attn_implementation: str | None = None,
               device_map: Any = None) -> Any:
    """The causal LM of `folder` as models.<name> configures it; with `adapter`, a peft model on top of it.

    purpose="training" loads float32 on a CPU (the registry dtype is a GPU training dtype), leaves the model on
    the CPU for accelerate to place, turns the KV cache off and makes the adapter trainable. "inference" keeps the
    registry dtype, moves the model to the GPU when there is one and sets eval mode. merge_adapter folds the LoRA
    weights into plain (unquantized) weights, faster per step but no longer toggleable.
    """
    import torch
    from transformers import AutoModelForCausalLM

    check_quantization(name, entry)
    quant = entry.get("quantization", "none")
    dtype = weights_dtype(name, built_from(entry, folder)["dtype"], purpose)
    kwargs: dict[str, Any] = {_dtype_key(): dtype, **_source_kwargs(entry, folder)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quant in QUANTIZED:
        kwargs["quantization_config"] = _bitsandbytes_config(quant, dtype)
        kwargs["device_map"] = device_map if device_map is not None else {"": torch.cuda.current_device()}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except Exception as err:
        raise ModelLoadError(_explain(name, entry, folder, "model", err)) from err
    if purpose == "training":
        model.config.use_cache = False
    if adapter is not None:
        model = with_adapter(name, model, Path(adapter), trainable=purpose == "training")
        if merge_adapter and quant not in QUANTIZED:  # merging into 4-/8-bit weights would round the LoRA update
            model = model.merge_and_unload()
    if purpose == "inference":
        if "device_map" not in kwargs and torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
    log.info("model %s: %s loaded (%s, quantization %s%s)", name, folder, str(dtype).removeprefix("torch."), quant,
             f", adapter {adapter}" if adapter is not None else "")
    return model


def load_chat_model(name: str, entry: Mapping[str, Any], folder: Path | str,
                    adapter: Path | str | None = None) -> tuple[Any, Any]:
    """(model for inference, left-padding tokenizer) of a model folder with its chat template; with `adapter`, the
    LoRA merged in (kept unmerged on quantized weights): what generation (models/generate.py) needs."""
    tokenizer = load_tokenizer(name, entry, folder, padding_side="left")
    if not tokenizer.chat_template:
        raise ModelLoadError(f"{folder}: the tokenizer has no chat template (the base-model stage always sets one)")
    # merged: plain weights again, no LoRA matmuls per step
    return load_model(name, entry, folder, adapter, merge_adapter=True), tokenizer


@contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """Within: `model` computes as its base model (peft skips the LoRA layers); after: the adapter is back."""
    if not hasattr(model, "disable_adapter"):
        raise TypeError(f"{type(model).__name__} has no adapter to disable (load it with an adapter, unmerged)")
    with model.disable_adapter():
        yield model


def check_quantization(name: str, entry: Mapping[str, Any]) -> None:
    """4-/8-bit weights need a CUDA GPU with bitsandbytes: refuse at once, naming the key and the fix."""
    import torch

    quant = entry.get("quantization", "none")
    if quant not in QUANTIZED:
        return
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"models.{name}.quantization is {quant!r} (QLoRA), which needs a CUDA GPU with bitsandbytes, and this "
            f"machine has no CUDA device. Set models.{name}.quantization: none in params.yaml to train a plain "
            "LoRA (float32 on CPU), or run this stage on a GPU node.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError(f"models.{name}.quantization is {quant!r} (QLoRA), which needs bitsandbytes: "
                             f"`pip install bitsandbytes` on this GPU node, or set models.{name}.quantization: "
                             "none") from None


def weights_dtype(name: str, dtype: str, purpose: Purpose = "inference") -> Any:
    """The torch dtype to load models.<name> in: its registry dtype, except float32 for training on a CPU."""
    import torch

    if dtype not in ("float32", "bfloat16", "float16"):
        raise ModelLoadError(f"models.{name}.dtype: {dtype!r} is not one of float32, bfloat16, float16: fix "
                             "params.yaml")
    if purpose == "training" and not torch.cuda.is_available() and dtype != "float32":
        log.info("model %s: no CUDA device, loading the %s weights in float32 for CPU training", name, dtype)
        return torch.float32
    return getattr(torch, dtype)


def _source_kwargs(entry: Mapping[str, Any], folder: Path | str) -> dict[str, Any]:
    """from_pretrained arguments for the source: a local folder is read offline; a hub id at the pinned revision."""
    source = built_from(entry, folder)["source"]
    kwargs: dict[str, Any] = {"trust_remote_code": bool(source.get("trust_remote_code", False))}
    if Path(folder).is_dir():
        kwargs["local_files_only"] = True
    else:
        kwargs["revision"] = source.get("revision")
    return kwargs


def _dtype_key() -> str:
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"  # renamed in 4.56


def _bitsandbytes_config(quant: str, dtype: Any) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.float16 if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported() else dtype
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def with_adapter(name: str, model: Any, adapter: Path, trainable: bool = False, adapter_name: str = "default") -> Any:
    """model with the peft adapter in `adapter` on top (a PeftModel already holding adapters gets one more)."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"model {name}: {adapter} holds no peft adapter (no adapter_config.json): run the "
                             f"finetune stage for {name} first")
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(adapter, adapter_name=adapter_name, is_trainable=trainable)
            return model
        return PeftModel.from_pretrained(model, adapter, adapter_name=adapter_name, is_trainable=trainable)
    except Exception as err:
        raise ModelLoadError(f"model {name}: the adapter in {adapter} does not fit the base model "
                             f"({_first_line(err)}): retrain it on this base model (finetune stage)") from err


def _explain(name: str, entry: Mapping[str, Any], folder: Path | str, what: str, err: Exception) -> str:
    if refused_custom_code(err) and not trust_remote_code(entry, folder):
        return untrusted_code(name, folder, what)
    if not Path(folder).is_dir():
        return (f"model {name}: {folder} is neither a model folder here nor loadable from the hub "
                f"({_first_line(err)}): build models/base/{name} with the base-model stage, or fix the path")
    if not (Path(folder) / "config.json").is_file():
        return (f"model {name}: {folder} is not a model folder (no config.json): rebuild it with the base-model "
                "stage")
    return f"model {name}: transformers could not load the {what} in {folder}: {_first_line(err)}"


def refused_custom_code(err: Exception) -> bool:
    """Whether transformers refused to run a folder's custom code (auto_map) because trust_remote_code was off."""
    return "trust_remote_code" in str(err) or "contains custom code" in str(err)


def untrusted_code(name: str, folder: Path | str, what: str) -> str:
    return (f"models.{name}.source.trust_remote_code: the {what} in {folder} is custom code (auto_map in its "
            f"config); if you trust it, set models.{name}.source.trust_remote_code: true in params.yaml (and rebuild "
            "the base model)")


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
