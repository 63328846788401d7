"""A study is a set of params.yaml overrides (dotted key -> value) that `dvc exp run -S` applies in one command.

`counseltune study-args studies/<study>.yaml` checks the overrides against params.yaml and its schema first (an
unknown key or a bad value fails here, not hours into a cluster run) and prints them as `-S key=value` flags.
"""

from __future__ import annotations

import copy
import re
import shlex
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
    mapping key by key, anything else replaces; a key whose parent does not exist is an error (a typo)."""
    out = copy.deepcopy(params)
    for dotted, value in leaf_overrides(params, overrides, where):
        *parents, leaf = dotted.split(".")
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
        *parents, leaf = dotted.split(".")
        node: Any = params
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{where}: {dotted}: params.yaml has no {'.'.join(parents[:i + 1])}")
            node = node[part]
        if not isinstance(node, dict):
            raise ParamsError(f"{where}: {dotted}: {'.'.join(parents)} is not a mapping")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            out += leaf_overrides(params, {f"{dotted}.{k}": v for k, v in value.items()}, where)
        else:
            out.append((dotted, value))
    return out


def set_param_flags(params: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """Overrides as `dvc exp run` arguments: ['-S', 'key=value', ...] in Hydra's override grammar (what DVC
    parses -S with); a key params.yaml does not have yet is added with Hydra's '+key=value'."""
    flags = []
    for dotted, value in leaf_overrides(params, overrides):
        node: Any = params
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        flags += ["-S", f"{'' if node is not None else '+'}{dotted}={hydra_value(value)}"]
    return flags


_PLAIN = re.compile(r"^[A-Za-z_][\w\-./]*$")


def hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in ("null", "true", "false"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise ParamsError(f"cannot pass {value!r} ({type(value).__name__}) as a dvc -S value")


def study_args(params: dict[str, Any], study: Path) -> str:
    overrides = load_study(study)
    apply_overrides(params, overrides, where=str(study))
    return shlex.join(set_param_flags(params, overrides))
