"""Code deps come from imports: both engines declare, for every stage, the import closure of what its command
runs, and a missed file (the drifts that once shipped) is caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from counseltune.codedeps import CodeTree
from tests.conftest import REPO


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    """The code-bearing part of the project, to edit freely."""
    for name in ("src", "schemas"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "dvc.yaml", "params.yaml"):  # params: the LLM stages' inputs follow llm.backend
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_dvc_yaml_declares_exactly_each_stages_import_closure():
    assert CodeTree(REPO).sync_dvc_yaml(write=False) == []


def test_the_drifts_that_once_shipped_are_in_the_closure():
    tree = CodeTree(REPO)
    assert "src/counseltune/train/render.py" in tree.stage_code("finetune")  # packing.py imports it
    assert "src/counseltune/fidelity/simulated_client/intake.py" in tree.stage_code("fidelity")  # the simulated client's intake
    assert "schemas/params.schema.yaml" in tree.stage_code("finetune")  # config.py loads it by package name
    assert "src/counseltune/fidelity/data/crisis_probes.jsonl" in tree.stage_code("fidelity")  # package data


def test_editing_the_predict_stage_does_not_rerun_the_stages_of_other_branches():
    """Generation lives in models/generate.py: the local LLM client (synthesis, judges, simulated sessions) and the
    model server no longer take it from predict.py, so editing predict.py re-runs only the predict stage."""
    tree = CodeTree(REPO)
    for command in ("synthesize", "judge-validation", "fidelity", "serve"):
        assert "src/counseltune/predict.py" not in tree.stage_code(command), command
        assert "src/counseltune/models/generate.py" in tree.stage_code(command), command
    assert "src/counseltune/predict.py" in tree.stage_code("predict")


def test_a_dvc_yaml_missing_an_imported_file_is_reported_and_rewritten(tree_copy):
    dvc_yaml = tree_copy / "dvc.yaml"
    text = dvc_yaml.read_text(encoding="utf-8")
    line = "- src/counseltune/train/render.py\n"
    at = text.index(line, text.index("\n  finetune:"))  # the finetune stage's entry only
    start = text.rindex("\n", 0, at) + 1
    dvc_yaml.write_text(text[:start] + text[at + len(line):], encoding="utf-8")
    drift = CodeTree(tree_copy).sync_dvc_yaml(write=False)
    assert len(drift) == 1 and drift[0].startswith("finetune: missing ['src/counseltune/train/render.py']")
    CodeTree(tree_copy).sync_dvc_yaml(write=True)
    assert CodeTree(tree_copy).sync_dvc_yaml(write=False) == []


def test_a_new_import_becomes_a_dependency_of_the_stages_that_reach_it(tree_copy):
    tree = CodeTree(tree_copy)
    assert "src/counseltune/text.py" not in tree.stage_code("finetune")
    checkpoint = tree_copy / "src/counseltune/train/checkpoint.py"
    checkpoint.write_text(checkpoint.read_text(encoding="utf-8") + "\n\ndef _later():\n    from counseltune import text\n",
                          encoding="utf-8")
    assert "src/counseltune/text.py" in CodeTree(tree_copy).stage_code("finetune")
    assert CodeTree(tree_copy).sync_dvc_yaml(write=False)  # dvc.yaml is now behind: the test above would fail


def test_ingest_jobs_get_their_own_format_and_what_any_format_imports():
    tree = CodeTree(REPO)
    kmi = tree.ingest_code("kmi")
    assert "src/counseltune/ingest/kmi.py" in kmi and "src/counseltune/ingest/annomi.py" not in kmi
    assert "src/counseltune/ingest/run.py" in kmi


def test_every_command_the_engines_call_is_a_cli_stage():
    commands = CodeTree(REPO).stage_commands()
    for name in ("ingest", "curate", "finetune", "predict", "fidelity", "judge-validation", "report-compare"):
        assert name in commands


def test_the_llm_stages_inputs_follow_the_backend_of_params_yaml(tree_copy):
    params = tree_copy / "params.yaml"
    before = set(CodeTree(tree_copy).sync_dvc_yaml(write=False))  # none in a synced tree
    params.write_text(params.read_text(encoding="utf-8").replace("  backend: local ", "  backend: openai "),
                      encoding="utf-8")
    drift = set(CodeTree(tree_copy).sync_dvc_yaml(write=False)) - before
    assert {line.split(":")[0] for line in drift} == {"synthesize", "judge_validation", "fidelity"}
    CodeTree(tree_copy).sync_dvc_yaml(write=True)
    text = (tree_copy / "dvc.yaml").read_text(encoding="utf-8")
    assert "models/base/${llm.local.model}" not in text and text.count("--inputs-for-backend openai") == 3
    assert CodeTree(tree_copy).sync_dvc_yaml(write=False) == []
