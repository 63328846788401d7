"""One resident copy of a base model per process, shared by every local client of the same base folder.

The fidelity stage talks to the fine-tuned counselor (base + LoRA adapter) and to its base: two clients, one set of
base weights. The first client loads the base folder (through models/loader.py); a client with an adapter attaches
it to the resident model by name; each generation runs inside `serving(...)`, which switches to that client's
adapter, or switches adapters off for a base client. So a 7-9B model is held once, not twice.

A client must take the model from `serving` for every call and never keep it: attaching an adapter wraps the
resident model (peft injects the LoRA layers into it in place), so a kept reference could compute with an adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counseltune.models.loader import load_model, load_tokenizer, with_adapter


@dataclass
class Resident:
    model: Any  # the base model, or the PeftModel holding every adapter attached so far
    tokenizer: Any
    adapters: dict[Path, str] = field(default_factory=dict)  # adapter folder -> peft adapter name


_HELD: dict[Path, Resident] = {}


def acquire(name: str, entry: Mapping[str, Any], model_dir: Path, adapter_dir: Path | None = None) -> Resident:
    """The resident model of model_dir (loaded on first use), with adapter_dir's adapter attached if given."""
    key = Path(model_dir).resolve()
    held = _HELD.get(key)
    if held is None:
        tokenizer = load_tokenizer(name, entry, model_dir, padding_side="left")
        held = _HELD[key] = Resident(load_model(name, entry, model_dir), tokenizer)
    if adapter_dir is not None and Path(adapter_dir).resolve() not in held.adapters:
        adapter_name = f"adapter_{len(held.adapters)}"
        held.model = with_adapter(name, held.model, Path(adapter_dir), adapter_name=adapter_name)
        held.model.eval()
        held.adapters[Path(adapter_dir).resolve()] = adapter_name
    return held


@contextmanager
def serving(held: Resident, adapter_dir: Path | None) -> Iterator[Any]:
    """The resident model computing with adapter_dir's adapter, or as the plain base (None), for the block."""
    if not held.adapters:
        yield held.model
    elif adapter_dir is None:
        with held.model.disable_adapter():
            yield held.model
    else:
        held.model.set_adapter(held.adapters[Path(adapter_dir).resolve()])
        yield held.model


def release(model_dir: Path) -> None:
    """Drop the resident model of model_dir (its memory is freed once no client holds it)."""
    _HELD.pop(Path(model_dir).resolve(), None)


def resident_count() -> int:
    return len(_HELD)
