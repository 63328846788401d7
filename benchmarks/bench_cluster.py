"""Scheduler overhead of the SLURM profile on a real single-node SLURM, and planning time of the full DAG.

1. Planning: `snakemake -n` and `dvc status` over the DAG with every registry model in run.models (7 models, 60+
   jobs), in a fresh copy of the project; best of --repeats. Nothing is built, so both plan every job: this is
   the time to load the workflow and build the DAG (target < 3 s each).
2. Scheduler overhead: the data DAG (ingest per source -> curate -> report_data: 3 levels of short jobs, so
   scheduling dominates) run with `snakemake --cores 2` and then through
   `--workflow-profile workflow/profiles/slurm` on the test cluster of tests/cluster (started here, stopped at
   the end). Overhead per level = (SLURM wall - local wall) / levels (target <= 10 s per level).

    python benchmarks/bench_cluster.py --out benchmarks/RESULTS.md   # as root, where Debian's slurm packages install
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import machine, markers, write_section  # noqa: E402
from tests.cluster.slurm import SlurmCluster  # noqa: E402
from tests.cluster.slurm import ensure_installed  # noqa: E402
from tests.dag.project import copy_project, dvc, snakemake  # noqa: E402

START, END = markers("bench_cluster")
LEVELS = 3  # ingest -> curate -> report_data
TARGET_PLAN_S, TARGET_LEVEL_S = 3.0, 10.0


def log(message: str) -> None:
    print(f"[bench_cluster] {message}", file=sys.stderr, flush=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def planning(tmp: Path, repeats: int) -> dict:
    root = copy_project(tmp / "plan")
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["run"]["models"] = list(params["models"])
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    jobs = snakemake(root, "-n", "--cores", "1", "--quiet", "rules").stdout
    snake = min(timed(lambda: snakemake(root, "-n", "--cores", "1", "--quiet")) for _ in range(repeats))
    status = min(timed(lambda: dvc(root, "status", "--quiet", check=False)) for _ in range(repeats))
    return {"models": len(params["models"]), "snakemake_s": snake, "dvc_s": status, "jobs": jobs.strip()[-400:]}


def overhead(tmp: Path) -> dict:
    local = copy_project(tmp / "local")
    local_s = timed(lambda: snakemake(local, "--cores", "2", "data"))
    ensure_installed()
    cluster = SlurmCluster(Path(tempfile.gettempdir()) / "counseltune-slurm-bench", min_job_age=3600)
    cluster.start()
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ.update({k: cluster.env()[k] for k in saved})
    try:
        remote = copy_project(tmp / "slurm")
        cores = str(cluster.hardware["CPUs"])  # the profile's `cores: 8` is for real nodes; this node has fewer
        slurm_s = timed(lambda: snakemake(remote, "--workflow-profile", "workflow/profiles/slurm", "--cores", cores, "data"))
        jobs = len(cluster.jobs())
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        cluster.stop()
    return {"local_s": local_s, "slurm_s": slurm_s, "levels": LEVELS, "jobs": jobs,
            "per_level_s": (slurm_s - local_s) / LEVELS}


def render(results: dict, command: str) -> str:
    plan, over = results["planning"], results["overhead"]
    m = results["machine"]
    ok = lambda met: "**met**" if met else "**not met**"  # noqa: E731
    return "\n".join([
        START, "## Cluster: SLURM scheduler overhead and DAG planning time", "",
        f"- Date: {m['date']}; {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM; load {m['load']}",
        f"- Command: `{command}`", "",
        f"Planning the full DAG ({plan['models']} registry models in run.models, nothing built): "
        f"`snakemake -n` {plan['snakemake_s']:.2f} s ({ok(plan['snakemake_s'] < TARGET_PLAN_S)}, target < 3 s), "
        f"`dvc status` {plan['dvc_s']:.2f} s ({ok(plan['dvc_s'] < TARGET_PLAN_S)}, target < 3 s); best of the repeats.",
        "",
        f"Scheduler overhead on the data DAG ({over['levels']} levels, {over['jobs']} SLURM jobs): local "
        f"`--cores 2` {over['local_s']:.1f} s, through the SLURM profile {over['slurm_s']:.1f} s: "
        f"**{over['per_level_s']:.1f} s per level** ({ok(over['per_level_s'] <= TARGET_LEVEL_S)}, target <= 10 s; "
        "the profile's own settings: first status check after slurm-init-seconds-before-status-checks, then 10 s "
        "longer each time nothing finished).",
        END, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log("planning ...")
        results = {"planning": planning(Path(tmp), args.repeats)}
        log(f"planning: {results['planning']}")
        log("scheduler overhead (local, then SLURM) ...")
        results["overhead"] = overhead(Path(tmp))
    results["machine"] = machine("snakemake", "dvc", "snakemake-executor-plugin-slurm")
    write_section(args.out, render(results, " ".join(["python benchmarks/bench_cluster.py", *(argv or sys.argv[1:])])),
                  "bench_cluster")
    print(render(results, "bench_cluster"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
