"""A study's overrides are checked against the schema and written into params.yaml, which both engines read;
the README's study command lines run verbatim through bash (never re-parsed in Python)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from counseltune.config import ParamsError, load_params
from counseltune.study import apply_overrides, apply_study, load_study
from tests.conftest import REPO

STUDY = REPO / "studies" / "mi-study.yaml"
BIN = Path(sys.executable).parent
APPLY = "counseltune study apply studies/mi-study.yaml"
# The README's lines, character for character: a test below checks they are still there.
README_DVC = "counseltune study apply studies/mi-study.yaml && dvc exp run"
README_SNAKEMAKE = "counseltune study apply studies/mi-study.yaml && snakemake --cores 8"
README_SLURM = "counseltune study apply studies/mi-study.yaml && snakemake --workflow-profile workflow/profiles/slurm"


def bash(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_mi_study_is_valid_params(params):
    study = apply_overrides(params, load_study(STUDY))
    assert study["synthesize"]["generators"]["mi_plain"]["n_sessions"] == 2040
    assert study["run"]["models"] == ["baichuan2-7b-chat", "glm-4-9b-chat", "llama-3.1-8b-instruct"]
    assert study["evaluate"]["convention"] == "llamafactory"


def test_the_readme_shows_the_tested_study_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for line in (README_DVC, README_SNAKEMAKE, README_SLURM):
        assert line in readme, line
    assert "study-args" not in readme  # the old `dvc exp run $(...)` form kept the quotes and failed in a shell


def test_apply_writes_exactly_the_study_into_params_and_keeps_the_comments(tmp_path, params):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "studies", tmp_path / "studies")
    result = bash(APPLY, tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_params(tmp_path / "params.yaml") == apply_overrides(params, load_study(STUDY))
    text = (tmp_path / "params.yaml").read_text(encoding="utf-8")
    assert text.startswith("# counseltune parameters: the single config.")
    assert "# which registry entries this run includes" in text or "registry" in text
    again = bash(APPLY, tmp_path)  # idempotent: nothing left to change
    assert again.returncode == 0 and "0 key(s) set" in again.stdout
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == text


def test_a_typo_or_a_bad_value_fails_before_any_run_and_leaves_params_untouched(tmp_path, params):
    with pytest.raises(ParamsError, match="synthesise"):
        apply_overrides(params, {"synthesise.run": ["mi_plain"]})
    with pytest.raises(ParamsError, match="n_sessions"):
        apply_overrides(params, {"synthesize.generators.mi_plain.n_sessions": 0})
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"synthesize.generators.mi_plain.n_sessions": 0}))
    before = (tmp_path / "params.yaml").read_bytes()
    with pytest.raises(ParamsError, match="n_sessions"):
        apply_study(tmp_path / "params.yaml", tmp_path / "bad.yaml")
    assert (tmp_path / "params.yaml").read_bytes() == before
    result = bash("counseltune study apply bad.yaml", tmp_path)
    assert result.returncode != 0 and "n_sessions" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_readme_study_lines_plan_the_study_in_both_engines(tmp_path):
    """The README's lines through bash, in a copy with the corpora where `make full-data` puts them: Snakemake
    plans every stage for the study's three models, and DVC sees the same materialized params."""
    from tests.dag.project import copy_project

    from tests.dag.project import run

    root = copy_project(tmp_path / "clone")
    names = ("CPsyCounD", "CPsyCounE", "AnnoMI", "KMI_prerelease")
    for name in names:  # = make full-data SHARED_RAW=data/sample, then its commit
        shutil.copytree(root / "data/sample" / name, root / "data/raw" / name)
    run([str(BIN / "dvc"), "add", *(f"data/raw/{name}" for name in names)], root)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "data/raw"], root)
    run([*git, "commit", "-qm", "Full corpora"], root)
    plan = bash(README_SNAKEMAKE.replace("--cores 8", "--cores 8 -n"), root)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    for model in ("baichuan2-7b-chat", "glm-4-9b-chat", "llama-3.1-8b-instruct"):
        for rule in ("finetune", "predict", "fidelity", "report_model"):
            assert f"model={model}" in plan.stdout and f"rule {rule}:" in plan.stdout
    # DVC reads the same materialized params: the study's keys are its params diff against HEAD, and its
    # three models' stages are what `dvc exp run` would run (the run itself is the rehearsal's, too big here).
    diff = bash("dvc params diff --json", root)
    changed = yaml.safe_load(diff.stdout)["params.yaml"]
    assert {"run.models", "synthesize.generators.mi_plain.n_sessions", "llm.backend"} <= set(changed)
    status = bash("dvc status --json", root)
    assert status.returncode == 0, status.stderr[-2000:]
    assert {"finetune@baichuan2-7b-chat", "finetune@glm-4-9b-chat"} <= set(yaml.safe_load(status.stdout))


def test_a_dotted_key_finds_model_names_that_hold_dots(params):
    from counseltune.study import split_key

    assert split_key(params, "models.llama-3.1-8b-instruct.decode.max_new_tokens") == [
        "models", "llama-3.1-8b-instruct", "decode", "max_new_tokens"]
    out = apply_overrides(params, {"models.qwen2.5-7b-instruct.decode.max_new_tokens": 7})
    assert out["models"]["qwen2.5-7b-instruct"]["decode"]["max_new_tokens"] == 7


def test_a_models_source_is_replaced_whole_not_merged(params, tmp_path):
    out = apply_overrides(params, {"models.llama-3.1-8b-instruct.source": {"path": "models/x"}})
    assert out["models"]["llama-3.1-8b-instruct"]["source"] == {"path": "models/x"}
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    study = tmp_path / "s.yaml"
    study.write_text("models.llama-3.1-8b-instruct.source: {path: models/x}\n", encoding="utf-8")
    assert apply_study(copy, study) == ["models.llama-3.1-8b-instruct.source"]
    assert load_params(copy)["models"]["llama-3.1-8b-instruct"]["source"] == {"path": "models/x"}
