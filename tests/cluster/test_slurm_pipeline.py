"""The pipeline through the SLURM profile on a real (single-node) SLURM: every job via sbatch, GPU rules with a GPU,
and the same outputs as a local `--cores 2` run.

One tiny model (test_model_pipeline's smallest settings, synthetic sessions included) with `resources.gpus: 1`, so finetune, predict_base and
predict request a GPU (the test node has one stand-in gpu; torch is the CPU build and ignores it). Targets: both
prediction tables, i.e. ingest (every source) -> curate -> plan_behaviors/synthesize -> base_model -> sft_data ->
finetune -> predict_base/predict.

Command-line overrides of the profile, and why:
- `--set-resources`: the profile's own entries, with cpus_per_task capped at the test node's CPUs (a CLI
  --set-resources replaces the profile's whole list, so all of it is passed, partitions included).
- `--slurm-init-seconds-before-status-checks 5`: the first status check sooner, for a short test (MinJobAge on the
  test cluster is 3600 s, far above the plugin's 3 x 5 s threshold, so it keeps squeue).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.dag.project import BIN, copy_project, env, snakemake
from tests.watchdog import run_watched
from tests.dag.test_model_pipeline import tiny, write_params

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

A = "smollm2-135m-instruct"
TARGETS = [f"predictions/{A}/base.parquet", f"predictions/{A}/finetuned.parquet"]
GPU_RULES = {"finetune", "predict_base", "predict"}
CHAIN = {"ingest", "curate", "base_model", "sft_data", "finetune", "predict_base", "predict"}
PROFILE = "workflow/profiles/slurm"
SLURM_TIMEOUT = 2700  # seconds for the whole SLURM run; the plugin waits forever if its status command fails
LOCAL_TIMEOUT = 1800


MAX_STEPS = 12  # enough steps for the preemption test to signal a finetune mid-run


def slurm_params(params: dict) -> dict:
    params = tiny(params, models=(A,))
    params["models"][A]["resources"]["gpus"] = 1
    # save_every > max_steps: the only checkpoint before the last step is the one a SIGTERM makes
    params["models"][A]["train"].update(max_steps=MAX_STEPS, save_every=100)
    return params


def project(tmp_path_factory, name: str) -> Path:
    root = copy_project(tmp_path_factory.mktemp(name))
    write_params(root, slurm_params(yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))))
    return root


def run_with_deadline(cmd: list[str], cwd: Path, timeout: float, log: Path, on_timeout=None,
                      while_running=None) -> tuple[int, str]:
    """Run cmd (output to log) in its own process group under the watchdog: a stall, or a run past the
    timeout cap, kills the group and fails naming the step. while_running(proc) is called every second."""
    code, output, _ = run_watched(cmd, cwd, env(), log, limit_s=timeout, on_timeout=on_timeout,
                                  while_running=while_running)
    return code, output


def job_stats(output: str) -> Counter:
    """Snakemake's 'Job stats' table (the first one in the output) as rule -> count."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    counts = Counter()
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def profile_set_resources(root: Path, max_cpus: int) -> list[str]:
    """The profile's set-resources as CLI arguments, cpus_per_task capped at the test node's CPUs."""
    profile = yaml.safe_load((root / PROFILE / "config.yaml").read_text(encoding="utf-8"))
    args = []
    for rule, resources in profile.get("set-resources", {}).items():
        for key, value in resources.items():
            if key == "cpus_per_task" and int(value) > 0:  # -1: SLURM's default (grouped rules)
                value = min(int(value), max_cpus)
            args.append(f"{rule}:{key}={value}")
    return args


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    root = project(tmp_path_factory, "slurm-local")
    code, output = run_with_deadline([str(BIN / "snakemake"), "--cores", "2", *TARGETS], root, LOCAL_TIMEOUT,
                                     root.parent / "snakemake-local.log")
    assert code == 0, output[-6000:]
    return root


def slurm_snakemake(cluster, root: Path, targets: list[str], log: Path, while_running=None) -> dict:
    """Run targets through the SLURM profile; the output, this run's SLURM id and slurmctld's records of its jobs."""
    cmd = [str(BIN / "snakemake"), "--workflow-profile", PROFILE, "--verbose", "--cores", str(cluster.hardware["CPUs"]),
           "--slurm-init-seconds-before-status-checks", "5",
           "--set-resources", *profile_set_resources(root, cluster.hardware["CPUs"]), "--", *targets]

    def cancel():  # nothing of a failed run may keep running on the cluster
        cluster.run(["scancel", "--user", "root"], check=False)

    code, output = run_with_deadline(cmd, root, SLURM_TIMEOUT, log, cancel, while_running)
    assert code == 0, output[-8000:] + "\n" + cluster.logs()
    run_id = run_id_of(output)
    jobs = [j for j in cluster.jobs() if j.get("JobName") == run_id]
    return {"root": root, "output": output, "jobs": jobs, "run_id": run_id}


def run_id_of(output: str) -> str | None:
    found = re.search(r"SLURM run ID: (\S+)", output)
    return found.group(1) if found else None


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, local_run, tmp_path_factory) -> dict:
    """The same targets through the SLURM profile (run after the local one: two runs at once thrash 2 cores)."""
    root = project(tmp_path_factory, "slurm-cluster")
    plan = job_stats(snakemake(root, "-n", "--cores", "1", *TARGETS).stdout)
    run = slurm_snakemake(slurm_cluster, root, TARGETS, root.parent / "snakemake-slurm.log")
    return {**run, "plan": plan}


GROUPED = {"ingest": "data", "curate": "data", "report_data": "data", "report_model": "reports",
           "report_compare": "reports"}  # the rules' `group:`; a group is one SLURM job


def rule_of(job: dict) -> str:
    """The rule (or group) of a SLURM job, from the comment the plugin sets: rule_<name>[_wildcards_<values>], or
    rule_<group>_<its rules> for a group job."""
    name = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
    group = name.split("_", 1)[0]
    return group if group in set(GROUPED.values()) else name


def slurm_jobs_planned(plan: Counter) -> Counter:
    """One SLURM job per ungrouped job, one per group (each group is one connected part of the DAG here)."""
    expected = Counter({rule: n for rule, n in plan.items() if rule not in GROUPED})
    expected.update({GROUPED[rule] for rule in plan if rule in GROUPED})
    return expected


def test_the_plan_holds_the_chain(slurm_run):
    plan = slurm_run["plan"]
    assert CHAIN <= set(plan) and plan["ingest"] >= 2, plan
    assert all(plan[rule] == 1 for rule in CHAIN - {"ingest"}), plan


def test_every_job_went_through_sbatch(slurm_run, slurm_cluster):
    output, plan, jobs = slurm_run["output"], slurm_run["plan"], slurm_run["jobs"]
    submitted = re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", output)
    expected = slurm_jobs_planned(plan)
    assert expected["data"] == 1 and sum(expected.values()) < sum(plan.values())  # the data stages went as one job
    assert len(submitted) == sum(expected.values()), output[-4000:]
    assert not re.search(r"^localrule ", output, re.MULTILINE), "a job ran on the submit host"
    # slurmctld's record of each submitted job: this run's, completed, exit 0, one per planned job
    by_id = {j["JobId"]: j for j in jobs}
    assert set(by_id) == {slurm_id for _, slurm_id, _ in submitted}
    assert Counter(rule_of(j) for j in jobs) == expected
    for job in jobs:
        assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), job
    # and the plugin's per-job log (slurm-keep-successful-logs) is where it said
    for _, slurm_id, log in submitted:
        assert Path(log).is_file() and Path(log).name == f"{slurm_id}.log"
        assert "/.snakemake/slurm_logs/rule_" in log or "/.snakemake/slurm_logs/group_" in log


def test_gpu_rules_requested_a_gpu_and_cpu_rules_did_not(slurm_run):
    output, jobs = slurm_run["output"], slurm_run["jobs"]
    calls = re.findall(r"sbatch call: (sbatch .*)", output)
    assert len(calls) == len(jobs)
    for job in jobs:
        rule = rule_of(job)
        (call,) = [c for c in calls if f"--comment {job['Comment']} " in c or f"--comment '{job['Comment']}' " in c]
        if rule in GPU_RULES:
            assert "--gpus=1" in call, call
            assert job.get("TresPerJob") == "gres:gpu:1" and job["Partition"] == "gpu", job
        else:
            assert "--gpus" not in call and "--gres" not in call, call
            assert "gpu" not in job.get("TresPerJob", "") and job["Partition"] == "cpu", job
        assert int(job["NumCPUs"]) <= 2 and job["MinMemoryNode"].endswith("M")


def parquet_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for d in ("data/interim", "data/processed", f"predictions/{A}")
                  for p in (root / d).rglob("*.parquet"))


def test_outputs_equal_a_local_run(slurm_run, local_run):
    root = slurm_run["root"]
    tables = parquet_files(local_run)
    assert tables == parquet_files(root) and len(tables) >= 3 * 2 + 3 + 2
    for name in tables:
        assert pl.read_parquet(local_run / name).equals(pl.read_parquet(root / name)), name
    for name in [f"metrics/sft/{A}.json", "metrics/curate.json"]:
        assert json.loads((local_run / name).read_text()) == json.loads((root / name).read_text()), name


def test_finetune_metrics_and_adapter_match_a_local_run(slurm_run, local_run):
    root = slurm_run["root"]
    local = json.loads((local_run / f"metrics/train/{A}.json").read_text())
    remote = json.loads((root / f"metrics/train/{A}.json").read_text())
    for key in ("steps", "tokens_seen", "trainable_params", "total_params", "resumed_from_step", "device"):
        assert local[key] == remote[key], key
    for key in ("final_train_loss", "val_loss"):
        if local[key] is None:
            assert remote[key] is None, key
        else:
            assert math.isclose(local[key], remote[key], rel_tol=1e-4, abs_tol=1e-6), (key, local[key], remote[key])
    assert_same_adapter(local_run, root)


def assert_same_adapter(a_root: Path, b_root: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    a = load_file(a_root / f"models/adapters/{A}/adapter_model.safetensors")
    b = load_file(b_root / f"models/adapters/{A}/adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


# -- preemption: scancel --signal=TERM of a running finetune -----------------------------------------------------

STEP = re.compile(rf"(\d+)/{MAX_STEPS} \[")


@pytest.fixture(scope="module")
def preempted_run(slurm_cluster, local_run, tmp_path_factory) -> dict:
    """The fine-tune through SLURM, sent SIGTERM (as on preemption) once it has trained a few steps."""
    root = project(tmp_path_factory, "slurm-preempt")
    # the upstream stages are not the subject here: run them locally
    snakemake(root, "--cores", "2", f"data/sft/{A}", f"metrics/sft/{A}.json", f"models/base/{A}")
    log = root.parent / "snakemake-preempt.log"
    signalled: dict = {}

    def signal_once_training(_proc) -> None:
        if signalled:
            return
        run_id = run_id_of(log.read_text(encoding="utf-8", errors="replace"))
        running = [j for j in slurm_cluster.jobs() if j.get("JobName") == run_id and j["JobState"] == "RUNNING"
                   and j["Comment"].startswith("rule_finetune")]
        train_log = root / f"logs/finetune/{A}.log"
        if not running or not train_log.exists():
            return
        steps = [int(n) for n in STEP.findall(train_log.read_text(encoding="utf-8", errors="replace"))]
        if steps and 2 <= max(steps) <= MAX_STEPS - 3:
            slurm_cluster.run(["scancel", "--signal=TERM", running[0]["JobId"]])
            signalled.update(job=running[0]["JobId"], step=max(steps))

    run = slurm_snakemake(slurm_cluster, root, [f"metrics/train/{A}.json"], log, signal_once_training)
    return {**run, "signalled": signalled}


def test_a_preempted_finetune_checkpoints_exits_143_and_is_retried(preempted_run, local_run):
    run, signalled = preempted_run, preempted_run["signalled"]
    assert signalled, f"the finetune job was never seen running between steps 2 and {MAX_STEPS - 3}"
    finetunes = sorted((j for j in run["jobs"] if j["Comment"].startswith("rule_finetune")), key=lambda j: int(j["JobId"]))
    assert len(finetunes) == 2 and finetunes[0]["JobId"] == signalled["job"], finetunes
    first, retry = finetunes
    assert first["JobState"] == "FAILED" and retry["JobState"] == "COMPLETED", (first, retry)
    first_log = next((run["root"] / ".snakemake/slurm_logs/rule_finetune").rglob(f"{first['JobId']}.log"))
    assert "exit status 143" in first_log.read_text(encoding="utf-8", errors="replace")
    metrics = json.loads((run["root"] / f"metrics/train/{A}.json").read_text())
    # save_every > max_steps: a resume point before the last step can only be the checkpoint the SIGTERM wrote
    assert signalled["step"] <= metrics["resumed_from_step"] < MAX_STEPS and metrics["steps"] == MAX_STEPS
    local = json.loads((local_run / f"metrics/train/{A}.json").read_text())
    assert local["resumed_from_step"] == 0
    assert math.isclose(local["final_train_loss"], metrics["final_train_loss"], rel_tol=1e-4, abs_tol=1e-6)
    assert_same_adapter(local_run, run["root"])
