"""A throw-away copy of this project in a temp dir, with helpers to run Snakemake, DVC and the CLI in it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.watchdog import run_watched

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A run's uncached outputs are not gitignored (they get committed with dvc.lock): never copy this tree's own.
RUN_OUTPUTS = ("metrics/", "dvc.lock")


def copy_project(dest: Path) -> Path:
    """Copy the files git knows (tracked, plus new ones not ignored) into dest and make it a git+DVC repo."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if name.startswith(RUN_OUTPUTS):
            continue
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


# pytest-timeout's limit for a test whose module fixture runs a whole pipeline (the suite-wide 900 s guards
# ordinary tests): ~5x the idle time of the largest such setup, so a loaded machine is slow, not red.
HEAVY_FIXTURE_TIMEOUT = 3600

# The trees of one test session share their converted base models (models/build_cache.py): the first tree
# converts the wheel for real, the others restore the verified folder instead of converting it again.
BASE_CACHE = Path(os.environ.get("COUNSELTUNE_BASE_CACHE") or Path(tempfile.gettempdir()) / f"counseltune-base-{os.getpid()}")
if "COUNSELTUNE_BASE_CACHE" not in os.environ:  # ours alone: gone with the test session
    atexit.register(shutil.rmtree, BASE_CACHE, True)


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
            "DVC_NO_ANALYTICS": "1", "PYTHONDONTWRITEBYTECODE": "1", "COUNSELTUNE_BASE_CACHE": str(BASE_CACHE)}


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run cmd in cwd under the watchdog (tests/watchdog.py): a hang fails with the step that was running; a
    slow machine only takes longer."""
    with tempfile.TemporaryDirectory(prefix="cmd-") as logs:
        code, out, err = run_watched(cmd, cwd, env(), Path(logs) / "stdout.log", stderr_log=Path(logs) / "stderr.log")
    result = subprocess.CompletedProcess(cmd, code, out, err)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd, check)


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check)


def snakemake_plan(cwd: Path, forceall: bool = False, include_all: bool = False, target: str = "all") -> list[dict]:
    """The jobs of a Snakemake dry run: rule, inputs, outputs, wildcards and shell command of each.

    (`--detailed-summary` shows inputs and commands only from an earlier run's metadata, so a fresh tree
    needs the dry run.)
    """
    args = ["-n", "-p", "--cores", "1", target] + (["--forceall"] if forceall else [])
    result = snakemake(cwd, *args)
    jobs, job = [], None
    for raw in (result.stdout + "\n" + result.stderr).splitlines():
        line = raw.strip()  # a grouped job's block is indented one level deeper (rules with `group:`)
        if (line.startswith("rule ") or line.startswith("localrule ")) and line.endswith(":"):
            job = {"rule": line.split(" ", 1)[1][:-1], "input": [], "output": [], "wildcards": {}, "shell": ""}
            jobs.append(job)
        elif job is not None and line.startswith("input: "):
            job["input"] = line[len("input: "):].split(", ")
        elif job is not None and line.startswith("output: "):
            job["output"] = line[len("output: "):].split(", ")
        elif job is not None and line.startswith("wildcards: "):
            job["wildcards"] = dict(kv.split("=", 1) for kv in line[len("wildcards: "):].split(", "))
        elif job is not None and line.startswith("Shell command: "):
            job["shell"] = line[len("Shell command: "):]
    return [j for j in jobs if include_all or j["rule"] not in ("all", "data")]


def snakemake_pending_jobs(cwd: Path, target: str = "all") -> set[str]:
    """Jobs Snakemake would run now for a target, named like DVC stages: 'ingest@kmi', 'curate', ..."""
    return {job_name(j) for j in snakemake_plan(cwd, target=target)}


def job_name(job: dict) -> str:
    """A Snakemake job named as DVC names the stage: foreach stages are '<rule>@<item>'."""
    if job["wildcards"]:
        return f"{job['rule']}@{'_'.join(job['wildcards'].values())}"
    return job["rule"]


def dvc_repro_ran(cwd: Path, *args: str) -> set[str]:
    """Run `dvc repro` and return the stages it actually ran (not the ones it skipped)."""
    out = dvc(cwd, "repro", *args).stdout
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def dvc_plan(cwd: Path) -> set[str]:
    """The stages `dvc repro` would run now: those `dvc status` reports changed, plus everything downstream.

    (`dvc repro --dry` does not follow a change downstream, and fails on stages whose inputs do not exist yet.)
    model_registry writes the params files DVC reads each model's keys from: `dvc repro` runs it first and then
    re-runs only the model stages whose file changed, so its files are brought up to date here first (sync_registry)
    and `dvc status` names those stages itself; nothing else is downstream of it.
    """
    import json

    import networkx as nx
    from dvc.repo import Repo

    sync_registry(cwd)
    status = json.loads(dvc(cwd, "status", "--json").stdout or "{}")
    changed = {name.split(":")[-1] for name in status}
    graph = Repo(str(cwd)).index.graph  # edges point from a stage to the stages it depends on
    by_name = {stage.name: stage for stage in graph.nodes}
    downstream = {s.name for name in changed if name in by_name and name != "model_registry"
                  for s in nx.ancestors(graph, by_name[name])}
    return changed | downstream


def sync_registry(cwd: Path) -> None:
    """Rewrite models/registry from params.yaml, as the model_registry stage would (same bytes for an entry that did
    not change), if a run made it."""
    if (cwd / "models/registry").is_dir():
        run([str(BIN / "counseltune"), "model-registry", "--out", "models/registry"], cwd)
