"""With a remote LLM backend, nothing builds or loads the local LLM's model: both engines' plans, after
`counseltune study apply` switched the backend (it rewrites dvc.yaml's backend-dependent inputs)."""

from pathlib import Path

import pytest

from tests.dag.project import copy_project, run, snakemake_plan
from tests.dag.test_engines_agree import dvc_jobs, snakemake_jobs

LOCAL_LLM = "models/base/smollm2-135m-instruct"
REMOTE_STUDY = "llm.backend: openai\nrun.models: [gemma3-270m]\n"  # the local LLM (smollm2) is not a run model


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("remote"))
    (root / "remote.yaml").write_text(REMOTE_STUDY, encoding="utf-8")
    out = run(["counseltune", "study", "apply", "remote.yaml"], root).stdout
    assert "dvc.yaml: rewrote synthesize" in out
    return root


def test_no_job_builds_or_reads_the_local_llms_model(remote):
    jobs = snakemake_plan(remote, forceall=True)
    assert not [j["rule"] for j in jobs if LOCAL_LLM in j["output"] or LOCAL_LLM in j["input"]]
    dvc = dvc_jobs(remote)
    assert not [name for name, job in dvc.items() if LOCAL_LLM in job["deps"] | job["outs"]]
    assert "base_model@gemma3-270m" in dvc and "base_model@smollm2-135m-instruct" not in dvc


def test_the_engines_agree_under_the_remote_backend(remote):
    snake, dvc = snakemake_jobs(remote), dvc_jobs(remote)
    assert sorted(snake) == sorted(dvc)
    for name in snake:
        assert snake[name]["cmd"] == dvc[name]["cmd"], name
        assert snake[name]["deps"] == dvc[name]["deps"], name
    fidelity = snake["fidelity@gemma3-270m"]
    assert {"models/base/gemma3-270m", "models/adapters/gemma3-270m"} <= fidelity["deps"]  # its counselor stays
    assert fidelity["cmd"][-2:] == ("--inputs-for-backend", "openai")
