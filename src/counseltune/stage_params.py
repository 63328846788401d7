"""The params keys each stage reads, declared once, and the read-only view that enforces them.

A stage re-runs when a key it declares changes, and only then; so a key it reads without declaring is a stale
result waiting to happen. Every `counseltune <command>` gets its params as a `ParamsView` of its declared keys:
reading anything else raises `UndeclaredParam` at once, in tests and in real runs. Snakemake's rule params and
dvc.yaml's `params:` lists are derived from this table (the rules call `declared_values`, `counseltune
code-deps --write` writes dvc.yaml), so neither engine can miss a key a stage reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# command -> dotted keys; {model}, {source}, {generator} are the job's own (its CLI argument of that name); a
# placeholder naming a params key, e.g. {llm.local.model}, is that key's value (the stage must declare it too).
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest", "sources.{source}"),
    "curate": ("sources", "curate"),
    "report-data": ("sources", "curate"),
    "plan-behaviors": ("synthesize.planner",),
    "synthesize": ("llm", "synthesize.seed", "synthesize.filters", "synthesize.attempts",
                   "synthesize.generators.{generator}"),
    "base-model": ("models.{model}.source", "models.{model}.template", "models.{model}.dtype"),
    "sft-data": ("models.{model}.train.max_len", "models.{model}.train.packing", "models.{model}.train.batch_size",
                 "models.{model}.template", "models.{model}.source", "sft", "synthesize.seed", "curate.split.seed"),
    # the model loader reads source (trust_remote_code, revision) wherever a stage loads a model
    "finetune": ("models.{model}.lora", "models.{model}.train", "models.{model}.quantization", "models.{model}.dtype",
                 "models.{model}.distributed", "models.{model}.source", "models.{model}.template"),  # template: the card
    "predict": ("models.{model}.decode", "models.{model}.dtype", "models.{model}.quantization", "models.{model}.source",
                "predict"),
    "evaluate": ("evaluate",),
    "miti-coder": ("fidelity.coder", "fidelity.bootstrap_samples", "fidelity.seed"),
    "judge-validation": ("fidelity.judge", "fidelity.judge_validation", "llm"),
    "fidelity": ("fidelity.judge", "fidelity.counselor", "fidelity.simulate", "fidelity.safety",
                 "fidelity.bootstrap_samples", "fidelity.seed", "llm", "models.{model}.decode", "models.{model}.dtype",
                 "models.{model}.quantization", "models.{model}.source"),
    "report-model": ("models.{model}",),  # the report prints the model's registry entry
    "report-compare": ("run.models", "evaluate", "fidelity.bootstrap_samples", "fidelity.seed", "synthesize.run"),
    "model-registry": ("models",),  # writes models/registry/<model>.yaml, where dvc.yaml tracks a model's keys
}


REGISTRY_DIR = "models/registry"  # one params file per registry entry (models/registry_files.py)


def registry_file(model: str) -> str:
    """The params file dvc.yaml declares a model's keys in."""
    return f"{REGISTRY_DIR}/{model}.yaml"


def dvc_params(command: str) -> list[str | dict[str, list[str] | None]]:
    """The declared keys as dvc.yaml writes them: a model or generator is the foreach ${item}, a source ${key}.

    A model's own keys (models.{model}.decode, ...) go to its registry file (models/registry_files.py): DVC splits a
    params key on every dot, so models.llama-3.1-8b-instruct.decode would be missing; the file path keeps the dots.
    """
    jobs = {"{model}": "${item}", "{generator}": "${item}", "{source}": "${key}"}

    def dvc(part: str) -> str:
        return jobs.get(part, "$" + part if part.startswith("{") else part)

    plain: list[str] = []
    per_model: dict[str, list[str]] = {}
    for key in STAGE_PARAMS[command]:
        parts = _PART.findall(key)
        if len(parts) > 1 and parts[0] == "models" and parts[1].startswith("{"):
            per_model.setdefault(registry_file(dvc(parts[1])), []).append(".".join(parts[2:]))
        else:
            plain.append(".".join(dvc(part) for part in parts))
    # an empty key is the whole entry: the whole file (DVC's `file:` with no keys)
    return plain + [{path: None if "" in keys else keys} for path, keys in per_model.items()]


_PART = re.compile(r"\{[^}]*\}|[^.]+")  # a key's parts: a {placeholder} may hold dots


class UndeclaredParam(RuntimeError):
    """A stage read a params key it does not declare: a bug in the declaration (not a KeyError, so that
    `.get(key, default)` cannot swallow it)."""


def declared_keys(command: str, params: Mapping[str, Any] | None = None, **job: str) -> tuple[tuple[str, ...], ...]:
    """The declared keys as key paths (split before filling in: model names such as qwen2.5-7b hold dots)."""
    def fill(part: str) -> str:
        if not (part.startswith("{") and part.endswith("}")):
            return part
        name = part[1:-1]
        if name in job:
            return job[name]
        node: Any = params
        for step in name.split("."):
            node = node[step]
        return str(node)

    return tuple(tuple(fill(part) for part in _PART.findall(key)) for key in STAGE_PARAMS[command])


def declared_values(params: Mapping[str, Any], command: str, **job: str) -> dict[str, Any]:
    """Dotted key -> value of every declared key: what Snakemake compares to decide a params re-run."""
    out = {}
    for path in declared_keys(command, params, **job):
        node: Any = params
        for part in path:
            node = node[part]
        out[".".join(path)] = node
    return out


def stage_view(params: Mapping[str, Any], command: str, **job: str) -> ParamsView:
    """The params `counseltune <command>` may read, for one job (its --model/--source/--generator)."""
    return ParamsView(params, declared_keys(command, params, **job), command)


class ParamsView(Mapping):
    """params restricted to `keys`: declared subtrees read as they are, the mappings above them list only their
    declared children, and anything else raises UndeclaredParam naming the key and the fix."""

    def __init__(self, data: Mapping[str, Any], keys: tuple[tuple[str, ...], ...], command: str,
                 path: tuple[str, ...] = ()):
        self._data, self._keys, self._command, self._path = data, keys, command, path

    def __getitem__(self, key: str) -> Any:
        path = (*self._path, str(key))
        if any(path[:len(k)] == k for k in self._keys):
            return self._data[key]  # inside a declared key: the value itself
        if any(k[:len(path)] == path for k in self._keys):
            return ParamsView(self._data[key], self._keys, self._command, path)
        raise UndeclaredParam(
            f"counseltune {self._command} read params key {'.'.join(path)}, which it does not declare: add it to "
            f"STAGE_PARAMS[{self._command!r}] in src/counseltune/stage_params.py (then `counseltune code-deps "
            "--write`), so both engines re-run the stage when it changes")

    def _readable(self, key: str) -> bool:
        path = (*self._path, str(key))
        return any(path[:len(k)] == k or k[:len(path)] == path for k in self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._data and self._readable(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._data if self._readable(key))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"ParamsView({'.'.join(self._path) or '<root>'} of counseltune {self._command})"
