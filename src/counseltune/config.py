"""Load params.yaml and validate it against schemas/params.schema.yaml (the same check the Snakefile makes)."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from counseltune.errors import CounseltuneError

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(CounseltuneError, ValueError):
    """params.yaml is missing, unreadable or breaks its schema; the message names the key path."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice (PyYAML alone silently keeps the last one)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a duplicated mapping key, naming its key path and both lines."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(node, (), set())
        return super().construct_document(node)


def _refuse_duplicate_keys(node: yaml.Node, path: tuple[str, ...], seen_nodes: set[int]) -> None:
    if id(node) in seen_nodes:  # an alias points back at a node already checked
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else key_node.start_mark.line
            line = key_node.start_mark.line + 1
            if key in first_line and key != "<<":  # `<<` merge keys may repeat
                raise DuplicateKeyError(f"line {line}: key {'.'.join((*path, str(key)))} is given twice (first on "
                                        f"line {first_line[key]}); keep one")
            first_line.setdefault(key, line)
            _refuse_duplicate_keys(value_node, (*path, str(key)), seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, (*path, str(i)), seen_nodes)


def load_yaml(path: Path | str) -> Any:
    """Parse a YAML file with StrictLoader: what every reader of params.yaml (and its schema) uses."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read and validate params; raise ParamsError naming the key path and what was expected."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        params = load_yaml(path)
    except DuplicateKeyError as err:
        raise ParamsError(f"{path} {err}") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    validate_params(params, where=str(path))
    return params


def validate_params(params: Any, where: str = "params") -> None:
    """Schema, then the rules a JSON Schema cannot say: finite numbers, min <= max, fractions, cross-key names."""
    _refuse_non_finite(params, where, ())
    validator = jsonschema.Draft202012Validator(params_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_key_path(e)}: {e.message}" for e in errors[:10]]
        raise ParamsError(f"{where} does not match schemas/params.schema.yaml: fix these keys in params.yaml\n"
                          + "\n".join(lines))
    unknown = [m for m in params["run"]["models"] if m not in params["models"]]
    if unknown:
        raise ParamsError(f"{where}: run.models names {unknown}, which are not entries under models: "
                          f"(known: {', '.join(params['models'])})")
    fractions = params["curate"]["split"]["fractions"]
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ParamsError(f"{where}: curate.split.fractions must sum to 1, got {sum(fractions.values())} "
                          f"({fractions}): fix them in params.yaml")
    _check_ranges(params, where)
    _check_synthesis(params, where)
    _check_coder_source(params, where)
    for name, entry in params["models"].items():
        dist, gpus = entry["distributed"], entry["resources"]["gpus"]
        if dist["strategy"] != "single" and dist["num_processes"] != "auto" and dist["num_processes"] > gpus:
            raise ParamsError(f"{where}: models.{name}.distributed.num_processes {dist['num_processes']} ranks need as "
                              f"many GPUs, but models.{name}.resources.gpus is {gpus}")


def _check_synthesis(params: dict[str, Any], where: str) -> None:
    """Cross-key rules of the llm/synthesize/sft sections that a JSON Schema cannot say."""
    local = params["llm"]["local"]["model"]
    if params["llm"]["backend"] == "local" and local not in params["run"]["models"]:  # a remote backend builds none
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


def _check_coder_source(params: dict[str, Any], where: str) -> None:
    """The MITI coder reads its source's ingested tables: an AnnoMI source that keeps every annotated utterance."""
    name = params["fidelity"]["coder"]["source"]
    spec = params["sources"].get(name)
    if spec is None or spec["format"] != "annomi":
        annomi = [s for s, v in params["sources"].items() if v["format"] == "annomi"]
        raise ParamsError(f"{where}: fidelity.coder.source {name!r} must name a sources entry of format annomi "
                          f"(declared: {annomi or 'none'}): add an AnnoMI source or point the key at one")
    if spec.get("same_speaker", params["ingest"]["same_speaker"]) != "keep":
        raise ParamsError(f"{where}: sources.{name}.same_speaker must be keep, since the MITI coder learns from its "
                          "tables (merging two utterances of one speaker drops codes where they differ): set "
                          f"sources.{name}.same_speaker: keep")


def _refuse_non_finite(value: Any, where: str, path: tuple[str, ...]) -> None:
    """NaN and infinities (`.nan`, `.inf` in YAML) pass every JSON Schema bound (NaN compares false): refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{where}: {'.'.join(path) or '(top level)'} is {value}: a number here must be finite; "
                          "fix it in params.yaml")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, where, (*path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_non_finite(item, where, (*path, str(i)))


def _check_ranges(params: dict[str, Any], where: str) -> None:
    """Every min_X/max_X pair (and [low, high] `turns` range) must not contradict itself: min_turns > max_turns
    would make curate (or a synthesis filter) drop everything and still exit 0."""
    synth = params["synthesize"]
    for name, gen in synth["generators"].items():  # a generator's filters override the shared ones key by key
        _check_min_max({**synth["filters"], **gen.get("filters", {})}, where, f"synthesize.generators.{name}.filters "
                       "(over synthesize.filters)")
    _walk_min_max(params, where, ())
    for name, entry in params["models"].items():
        train = entry["train"]
        if train["warmup_steps"] > train["max_steps"]:
            raise ParamsError(f"{where}: models.{name}.train.warmup_steps {train['warmup_steps']} is above max_steps "
                              f"{train['max_steps']}: the learning rate would never reach train.lr; fix one in params.yaml")
    backoff = params["llm"]["remote"]
    if backoff.get("backoff_base_s", 0) > backoff.get("backoff_max_s", math.inf):
        raise ParamsError(f"{where}: llm.remote.backoff_base_s {backoff['backoff_base_s']} is above backoff_max_s "
                          f"{backoff['backoff_max_s']}: the first wait cannot exceed the longest; fix one in params.yaml")


def _walk_min_max(value: Any, where: str, path: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        return
    _check_min_max(value, where, ".".join(path) or "(top level)")
    turns = value.get("turns")
    if isinstance(turns, list) and len(turns) == 2 and all(_is_number(t) for t in turns) and turns[0] > turns[1]:
        raise ParamsError(f"{where}: {'.'.join((*path, 'turns'))} is {turns}: the range [low, high] needs low <= "
                          "high; fix it in params.yaml")
    for key, item in value.items():
        _walk_min_max(item, where, (*path, str(key)))


def _check_min_max(mapping: dict[str, Any], where: str, at: str) -> None:
    for key, low in mapping.items():
        if not key.startswith("min_"):
            continue
        high = mapping.get("max_" + key[4:])
        if _is_number(low) and _is_number(high) and low > high:
            raise ParamsError(f"{where}: {at}: {key} {low} is above max_{key[4:]} {high}, so nothing could pass; "
                              f"fix one of them in params.yaml")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


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
