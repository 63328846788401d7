import copy
import subprocess
import sys

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
    assert source_policies(tweaked, "annomi")["same_speaker"] == params["ingest"]["same_speaker"]


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
