"""The model chain end to end with the smallest settings, in both engines, and which jobs a change re-runs.

Two registry entries share the SmolLM2 base (a 'twin'), so per-model isolation is real but cheap.
"""

import contextlib
import copy
import json
import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.dag.project import (
    HEAVY_FIXTURE_TIMEOUT,
    copy_project,
    dvc,
    dvc_plan,
    snakemake,
    snakemake_pending_jobs,
    sync_registry,
)

# The module's fixtures run the whole tiny model chain in both engines (~10 min idle on 2 cores): its first test
# carries that setup, so it gets a limit far above it; the engine runs themselves are watched for stalls.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(HEAVY_FIXTURE_TIMEOUT)]

A, B = "smollm2-135m-instruct", "smollm2-twin"
PER_MODEL = ("base_model", "sft_data", "finetune", "predict_base", "predict", "evaluate", "fidelity", "report_model")


def tiny(params: dict, models=(A, B)) -> dict:
    params = copy.deepcopy(params)
    params["models"][B] = copy.deepcopy(params["models"][A])
    params["models"]["smollm2-third"] = copy.deepcopy(params["models"][A])
    params["run"]["models"] = list(models)
    for entry in params["models"].values():
        entry["train"].update(max_steps=2, save_every=1, max_len=64, batch_size=2, warmup_steps=0)
        entry["decode"].update(max_new_tokens=4, batch_size=4)
    params["predict"].update(max_dialogs_per_source=1, max_turns_per_dialog=1)
    for generator in params["synthesize"]["generators"].values():
        generator.update(n_sessions=1, turns=[4, 4], max_tokens=16)
    fidelity = params["fidelity"]
    fidelity["judge"].update(max_sessions=1, miti_max_tokens=32, ctrs_max_tokens=32, max_reasks=0)
    fidelity["simulate"].update(limit=1, rounds=1, client_max_tokens=8)
    fidelity["safety"].update(limit=1, answer_max_tokens=8, judge_max_tokens=32)
    fidelity["bootstrap_samples"] = 50
    params["evaluate"]["bootstrap_samples"] = 50
    return params


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")


def tiny_copy(tmp_path_factory, name: str) -> Path:
    root = copy_project(tmp_path_factory.mktemp(name))
    write_params(root, tiny(yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))))
    return root


@contextlib.contextmanager
def changed(root: Path, change):
    """Edit params.yaml for the duration of a check, then restore it byte for byte."""
    path = root / "params.yaml"
    original = path.read_text(encoding="utf-8")
    params = yaml.safe_load(original)
    change(params)
    write_params(root, params)
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")
        if (root / "dvc.lock").exists():
            sync_registry(root)  # dvc_plan wrote the changed entries' registry files: back to the run's


@pytest.fixture(scope="module")
def by_snakemake(tmp_path_factory) -> Path:
    root = tiny_copy(tmp_path_factory, "models-snakemake")
    snakemake(root, "--cores", "2")
    return root


@pytest.fixture(scope="module")
def by_dvc(tmp_path_factory) -> Path:
    root = tiny_copy(tmp_path_factory, "models-dvc")
    dvc(root, "repro")
    return root


def plans(snake_root: Path, dvc_root: Path) -> tuple[set[str], set[str]]:
    return snakemake_pending_jobs(snake_root), dvc_plan(dvc_root)


def chain(model: str, *stages: str) -> set[str]:
    return {f"{stage}@{model}" for stage in stages}


def test_the_chain_writes_adapters_predictions_scores_and_reports(by_snakemake):
    root = by_snakemake
    for model in (A, B):
        assert (root / f"models/adapters/{model}/adapter_config.json").exists()
        assert "licensed clinician" in (root / f"models/adapters/{model}/README.md").read_text(encoding="utf-8")
        for variant in ("base", "finetuned"):
            predictions = pl.read_parquet(root / f"predictions/{model}/{variant}.parquet")
            assert predictions.height > 0 and set(predictions["variant"]) == {variant}
        metrics = json.loads((root / f"metrics/eval/{model}.json").read_text(encoding="utf-8"))
        assert metrics["languages"] and all("paired" in block for block in metrics["languages"].values())
        assert (root / f"reports/{model}/figures/loss.png").exists()
        assert json.loads((root / f"metrics/sft/{model}.json").read_text(encoding="utf-8"))
    comparison = (root / "reports/comparison/report.md").read_text(encoding="utf-8")
    assert f"{A} (fine-tuned)" in comparison and f"{B} (base)" in comparison
    assert snakemake_pending_jobs(root) == set()


def test_dvc_reproduces_the_same_predictions(by_snakemake, by_dvc):
    assert "up to date" in dvc(by_dvc, "status").stdout
    for variant in ("base", "finetuned"):
        a = pl.read_parquet(by_snakemake / f"predictions/{A}/{variant}.parquet")
        b = pl.read_parquet(by_dvc / f"predictions/{A}/{variant}.parquet")
        assert a.equals(b), variant


def test_changing_one_models_learning_rate_reruns_only_its_chain(by_snakemake, by_dvc):
    # model_registry rewrites the registry files DVC reads a model's keys from (only B's changes)
    expected = chain(B, "finetune", "predict", "evaluate", "fidelity", "report_model") | {"report_compare",
                                                                                           "model_registry"}
    bump = lambda p: p["models"][B]["train"].update(lr=1.0e-3)  # noqa: E731
    with changed(by_snakemake, bump), changed(by_dvc, bump):
        snake, dvc_plan = plans(by_snakemake, by_dvc)
    assert snake == expected and dvc_plan == expected


def test_changing_a_decoding_param_does_not_retrain(by_snakemake, by_dvc):
    expected = (chain(B, "predict_base", "predict", "evaluate", "fidelity", "report_model")
                | {"report_compare", "model_registry"})
    longer = lambda p: p["models"][B]["decode"].update(max_new_tokens=6)  # noqa: E731
    with changed(by_snakemake, longer), changed(by_dvc, longer):
        snake, dvc_plan = plans(by_snakemake, by_dvc)
    assert snake == expected and dvc_plan == expected


def test_changing_an_evaluation_param_reruns_only_evaluation_and_reports(by_snakemake, by_dvc):
    expected = chain(A, "evaluate", "report_model") | chain(B, "evaluate", "report_model") | {"report_compare"}
    jieba = lambda p: p["evaluate"].update(rouge_tokenizer="jieba")  # noqa: E731
    with changed(by_snakemake, jieba), changed(by_dvc, jieba):
        snake, dvc_plan = plans(by_snakemake, by_dvc)
    assert snake == expected and dvc_plan == expected


def test_editing_evaluation_code_reruns_only_evaluation_and_reports(by_snakemake, by_dvc):
    expected = chain(A, "evaluate", "report_model") | chain(B, "evaluate", "report_model") | {"report_compare"}
    originals = {}
    for root in (by_snakemake, by_dvc):
        path = root / "src/counseltune/evaluate/run.py"
        originals[path] = (path.read_text(encoding="utf-8"), path.stat())
        path.write_text(originals[path][0] + "\n# an edit\n", encoding="utf-8")
    try:
        snake, dvc_plan = plans(by_snakemake, by_dvc)
    finally:  # restore content and mtime, so later checks see an untouched tree
        for path, (text, stat) in originals.items():
            path.write_text(text, encoding="utf-8")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert snake == expected and dvc_plan == expected


def test_adding_a_model_runs_only_its_chain_and_the_comparison(by_snakemake, by_dvc):
    expected = chain("smollm2-third", *PER_MODEL) | {"report_compare"}
    add = lambda p: p["run"]["models"].append("smollm2-third")  # noqa: E731
    with changed(by_snakemake, add), changed(by_dvc, add):
        snake, dvc_plan = plans(by_snakemake, by_dvc)
    assert snake == expected and dvc_plan == expected


def test_dvc_exp_run_with_an_override_and_metrics_diff(by_dvc):
    # Last in the module: the experiment's results land in the workspace. The DVC way: commit dvc.lock and the
    # (uncached) metrics, then `dvc exp run -S` a model key and compare with `dvc metrics diff`.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    from tests.dag.project import run

    run([*git, "add", "-A"], by_dvc)
    run([*git, "commit", "-qm", "baseline run"], by_dvc)
    out = dvc(by_dvc, "exp", "run", "-S", f"models.{B}.decode.max_new_tokens=6").stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}
    assert ran == (chain(B, "predict_base", "predict", "evaluate", "fidelity", "report_model")
                   | {"report_compare", "model_registry"})
    diff = json.loads(dvc(by_dvc, "metrics", "diff", "--json").stdout)
    assert any(path.endswith(f"metrics/eval/{B}.json") for path in diff)
    assert not any(path.endswith(f"metrics/eval/{A}.json") for path in diff)
    params = json.loads(dvc(by_dvc, "params", "diff", "--json").stdout)["params.yaml"]
    change = params[f"models.{B}.decode.max_new_tokens"]
    assert (change["old"], change["new"]) == (4, 6)
