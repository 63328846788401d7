import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from counseltune.config import ParamsError, load_params, source_policies, validate_params


def test_shipped_params_are_valid(params):
    assert set(params["sources"]) >= {"cpsycound", "cpsycoune", "annomi", "kmi"}


@pytest.mark.parametrize("mutate, key_path", [
    (lambda p: p["curate"].update(min_turn=3), "curate"),
    (lambda p: p["sources"]["kmi"].update(language="jp"), "sources.kmi.language"),
    (lambda p: p["curate"].update(min_turns="four"), "curate.min_turns"),
    (lambda p: p["ingest"].update(same_speaker="join"), "ingest.same_speaker"),
    (lambda p: p["sources"]["annomi"].pop("format"), "sources.annomi"),
    (lambda p: p["curate"]["split"]["fractions"].update(train=1.5), "curate.split.fractions.train"),
])
def test_a_wrong_key_or_type_names_the_key_path(params, mutate, key_path):
    broken = copy.deepcopy(params)
    mutate(broken)
    with pytest.raises(ParamsError) as err:
        validate_params(broken)
    assert f"  - {key_path}:" in str(err.value)


def test_split_fractions_must_sum_to_one(params):
    broken = copy.deepcopy(params)
    broken["curate"]["split"]["fractions"] = {"train": 0.5, "val": 0.1, "test": 0.1}
    with pytest.raises(ParamsError, match="sum to 1"):
        validate_params(broken)


def test_a_source_overrides_the_ingest_defaults(params):
    tweaked = copy.deepcopy(params)
    tweaked["sources"]["kmi"]["same_speaker"] = "quarantine"
    assert source_policies(tweaked, "kmi")["same_speaker"] == "quarantine"
    assert source_policies(tweaked, "cpsycound")["same_speaker"] == params["ingest"]["same_speaker"]


def test_an_undeclared_source_is_a_clear_error(params):
    with pytest.raises(ParamsError, match="not declared under sources"):
        source_policies(params, "nope")


def test_cli_check_params_fails_with_the_key_path(tmp_path, params):
    broken = copy.deepcopy(params)
    broken["curate"]["max_turns"] = -1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(broken, allow_unicode=True))
    result = subprocess.run([sys.executable, "-m", "counseltune.cli", "check-params", "--params", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "curate.max_turns" in result.stderr and "minimum" in result.stderr


def test_missing_params_file_says_what_to_do(tmp_path):
    with pytest.raises(ParamsError, match="run from the project root"):
        load_params(tmp_path / "absent.yaml")


# ---- issue 12.5: params that accept nonsense ---------------------------------------------------------------

def _write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


NON_FINITE = [
    (("models", "smollm2-135m-instruct", "train", "lr"), float("nan")),
    (("models", "smollm2-135m-instruct", "train", "lr"), float("inf")),
    (("ingest", "max_quarantine_share"), float("nan")),
    (("sft", "synthetic", "mi_planned"), float("nan")),
    (("curate", "split", "fractions", "train"), float("nan")),
    (("llm", "remote", "budget_usd"), float("inf")),
    (("llm", "remote", "timeout_s"), float("-inf")),
]


def _set(params: dict, keys: tuple[str, ...], value) -> dict:
    changed = copy.deepcopy(params)
    node = changed
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return changed


@pytest.mark.parametrize("keys, value", NON_FINITE)
def test_nan_and_inf_in_the_yaml_are_refused_with_the_key_path(tmp_path, params, keys, value):
    text = yaml.safe_dump(_set(params, keys, value), allow_unicode=True)  # written as .nan / .inf / -.inf
    with pytest.raises(ParamsError, match="must be finite") as err:
        load_params(_write(tmp_path, text))
    assert ".".join(keys) in str(err.value)


def test_any_spelling_of_nan_in_yaml_is_refused(tmp_path, repo):
    text = _replace_once((repo / "params.yaml").read_text(encoding="utf-8"), "max_quarantine_share: 0.05",
                         "max_quarantine_share: .NaN")
    with pytest.raises(ParamsError, match="ingest.max_quarantine_share is nan"):
        load_params(_write(tmp_path, text))


def test_a_nan_set_in_code_is_refused_too(params):  # study overrides reach validate_params as dicts
    with pytest.raises(ParamsError, match="fidelity.safety.threshold is nan"):
        validate_params(_set(params, ("fidelity", "safety", "threshold"), float("nan")))


@pytest.mark.parametrize("mutate, names", [
    (lambda p: p["curate"].update(min_turns=10, max_turns=5), ["curate", "min_turns 10", "max_turns 5"]),
    (lambda p: p["synthesize"]["filters"].update(min_turns=50), ["synthesize.filters", "min_turns 50", "max_turns 40"]),
    (lambda p: p["synthesize"]["generators"]["cbt_answer"]["filters"].update(min_turns=3),
     ["synthesize.generators.cbt_answer.filters", "min_turns 3", "max_turns 2"]),
    # a generator's own min over the shared max: the merged filters contradict each other
    (lambda p: p["synthesize"]["generators"]["mi_planned"].update(filters={"min_turns": 41}),
     ["synthesize.generators.mi_planned.filters", "min_turns 41", "max_turns 40"]),
    (lambda p: p["synthesize"]["generators"]["mi_planned"].update(turns=[8, 6]),
     ["synthesize.generators.mi_planned.turns", "[8, 6]"]),
    (lambda p: p["llm"]["remote"].update(backoff_base_s=60, backoff_max_s=30), ["llm.remote.backoff_base_s"]),
    (lambda p: p["models"]["gemma3-270m"]["train"].update(warmup_steps=9, max_steps=8),
     ["models.gemma3-270m.train.warmup_steps 9", "max_steps 8"]),
])
def test_a_min_above_its_max_is_refused(params, mutate, names):
    broken = copy.deepcopy(params)
    mutate(broken)
    with pytest.raises(ParamsError) as err:
        validate_params(broken)
    for name in names:
        assert name in str(err.value)


def test_a_duplicated_key_is_refused_with_its_line_and_key_path(tmp_path, repo):
    text = (repo / "params.yaml").read_text(encoding="utf-8")
    text = _replace_once(text, "  max_turns: 200\n", "  max_turns: 200\n  min_turns: 1\n")
    line = text.splitlines().index("  min_turns: 1") + 1
    first = text.splitlines().index("  min_turns: 4                 # dialogs with fewer utterances are dropped "
                                    "(quarantined with a reason)") + 1
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, text))
    message = str(err.value)
    assert f"line {line}: key curate.min_turns is given twice (first on line {first})" in message


def test_a_duplicated_nested_key_in_a_flow_mapping_is_refused(tmp_path, repo):
    text = _replace_once((repo / "params.yaml").read_text(encoding="utf-8"),
                         "options: {text_language: ko}", "options: {text_language: ko, text_language: en}")
    with pytest.raises(ParamsError, match=r"key sources\.kmi\.options\.text_language is given twice"):
        load_params(_write(tmp_path, text))


def test_the_cli_prints_one_line_for_a_duplicated_key(tmp_path, repo):
    text = _replace_once((repo / "params.yaml").read_text(encoding="utf-8"), "  max_turns: 200\n", "  max_turns: 200\n  max_turns: 300\n")
    result = subprocess.run([sys.executable, "-m", "counseltune.cli", "check-params", "--params",
                             str(_write(tmp_path, text))], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("counseltune check-params: error: ") and "curate.max_turns is given twice" in result.stderr


def test_the_snakefile_refuses_a_duplicated_key_too(tmp_path, repo):
    """Snakemake's own configfile loader keeps the last of two equal keys; the Snakefile re-reads with ours."""
    for name in ("Snakefile", "workflow", "schemas", "data", "src"):
        (tmp_path / name).symlink_to(repo / name)
    text = _replace_once((repo / "params.yaml").read_text(encoding="utf-8"), "  max_turns: 200\n",
                         "  max_turns: 200\n  max_turns: 300\n")
    _write(tmp_path, text)
    snakemake = Path(sys.executable).parent / "snakemake"
    result = subprocess.run([str(snakemake), "-n", "--cores", "1", "data"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "key curate.max_turns is given twice" in result.stdout + result.stderr
