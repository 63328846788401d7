"""DVC tracks a model's keys in its registry file, so model names with dots work and a change to one model re-runs
only that model's stages: a real `dvc repro` in a tiny DVC project with the declarations dvc.yaml is written from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from counseltune.codedeps import params_set
from counseltune.models.registry_files import write_registry
from counseltune.stage_params import dvc_params
from tests.conftest import REPO
from tests.dag.project import dvc_plan

BIN = Path(sys.executable).parent
MODELS = ["smollm2-135m-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]


def dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def repro(root: Path) -> set[str]:
    return {line.split("'")[1] for line in dvc(root, "repro").splitlines() if line.startswith("Running stage '")}


def tiny_project(root: Path) -> Path:
    """params.yaml of this project (three models, two with dots) and two stages as dvc.yaml declares them: the
    registry files, and a per-model stage declaring predict's model keys."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["run"]["models"] = MODELS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    per_model = [p for p in dvc_params("predict") if isinstance(p, dict) or "${item}" in p]
    stages = {
        "model_registry": {"cmd": "counseltune model-registry --out models/registry", "params": dvc_params("model-registry"),
                           "outs": ["models/registry"]},
        "predict": {"foreach": "${run.models}", "do": {"cmd": "mkdir -p out && echo ${item} > out/${item}.txt",
                                                         "params": per_model, "outs": ["out/${item}.txt"]}},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8")
    dvc(root, "init", "--no-scm", "-q")
    return root


def edit(root: Path, change) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(params["models"])
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def test_dvc_runs_models_with_dots_and_reruns_only_the_changed_model(tmp_path):
    root = tiny_project(tmp_path)
    assert repro(root) == {"model_registry", *(f"predict@{m}" for m in MODELS)}
    assert repro(root) == set()  # nothing changed: nothing runs
    edit(root, lambda models: models["llama-3.1-8b-instruct"]["decode"].update(max_new_tokens=7))
    assert dvc_plan(root) == {"model_registry", "predict@llama-3.1-8b-instruct"}  # the DAG tests' planner agrees
    assert repro(root) == {"model_registry", "predict@llama-3.1-8b-instruct"}
    edit(root, lambda models: models["qwen2.5-7b-instruct"]["train"].update(lr=1.0e-5))  # a key predict does not read
    assert dvc_plan(root) == {"model_registry"}
    assert repro(root) == {"model_registry"}


def test_the_registry_files_hold_each_entry_and_nothing_stale(tmp_path):
    models = {"a.b-1": {"decode": {"t": 0}, "source": {"hub": "x/y"}}, "c": {"decode": {"t": 1}}}
    write_registry(models, tmp_path)
    (tmp_path / "gone.yaml").write_text("{}\n", encoding="utf-8")
    write_registry(models, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.b-1.yaml", "c.yaml"]
    assert yaml.safe_load((tmp_path / "a.b-1.yaml").read_text(encoding="utf-8")) == models["a.b-1"]


def test_a_models_keys_are_declared_in_its_registry_file():
    assert dvc_params("predict") == ["predict", {"models/registry/${item}.yaml": ["decode", "dtype", "quantization",
                                                                                   "source"]}]
    assert dvc_params("report-model") == [{"models/registry/${item}.yaml": None}]  # the whole entry
    assert params_set(dvc_params("report-model")) == {("models/registry/${item}.yaml", None)}
    assert params_set(["a", {"f.yaml": ["b"]}]) == {("params.yaml", "a"), ("f.yaml", "b")}
