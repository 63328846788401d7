"""The test SLURM cluster itself: a GPU job gets its (stand-in) GPU, squeue still sees it once finished."""

import time

import pytest

pytestmark = pytest.mark.slow


def test_a_gpu_job_runs_and_stays_visible_to_squeue(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    job_id = slurm_cluster.run(["sbatch", "--parsable", "-p", "gpu", "--gpus=1", "--cpus-per-task=1", "--mem", "500",
                                "-t", "2", "-o", str(out), "--wrap", "echo gpus=$CUDA_VISIBLE_DEVICES"]).stdout.strip()
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = slurm_cluster.run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"], check=False).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.5)
    assert state == "COMPLETED", slurm_cluster.logs()
    assert out.read_text().strip() == "gpus=0"
    (job,) = [j for j in slurm_cluster.jobs() if j["JobId"] == job_id]
    assert job["TresPerJob"] == "gres:gpu:1" and job["Partition"] == "gpu"
