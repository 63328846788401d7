"""A study's overrides are checked against the schema and become `dvc exp run -S` flags that DVC's own parser
applies to params.yaml with exactly the values of the study."""

from __future__ import annotations

import shlex
import shutil

import pytest
import yaml

from counseltune.config import ParamsError, load_params
from counseltune.study import apply_overrides, load_study, set_param_flags, study_args
from tests.conftest import REPO

STUDY = REPO / "studies" / "mi-study.yaml"


def test_the_mi_study_is_valid_params(params):
    study = apply_overrides(params, load_study(STUDY))
    assert study["synthesize"]["generators"]["mi_plain"]["n_sessions"] == 2040
    assert study["run"]["models"] == ["baichuan2-7b-chat", "glm-4-9b-chat", "llama-3.1-8b-instruct"]
    assert study["evaluate"]["convention"] == "llamafactory"


def test_dvc_applies_the_printed_flags_to_the_same_params(params, tmp_path):
    from dvc.utils.hydra import apply_overrides as dvc_apply

    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    flags = shlex.split(study_args(params, STUDY))
    dvc_apply(target, [value for flag, value in zip(flags[::2], flags[1::2]) if flag == "-S"])
    assert yaml.safe_load(target.read_text(encoding="utf-8")) == apply_overrides(params, load_study(STUDY))
    load_params(target)


def test_a_typo_or_a_bad_value_fails_before_any_run(params):
    with pytest.raises(ParamsError, match="synthesise"):
        apply_overrides(params, {"synthesise.run": ["mi_plain"]})
    with pytest.raises(ParamsError, match="n_sessions"):
        apply_overrides(params, {"synthesize.generators.mi_plain.n_sessions": 0})


def test_strings_that_look_like_other_types_stay_strings_and_new_keys_are_added():
    params = {"a": {"b": 1, "c": 2, "d": {"e": 3}}}
    assert set_param_flags(params, {"a.b": "null", "a.c": "x y", "a.d": {"e": None, "f": [1, "g"]}}) == [
        "-S", "a.b='null'", "-S", "a.c='x y'", "-S", "a.d.e=null", "-S", "+a.d.f=[1,g]"]
