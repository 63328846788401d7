"""Load params.yaml and validate it against schemas/params.schema.yaml (the same check the Snakefile makes)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from counseltune.errors import CounseltuneError

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(CounseltuneError, ValueError):
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
    _check_synthesis(params, where)
    for name, entry in params["models"].items():
        dist, gpus = entry["distributed"], entry["resources"]["gpus"]
        if dist["strategy"] != "single" and dist["num_processes"] != "auto" and dist["num_processes"] > gpus:
            raise ParamsError(f"{where}: models.{name}.distributed.num_processes {dist['num_processes']} ranks need as "
                              f"many GPUs, but models.{name}.resources.gpus is {gpus}")


def _check_synthesis(params: dict[str, Any], where: str) -> None:
    """Cross-key rules of the llm/synthesize/sft sections that a JSON Schema cannot say."""
    local = params["llm"]["local"]["model"]
    if local not in params["run"]["models"]:
        raise ParamsError(f"{where}: llm.local.model {local!r} must be one of run.models {params['run']['models']} "
                          "(its base_model stage builds the folder the local LLM backend loads)")
    synth = params["synthesize"]
    missing = [g for g in synth["run"] if g not in synth["generators"]]
    if missing:
        raise ParamsError(f"{where}: synthesize.run names {missing}, which have no entry under synthesize.generators")
    not_run = [g for g, share in params["sft"].get("synthetic", {}).items() if share > 0 and g not in synth["run"]]
    if not_run:
        raise ParamsError(f"{where}: sft.synthetic mixes in {not_run}, which synthesize.run does not make: add them "
                          "to synthesize.run or set their share to 0")
    remote = params["llm"]["remote"]["model"]
    if params["llm"]["backend"] == "openai" and remote not in params["llm"]["prices"]:
        raise ParamsError(f"{where}: llm.prices has no entry for llm.remote.model {remote!r}: add "
                          f"{{input_per_m: <USD>, output_per_m: <USD>}} (0 for a free endpoint) so the budget holds")


def llm_client_config(params: dict[str, Any]) -> dict[str, Any]:
    """params.llm -> the flat config counseltune.llm.make_client takes, for the chosen backend."""
    llm = params["llm"]
    shared = {"cache_dir": llm["cache_dir"], "prices": llm["prices"]}
    if llm["backend"] == "local":
        return {"backend": "local", "model": llm["local"]["model"], "batch_size": llm["local"]["batch_size"],
                "model_dir": f"models/base/{llm['local']['model']}", **shared}
    return {"backend": "openai", **llm["remote"], **shared}


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
