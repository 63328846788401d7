"""A stage reads only the params it declares: anything else raises at once, naming the key and the fix."""

from __future__ import annotations

import pytest

from counseltune.stage_params import STAGE_PARAMS, UndeclaredParam, declared_values, stage_view

PARAMS = {"models": {"a": {"train": {"lr": 1.0, "batch_size": 2, "max_len": 8}, "decode": {"t": 0}},
                     "b": {"train": {"lr": 2.0}}},
          "sft": {"languages": ["zh"]}, "synthesize": {"seed": 3, "planner": {}}}


# sft-data as declared before the view caught its undeclared read of train.batch_size
OLD_SFT_DATA = ("models.{model}.train.max_len", "models.{model}.train.packing", "sft", "synthesize.seed")


@pytest.fixture(autouse=True)
def old_sft_data(monkeypatch):
    from counseltune import stage_params

    monkeypatch.setitem(stage_params.STAGE_PARAMS, "old-sft-data", OLD_SFT_DATA)


def test_declared_keys_read_as_they_are_and_parents_list_only_declared_children():
    view = stage_view(PARAMS, "old-sft-data", model="a")
    assert view["models"]["a"]["train"]["max_len"] == 8
    assert view["sft"] == {"languages": ["zh"]}
    assert list(view["models"]) == ["a"] and "b" not in view["models"]
    assert list(view["models"]["a"]["train"]) == ["max_len"]
    assert "models.{model}.train.batch_size" in STAGE_PARAMS["sft-data"]  # declared now


def test_an_undeclared_read_raises_even_through_get():
    view = stage_view(PARAMS, "old-sft-data", model="a")
    with pytest.raises(UndeclaredParam, match=r"models\.a\.train\.batch_size.*STAGE_PARAMS\['old-sft-data'\]"):
        view["models"]["a"]["train"]["batch_size"]  # the padded_batches stat's read that once went undeclared
    with pytest.raises(UndeclaredParam):
        view["models"]["a"]["train"].get("batch_size", 1)
    with pytest.raises(UndeclaredParam):
        view["models"]["b"]


def test_declared_values_are_what_the_engines_compare():
    assert declared_values(PARAMS, "evaluate" if "evaluate" in PARAMS else "plan-behaviors") == {
        "synthesize.planner": {}}
    assert all(isinstance(keys, tuple) for keys in STAGE_PARAMS.values())


def test_the_cli_hands_a_stage_only_its_declared_keys(processed_sample, tmp_path, monkeypatch):
    """A stage whose declaration misses a key it reads fails at once through the CLI (here report-data without
    `curate`), and runs with it: the guard is on in real runs, not only in unit tests."""
    from counseltune import cli, stage_params
    from tests.conftest import REPO

    args = ["report-data", "--params", str(REPO / "params.yaml"), "--ingest-stats", str(processed_sample.parent / "stats"),
            "--processed-dir", str(processed_sample), "--out", str(tmp_path / "report.md"),
            "--figures", str(tmp_path / "figures")]
    monkeypatch.setitem(stage_params.STAGE_PARAMS, "report-data", ("sources",))
    with pytest.raises(UndeclaredParam, match=r"report-data read params key curate"):
        cli.main(args)
    monkeypatch.undo()
    assert cli.main(args) == 0 and (tmp_path / "report.md").exists()


def test_model_names_with_dots_are_one_key():
    params = {"models": {"qwen2.5-7b": {"source": {"hub": "Qwen/Qwen2.5-7B"}, "template": "chatml", "dtype": "bf16"}}}
    assert declared_values(params, "base-model", model="qwen2.5-7b")["models.qwen2.5-7b.source"] == {"hub": "Qwen/Qwen2.5-7B"}
    assert stage_view(params, "base-model", model="qwen2.5-7b")["models"]["qwen2.5-7b"]["dtype"] == "bf16"


def test_a_placeholder_can_name_another_params_key(monkeypatch):
    from counseltune import stage_params

    params = {"llm": {"local": {"model": "smollm2-135m"}}, "models": {"smollm2-135m": {"dtype": "float32"}, "x": {}}}
    monkeypatch.setitem(stage_params.STAGE_PARAMS, "synthesize", ("llm", "models.{llm.local.model}.dtype"))
    assert declared_values(params, "synthesize") == {"llm": params["llm"], "models.smollm2-135m.dtype": "float32"}
    assert stage_params.dvc_params("synthesize") == ["llm", {"models/registry/${llm.local.model}.yaml": ["dtype"]}]
    assert list(stage_view(params, "synthesize")["models"]) == ["smollm2-135m"]
