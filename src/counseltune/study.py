"""A study is a set of params.yaml overrides (dotted key -> value).

`counseltune study apply studies/<study>.yaml` checks the overrides against params.yaml and its schema first (an
unknown key or a bad value fails here, not hours into a cluster run) and writes them into params.yaml itself,
comments kept. Both engines read that one file, so the same materialized params drive `dvc exp run`, a local
`snakemake` and the SLURM profile, and `git diff params.yaml` shows exactly what the study changed. (Passing the
overrides as `dvc exp run -S` flags through `$(...)` was a shell trap: command substitution keeps quotes.)
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import yaml

from counseltune.config import ParamsError, validate_params


def load_study(path: Path) -> dict[str, Any]:
    overrides = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(overrides, dict) or not overrides:
        raise ParamsError(f"{path}: a study is a mapping of dotted params keys to values")
    return overrides


def apply_overrides(params: dict[str, Any], overrides: dict[str, Any], where: str = "study") -> dict[str, Any]:
    """params with the overrides applied as `dvc exp run -S` applies them: a mapping merges into the existing
    mapping key by key (except `REPLACED_WHOLE`), anything else replaces; a key whose parent does not exist is an error (a typo)."""
    out = copy.deepcopy(params)
    for dotted, value in leaf_overrides(params, overrides, where):
        *parents, leaf = split_key(params, dotted)
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = value
    validate_params(out, where=f"params.yaml with {where}")
    return out


def leaf_overrides(params: dict[str, Any], overrides: dict[str, Any], where: str = "study") -> list[tuple[str, Any]]:
    """(dotted key, value) pairs with mappings expanded down to keys params.yaml does not have yet."""
    out: list[tuple[str, Any]] = []
    for dotted, value in overrides.items():
        *parents, leaf = split_key(params, dotted)
        node: Any = params
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{where}: {dotted}: params.yaml has no {'.'.join(parents[:i + 1])}")
            node = node[part]
        if not isinstance(node, dict):
            raise ParamsError(f"{where}: {dotted}: {'.'.join(parents)} is not a mapping")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict) and not _whole(parents + [leaf]):
            out += leaf_overrides(params, {f"{dotted}.{k}": v for k, v in value.items()}, where)
        else:
            out.append((dotted, value))
    return out


# Mappings a study replaces whole instead of merging: a model's source names exactly one kind (pypi, hub or path),
# so switching a hub model to a local folder must drop its hub keys.
REPLACED_WHOLE = (("models", None, "source"),)


def _whole(parts: list[str]) -> bool:
    return any(len(parts) == len(p) and all(w is None or w == x for w, x in zip(p, parts)) for p in REPLACED_WHOLE)


def split_key(params: dict[str, Any], dotted: str) -> list[str]:
    """A dotted key's parts, where a part may itself hold dots when params has such a key (model names such as
    llama-3.1-8b-instruct): at each level the longest run of parts that names an existing key wins."""
    parts, out, node = dotted.split("."), [], params
    while parts:
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            if isinstance(node, dict) and name in node:
                break
        else:
            n, name = 1, parts[0]
        out.append(name)
        node = node.get(name) if isinstance(node, dict) else None
        parts = parts[n:]
    return out


def apply_study(params_path: Path, study: Path) -> list[str]:
    """Write the study's overrides into params_path (comments and key order kept); return the dotted keys it
    changed. Applying the same study twice changes nothing the second time."""
    from ruamel.yaml import YAML

    from counseltune.config import load_params

    params_path, overrides = Path(params_path), load_study(study)
    current = load_params(params_path)
    expected = apply_overrides(current, overrides, where=str(study))
    yaml_rt = YAML()  # round-trip: keeps the lab-notebook comments of params.yaml
    yaml_rt.width = 4096
    document = yaml_rt.load(params_path.read_text(encoding="utf-8"))
    changed = []
    for dotted, value in leaf_overrides(current, overrides, where=str(study)):
        *parents, leaf = split_key(current, dotted)
        node = document
        for part in parents:
            node = node[part]
        if leaf not in node or _plain(node[leaf]) != value:
            changed.append(dotted)
        node[leaf] = value
    buffer = io.StringIO()
    yaml_rt.dump(document, buffer)
    params_path.write_text(buffer.getvalue(), encoding="utf-8")
    if load_params(params_path) != expected:  # the round trip must give exactly the validated params
        raise ParamsError(f"{params_path}: writing {study} did not reproduce its overrides; restore the file "
                          f"with `git checkout {params_path}` and report this as a bug")
    return changed


def _plain(value: Any) -> Any:
    """A round-trip YAML node as plain Python, for comparison."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
