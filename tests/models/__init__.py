"""Small real builders for the base-model tests: wheel zips pip accepts, a word-level tokenizer, a tiny Llama folder."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

DIALOG = [
    {"role": "system", "content": "You are a counselor."},
    {"role": "user", "content": "I feel low."},
    {"role": "assistant", "content": "Tell me more."},
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CONTROL = ["<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>", "<reserved_106>", "<reserved_107>"]
WORDS = ["user", "model", "assistant", "system", "You", "are", "a", "counselor.", "I", "feel", "low.", "Tell", "me",
         "more."]


def build_wheel(folder: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) holding `files`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: counseltune-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{name},sha256={_b64_sha256(data)},{len(data)}\n" for name, data in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_tokenizer(control: list[str] = CONTROL):
    """A word-level fast tokenizer whose `control` tokens are single special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + control + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(control)})
    return tokenizer


def tiny_model_folder(folder: Path, control: list[str] = CONTROL, chat_template: str | None = None) -> Path:
    """A random 2-layer Llama + tiny tokenizer saved as a plain transformers folder (a `source.path` model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(control)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def tiny_study_base(name: str, root: Path) -> tuple[dict, Path]:
    """A study model's CPU stand-in entry and its models/base folder, built by the real base-model stage from the
    tiny random-weight model of its family (models/tiny.py)."""
    import copy

    from counseltune.config import load_params
    from counseltune.models import tiny
    from counseltune.models.base import prepare_base_model

    registry = load_params(Path(__file__).parents[2] / "params.yaml")["models"]
    source = tiny.build(tiny.family_of(name), root / "src" / name)
    entry, _ = tiny.stand_in_entry(name, copy.deepcopy(registry[name]), source)
    prepare_base_model(name, entry, root / "base" / name)
    return entry, root / "base" / name
