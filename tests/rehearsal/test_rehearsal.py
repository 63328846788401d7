"""The rehearsal (`make rehearse`): the MI study's toy-scale twin, derived from studies/mi-study.yaml, end to end.

Same stages, the same three model families (tiny random-weight stand-ins built here from transformers' config
classes, Baichuan2 through trust_remote_code), the same synthesis/judge/CTRS/safety settings except sizes; the API
is a loopback OpenAI-compatible server (`counseltune rehearsal-api`). It runs through `dvc exp run` with the
README's command line, verbatim in bash, and through Snakemake's SLURM profile on the session's real single-node
SLURM. What it must show (issue 10): every stage ran for all three models, every report section is rated, spend
stays within the budget, an unchanged re-run sends zero requests, `dvc exp show` lists the experiment.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.dag.project import BIN, HEAVY_FIXTURE_TIMEOUT, copy_project, env
from tests.watchdog import run_watched

pytestmark = [pytest.mark.slow, pytest.mark.timeout(HEAVY_FIXTURE_TIMEOUT)]

STUDY = "studies/mi-study.yaml"
TWIN = "studies/mi-study.rehearsal.yaml"
# docs/studies.md's lines, character for character (test_the_docs_show_the_rehearsal_lines checks they are there).
README_TWIN = "counseltune study twin studies/mi-study.yaml --api-url \"$API\" --out studies/mi-study.rehearsal.yaml"
README_DVC = "counseltune study apply studies/mi-study.rehearsal.yaml && dvc exp run"
README_SLURM = ("counseltune study apply studies/mi-study.rehearsal.yaml && "
                "snakemake --workflow-profile workflow/profiles/slurm")
KEY_ENV = "COUNSELTUNE_REHEARSAL_KEY"
MODEL_STAGES = ("base_model", "sft_data", "finetune", "predict_base", "predict", "evaluate",
                "fidelity", "report_model")


class Api:
    """`counseltune rehearsal-api` on a free loopback port; its request log counts what the study would buy."""

    def __init__(self, folder: Path) -> None:
        self.log, ready = folder / "api-requests.jsonl", folder / "api-ready"
        self.proc = subprocess.Popen([str(BIN / "counseltune"), "rehearsal-api", "--port", "0", "--log", str(self.log),
                                      "--ready-file", str(ready)], env=env(), stdout=subprocess.DEVNULL,
                                     stderr=open(folder / "api.err", "w"), start_new_session=True)
        deadline = time.monotonic() + 120
        while not ready.exists() or not ready.read_text().strip():
            assert self.proc.poll() is None, (folder / "api.err").read_text()
            assert time.monotonic() < deadline, "the rehearsal API did not come up in 120 s"
            time.sleep(0.2)
        self.url = ready.read_text().strip()

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bash(line: str, root: Path, log_name: str, extra_env: dict[str, str] | None = None) -> str:
    """A README line through `bash -c`, exactly as written, under the watchdog (a stall fails naming the step)."""
    run_env = {**env(), KEY_ENV: "rehearsal-key-not-a-secret", **(extra_env or {})}
    code, out, _ = run_watched(["bash", "-c", line], root, run_env, root.parent / f"{log_name}.log")
    assert code == 0, f"{line}\nexited {code}:\n{out[-8000:]}"
    return out


def twin_project(tmp_path_factory, name: str) -> tuple[Path, Api, str]:
    root = copy_project(tmp_path_factory.mktemp(name))
    api = Api(root.parent)
    twin_out = bash(README_TWIN, root, "twin", {"API": api.url})
    return root, api, twin_out


@pytest.fixture(scope="module")
def dvc_route(tmp_path_factory):
    root, api, twin_out = twin_project(tmp_path_factory, "rehearsal-dvc")
    try:
        started = time.monotonic()
        out = bash(README_DVC, root, "dvc-exp-run")
        yield {"root": root, "api": api, "twin": twin_out, "out": out, "seconds": time.monotonic() - started}
    finally:
        api.stop()


def params_of(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))


def dvc_stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_the_twin_lists_every_swap_and_keeps_the_study(dvc_route):
    twin = dvc_route["twin"]
    for line in ("models.baichuan2-7b-chat.quantization: 4bit -> none", "models.glm-4-9b-chat.distributed: fsdp -> single",
                 "models.llama-3.1-8b-instruct.source: meta-llama/Llama-3.1-8B-Instruct -> tiny llama3 stand-in",
                 "synthesize.generators.mi_plain.n_sessions: 2040 -> 3 (size)"):
        assert line in twin, twin
    params = params_of(dvc_route["root"])
    assert params["run"]["models"] == ["baichuan2-7b-chat", "glm-4-9b-chat", "llama-3.1-8b-instruct"]
    assert params["llm"]["backend"] == "openai" and params["llm"]["remote"]["model"] == "gpt-4-0613"
    assert params["models"]["baichuan2-7b-chat"]["source"]["trust_remote_code"] is True


def test_every_stage_of_the_study_ran_for_all_three_models(dvc_route):
    ran = dvc_stages_ran(dvc_route["out"])
    for model in params_of(dvc_route["root"])["run"]["models"]:
        for stage in MODEL_STAGES:
            assert f"{stage}@{model}" in ran, (stage, model, sorted(ran))
    assert {"curate", "synthesize@mi_plain", "report_compare"} <= ran, sorted(ran)


def test_every_report_section_is_rated(dvc_route):
    root = dvc_route["root"]
    for model in params_of(root)["run"]["models"]:
        text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((root / "reports" / model).glob("*.md")))
        assert text, f"no report for {model}"
        assert "not rated" not in text, f"{model}: a judged task was not rated"


def test_spend_stays_within_the_budget_and_is_in_the_ledger(dvc_route):
    root, api = dvc_route["root"], dvc_route["api"]
    budget = params_of(root)["llm"]["remote"]["budget_usd"]
    ledger = root / ".cache" / "llm" / "spend.ledger"
    assert ledger.exists() and api.requests(), "the study bought nothing"
    state = json.loads(ledger.read_text(encoding="utf-8"))
    assert 0 < state["spent_usd"] <= budget
    stages = {key.split("|")[0] for key in state["by_stage_model"]}
    assert "synthesize[mi_plain]" in stages and any(s.startswith("fidelity[") for s in stages), stages


def test_an_unchanged_rerun_sends_zero_requests(dvc_route):
    root, api = dvc_route["root"], dvc_route["api"]
    before = len(api.requests())
    out = bash("dvc exp run", root, "dvc-exp-rerun")
    assert not dvc_stages_ran(out), out[-3000:]
    # and re-running the paid stages by force is answered from the LLM cache
    forced = bash("dvc repro --force --single-item synthesize@mi_plain", root, "dvc-force-synthesize")
    assert "synthesize@mi_plain" in dvc_stages_ran(forced)
    assert len(api.requests()) == before


def test_dvc_exp_show_lists_the_experiment(dvc_route):
    out = bash("dvc exp show --no-pager --csv", dvc_route["root"], "dvc-exp-show")
    # an experiment row: its name, its commit, an experiment type (the baseline rows start with an empty name)
    assert re.search(r"^[\w-]+,[0-9a-f]{7},branch_", out, re.MULTILINE), out[:2000]


def test_the_docs_show_the_rehearsal_lines(repo):
    assert "make rehearse" in (repo / "README.md").read_text(encoding="utf-8")
    studies = (repo / "docs" / "studies.md").read_text(encoding="utf-8")
    for line in (README_TWIN, README_DVC):
        assert line in studies, line


# ---- the same study through Snakemake's SLURM profile on the session's real single-node SLURM ------------------
@pytest.fixture(scope="module")
def slurm_route(slurm_cluster, tmp_path_factory):
    """The README's SLURM line verbatim, plus what a one-node test cluster needs (tests/cluster: CPUs capped to
    the node, an early first status check)."""
    from tests.cluster.test_slurm_pipeline import profile_set_resources

    root, api, twin_out = twin_project(tmp_path_factory, "rehearsal-slurm")
    cpus = slurm_cluster.hardware["CPUs"]
    extra = ["--cores", str(cpus), "--slurm-init-seconds-before-status-checks", "5",
             "--set-resources", *profile_set_resources(root, cpus)]
    try:
        started = time.monotonic()
        out = bash(f"{README_SLURM} {' '.join(shlex.quote(a) for a in extra)}", root, "snakemake-slurm")
        yield {"root": root, "api": api, "out": out, "extra": extra, "seconds": time.monotonic() - started,
               "cluster": slurm_cluster}
    finally:
        slurm_cluster.run(["scancel", "--user", "root"], check=False)
        api.stop()


def test_through_slurm_every_job_went_through_sbatch_for_all_three_models(slurm_route):
    from tests.cluster.test_slurm_pipeline import GROUPED, job_stats

    out = slurm_route["out"]
    stats = job_stats(out)
    for stage in MODEL_STAGES:
        assert stats[stage] == 3, (stage, stats)
    submitted = re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", out)
    ungrouped = sum(n for rule, n in stats.items() if rule not in GROUPED and rule != "all")
    assert len(submitted) >= ungrouped + 1, out[-4000:]  # + the grouped data and report jobs
    assert not re.search(r"^localrule (?!all)", out, re.MULTILINE), "a job ran on the submit host"


def test_through_slurm_every_report_section_is_rated_within_the_budget(slurm_route):
    root = slurm_route["root"]
    for model in params_of(root)["run"]["models"]:
        text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((root / "reports" / model).glob("*.md")))
        assert text and "not rated" not in text, model
    state = json.loads((root / ".cache" / "llm" / "spend.ledger").read_text(encoding="utf-8"))
    assert 0 < state["spent_usd"] <= params_of(root)["llm"]["remote"]["budget_usd"]


def test_through_slurm_an_unchanged_rerun_submits_nothing_and_buys_nothing(slurm_route):
    root, api = slurm_route["root"], slurm_route["api"]
    before = len(api.requests())
    out = bash(f"{README_SLURM} {' '.join(shlex.quote(a) for a in slurm_route['extra'])}", root, "snakemake-slurm-rerun")
    assert "Nothing to be done" in out and "has been submitted" not in out, out[-3000:]
    assert len(api.requests()) == before
