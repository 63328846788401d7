"""A study's toy-scale twin: the same study with only its sizes shrunk and the outside world replaced.

Derived from the study file every time (never a second hand-kept copy), so it cannot drift: every key of the study
stays as written except
- sizes (sessions, steps, lengths, limits: `SIZES`, `TRAIN_SIZES`, `DECODE_SIZES`),
- the corpora (`data/raw/X` -> the bundled `data/sample/X`),
- each hub model -> a tiny random-weight model of its family built here (models/tiny.py; same architecture class,
  chat template and loading path, trust_remote_code included), with GPU-only settings swapped for CPU ones,
- the API -> a loopback OpenAI-compatible server (`counseltune rehearsal-api`).
Each difference is one line of the twin's `changes`, printed and written into the twin file's header.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from counseltune.study import apply_overrides, load_study

# Study keys a rehearsal shrinks (fnmatch patterns over dotted keys) -> the twin's value.
SIZES: dict[str, Any] = {
    "synthesize.generators.*.n_sessions": 3,
    "predict.max_dialogs_per_source": 2,
    "predict.max_turns_per_dialog": 2,
    "fidelity.judge.max_sessions": 1,
    "fidelity.simulate.limit": 1,
    "fidelity.simulate.rounds": 2,
    "fidelity.safety.limit": 1,
}
# Per model: the registry's training, decoding and resource sizes in the twin.
TRAIN_SIZES = {"max_steps": 4, "batch_size": 2, "grad_accum": 1, "max_len": 256, "warmup_steps": 1, "save_every": 2}
DECODE_SIZES = {"max_new_tokens": 16, "batch_size": 4}
RESOURCE_SIZES = {"mem_mb": 3000, "runtime_min": 30}  # what a one-node test cluster can grant
KEY_ENV = "COUNSELTUNE_REHEARSAL_KEY"  # the loopback API takes any key; the real one never enters a rehearsal
RAW, SAMPLE = "data/raw/", "data/sample/"


@dataclass
class Twin:
    overrides: dict[str, Any]
    changes: list[str] = field(default_factory=list)

    def yaml_text(self, study: Path) -> str:
        header = [f"# The toy-scale twin of {study}, written by `counseltune study twin` (do not edit: re-derive it).",
                  "# Every key is the study's own except these changes:"]
        header += [f"#   {line}" for line in self.changes]
        body = yaml.safe_dump(self.overrides, sort_keys=False, allow_unicode=True, width=4096, default_flow_style=None)
        return "\n".join(header) + "\n" + body


def twin_of(study: Path, params: dict[str, Any], api_url: str, stand_ins: Path) -> Twin:
    """The twin's overrides of params.yaml (a study file of its own) and the list of what differs from the study.
    `stand_ins` is where the tiny models are (or will be) built: one folder per family."""
    from counseltune.models import tiny

    overrides = load_study(study)
    applied = apply_overrides(params, overrides, where=str(study))  # the study must be valid before it is twinned
    twin = Twin({})
    for key, value in overrides.items():
        new = _shrunk(key, value)
        twin.changes += [f"{leaf}: {_show(old)} -> {_show(size)} (size)" for leaf, old, size in _diff(key, value, new)]
        if isinstance(value, str) and value.startswith(RAW):
            new = SAMPLE + value[len(RAW):]
            twin.changes.append(f"{key}: {value} -> {new} (the bundled sample of the same corpus)")
        twin.overrides[key] = new
    for key, new in (("llm.remote.base_url", api_url), ("llm.remote.key_env", KEY_ENV)):
        twin.changes.append(f"{key}: {_show(applied['llm']['remote'][key.rsplit('.', 1)[1]])} -> {new} "
                            "(the loopback API stands in for the study's endpoint)")
        twin.overrides[key] = new
    for name in applied["run"]["models"]:
        registry = applied["models"][name]
        entry, swaps = tiny.stand_in_entry(name, copy.deepcopy(registry), Path(stand_ins) / tiny.family_of(name))
        twin.changes += swaps
        for part, sizes in (("train", TRAIN_SIZES), ("decode", DECODE_SIZES), ("resources", RESOURCE_SIZES)):
            old = entry[part]
            entry[part] = {**old, **{k: v for k, v in sizes.items() if k in old}}
            twin.changes += [f"models.{name}.{part}.{k}: {old[k]} -> {v} (size)"
                             for k, v in sizes.items() if k in old and old[k] != v]
        twin.overrides[f"models.{name}.source"] = entry.pop("source")  # replaced whole (study.REPLACED_WHOLE)
        twin.overrides.update({key: new for key, _, new in _diff(f"models.{name}", {k: v for k, v in registry.items() if k != "source"}, entry)})
    apply_overrides(params, twin.overrides, where=f"the twin of {study}")  # the twin is valid params too
    return twin


def build_stand_ins(params: dict[str, Any], study: Path, stand_ins: Path) -> list[Path]:
    """Build the tiny model of each of the study's models' families (once per family; a built folder is kept)."""
    from counseltune.models import tiny

    applied = apply_overrides(params, load_study(study), where=str(study))
    built = []
    for family in sorted({tiny.family_of(name) for name in applied["run"]["models"]}):
        folder = Path(stand_ins) / family
        if not (folder / "config.json").exists():
            tiny.build(family, folder)
        built.append(folder)
    return built


def _shrunk(key: str, value: Any) -> Any:
    for pattern, size in SIZES.items():
        if fnmatch.fnmatchcase(key, pattern):
            return size
    if isinstance(value, dict):  # a mapping override: its keys are study keys too (key.sub)
        return {k: _shrunk(f"{key}.{k}", v) for k, v in value.items()}
    return value


def _diff(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in old for d in _diff(f"{key}.{k}", old[k], new[k])]
    return [] if old == new else [(key, old, new)]


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=4096).strip().removesuffix("...").strip()
