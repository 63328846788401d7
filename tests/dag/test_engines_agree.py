"""The Snakefile and dvc.yaml describe the same DAG: same jobs, commands, inputs and outputs."""

import shlex
from pathlib import Path

import pytest
from dvc.repo import Repo

from tests.dag.project import copy_project, job_name, snakemake, snakemake_plan


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("engines"))


def command(cmd: str) -> tuple[str, ...]:
    words = shlex.split(cmd.replace("set -euo pipefail;", "").replace("trap '' TERM;", ""))  # Snakemake-only wrappers
    return tuple(words[: words.index("2>&1")] if "2>&1" in words else words)  # Snakemake's own `2>&1 | tee {log}`


def files_under(root: Path, path: str, outs: set[str]) -> set[str]:
    """A DVC dir dep/out as the files it stands for: files on disk plus other stages' outputs below it."""
    full = root / path
    if full.is_file():
        return {path}
    below = {o for o in outs if o.startswith(path.rstrip("/") + "/")}
    if full.is_dir():
        below |= {p.relative_to(root).as_posix() for p in full.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return below or {path}


def snakemake_jobs(root: Path) -> dict[str, dict]:
    return {
        job_name(job): {"cmd": command(job["shell"]), "outs": set(job["output"]), "deps": set(job["input"])}
        for job in snakemake_plan(root, forceall=True)
    }


def dvc_jobs(root: Path) -> dict[str, dict]:
    stages = list(Repo(str(root)).index.stages)
    outs = {o.def_path for s in stages for o in s.outs}
    jobs = {}
    for stage in stages:
        file_deps = [d.def_path for d in stage.deps if type(d).__name__ != "ParamsDependency"]
        jobs[stage.name] = {
            "cmd": command(stage.cmd),
            "outs": set().union(*(files_under(root, o.def_path, set()) for o in stage.outs)),
            "deps": set().union(*(files_under(root, d, outs) for d in file_deps)),
        }
    return jobs


def test_snakefile_and_dvc_yaml_have_the_same_stages(project):
    snake, dvc = snakemake_jobs(project), dvc_jobs(project)
    assert sorted(snake) == sorted(dvc)


@pytest.mark.parametrize("part", ["cmd", "outs", "deps"])
def test_every_stage_has_the_same_command_outputs_and_inputs(project, part):
    snake, dvc = snakemake_jobs(project), dvc_jobs(project)
    for name in sorted(snake):
        if part == "outs" and name == "report_data":
            # DVC tracks the figures folder as one out; Snakemake names the PNGs in it
            assert {o for o in dvc[name]["outs"] if "figures" not in o} <= snake[name]["outs"]
            continue
        assert snake[name][part] == dvc[name][part], f"{name}: {part} differ"


def test_every_source_file_a_stage_runs_is_an_input(project):
    snake = snakemake_jobs(project)
    for name, job in snake.items():
        code = {d for d in job["deps"] if d.startswith("src/")}
        assert "src/counseltune/cli.py" in code and "src/counseltune/config.py" in code, name
    assert "src/counseltune/ingest/kmi.py" in snake["ingest@kmi"]["deps"]
    assert "src/counseltune/ingest/annomi.py" not in snake["ingest@kmi"]["deps"]


def test_rule_all_requests_every_intermediate_output(project):
    jobs = snakemake_plan(project, forceall=True, include_all=True)
    requested = set(next(j for j in jobs if j["rule"] == "all")["input"])
    produced = {o for j in jobs if j["rule"] != "all" for o in j["output"]}
    assert produced == requested


def test_snakemake_lint_has_only_the_justified_warning(project):
    # README "Lint" explains the one remaining lint: rules run in the project's venv, not per-rule conda envs.
    result = snakemake(project, "--lint", check=False)
    output = result.stdout + result.stderr
    lints = [line.strip() for line in output.splitlines() if line.strip().startswith("* ")]
    assert lints and set(lints) == {"* Specify a conda environment or container for each rule.:"}, output
