"""Load params.yaml and validate it against schemas/params.schema.yaml (the same check the Snakefile makes)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or breaks its schema; the message names the key path."""


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read and validate params; raise ParamsError naming the key path and what was expected."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    validate_params(params, where=str(path))
    return params


def validate_params(params: Any, where: str = "params") -> None:
    validator = jsonschema.Draft202012Validator(params_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_key_path(e)}: {e.message}" for e in errors[:10]]
        raise ParamsError(f"{where} does not match schemas/params.schema.yaml:\n" + "\n".join(lines))
    unknown = [m for m in params["run"]["models"] if m not in params["models"]]
    if unknown:
        raise ParamsError(f"{where}: run.models names {unknown}, which are not entries under models: "
                          f"(known: {', '.join(params['models'])})")
    fractions = params["curate"]["split"]["fractions"]
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ParamsError(f"{where}: curate.split.fractions must sum to 1, got {sum(fractions.values())}")


def params_schema() -> dict[str, Any]:
    text = resources.files("counseltune.schemas").joinpath("params.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def source_policies(params: dict[str, Any], source: str) -> dict[str, Any]:
    """The ingest policies for one source: the `ingest:` defaults overridden by the source's own keys."""
    if source not in params["sources"]:
        known = ", ".join(params["sources"])
        raise ParamsError(f"source {source!r} is not declared under sources: in params.yaml (declared: {known})")
    spec = params["sources"][source]
    return {key: spec.get(key, default) for key, default in params["ingest"].items()}


def model_params(params: dict[str, Any], model: str) -> dict[str, Any]:
    """One registry entry; a clear error when the name is not in models:."""
    if model not in params["models"]:
        raise ParamsError(f"model {model!r} is not an entry under models: in params.yaml (known: {', '.join(params['models'])})")
    return params["models"][model]


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"
