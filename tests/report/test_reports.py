"""evaluate -> per-model report -> comparison report, on small real parquet predictions (no model needed)."""

import copy
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from counseltune.evaluate.run import evaluate_model
from counseltune.report.compare import write_comparison
from counseltune.report.model_report import write_model_report

REFS = {
    "zh": ["听起来你最近压力很大，能多说说吗？", "你觉得是什么让你睡不着？", "我们一起想想可以做些什么。", "这种感觉持续多久了？"],
    "en": ["It sounds like work has been really stressful.", "What would you like to change?",
           "You are worried about your drinking.", "How important is this to you?"],
}


def predictions(model: str, variant: str, quality: float) -> pl.DataFrame:
    rows = []
    for language, refs in REFS.items():
        for i, ref in enumerate(refs * 3):
            hyp = ref if (i % 10) < quality * 10 else ref[: len(ref) // 3]
            rows.append({"model": model, "variant": variant, "dialog_id": f"{language}:d{i // 2}", "turn_index": 1 + 2 * (i % 2),
                         "source": "toy", "language": language, "reference": ref, "hypothesis": hyp,
                         "prompt_tokens": 10, "new_tokens": 5})
    return pl.DataFrame(rows)


@pytest.fixture
def run(tmp_path, params):
    params = copy.deepcopy(params)
    params["evaluate"]["bootstrap_samples"] = 200
    params["run"]["models"] = ["smollm2-135m-instruct", "gemma3-270m"]
    for model, quality in (("smollm2-135m-instruct", 0.7), ("gemma3-270m", 0.4)):
        pred = tmp_path / "predictions" / model
        pred.mkdir(parents=True)
        predictions(model, "base", 0.1).write_parquet(pred / "base.parquet")
        predictions(model, "finetuned", quality).write_parquet(pred / "finetuned.parquet")
        evaluate_model(params, model, pred, tmp_path / "scores" / f"{model}.parquet", tmp_path / "eval" / f"{model}.json")
    return tmp_path, params


def test_metrics_have_cis_and_a_paired_test_per_language(run):
    root, _ = run
    metrics = json.loads((root / "eval/smollm2-135m-instruct.json").read_text())
    zh = metrics["languages"]["zh"]
    assert zh["n_items"] == 12
    for variant in ("base", "finetuned"):
        for metric in ("bleu4", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "length_chars"):
            ci = zh["variants"][variant][metric]
            assert ci["low"] <= ci["estimate"] <= ci["high"]
    assert zh["variants"]["finetuned"]["rougeL"]["estimate"] > zh["variants"]["base"]["rougeL"]["estimate"]
    paired = zh["paired"]["rougeL"]
    assert paired["difference"] > 0 and paired["p_holm"] >= paired["p_value"] and "permutation" in paired["test"]
    assert "standard" in metrics["convention"]


def test_identical_chinese_predictions_score_one(run, tmp_path, params):
    pred = tmp_path / "same"
    pred.mkdir()
    df = predictions("m", "base", 1.0).filter(pl.col("language") == "zh")
    df.write_parquet(pred / "base.parquet")
    df.with_columns(pl.lit("finetuned").alias("variant")).write_parquet(pred / "finetuned.parquet")
    metrics = evaluate_model(params, "m", pred, tmp_path / "s.parquet", tmp_path / "m.json")
    assert metrics["languages"]["zh"]["variants"]["finetuned"]["rougeL"]["estimate"] == pytest.approx(1.0)
    assert metrics["languages"]["zh"]["paired"]["rougeL"]["p_value"] == 1.0


def test_model_report_has_tables_plots_and_the_caveat(run):
    root, params = run
    live = root / "live/plots/metrics/train"
    live.mkdir(parents=True)
    (live / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t0\t2.5\n2\t1\t2.1\n3\t2\t1.9\n")
    (root / "train.json").write_text(json.dumps({"final_train_loss": 1.9, "steps": 3}))
    (root / "sft.json").write_text(json.dumps({"samples": {"train": 10}, "loss_token_share": 0.4}))
    out = root / "reports/smollm2-135m-instruct"
    write_model_report(params, "smollm2-135m-instruct", root / "train.json", root / "live", root / "sft.json",
                       root / "eval/smollm2-135m-instruct.json", root / "scores/smollm2-135m-instruct.parquet", out)
    md = (out / "report.md").read_text()
    assert "substitute for a licensed clinician" in md and "ROUGE-L" in md and "Holm" in md
    for png in ("loss.png", "metrics_zh.png", "metrics_en.png", "lengths.png"):
        assert (out / "figures" / png).stat().st_size > 1000, png
    assert "<table>" in (out / "report.html").read_text()


def test_comparison_report_lays_out_models_and_between_model_tests(run):
    root, params = run
    out = root / "reports/comparison"
    write_comparison(params, root / "eval", root / "scores", out)
    md = (out / "report.md").read_text()
    assert "smollm2-135m-instruct (fine-tuned)" in md and "gemma3-270m (base)" in md
    assert "gemma3-270m − smollm2-135m-instruct" in md and "Holm-adjusted" in md
    assert (out / "figures/comparison_zh.png").exists()


def test_comparison_records_its_provenance(run, repo):
    root, params = run
    params_path = root / "params.yaml"
    params_path.write_text("run: {models: []}\n", encoding="utf-8")
    out = root / "reports/comparison"
    write_comparison(params, root / "eval", root / "scores", out, params_path=params_path)
    record = json.loads((out / "provenance.json").read_text())
    assert record["params"]["sha256"] == hashlib.sha256(params_path.read_bytes()).hexdigest()
    assert set(record["inputs"]) >= {(root / "eval").as_posix(), (root / "scores").as_posix()}
    assert record["packages"]["torch"] and record["hardware"]["cpus"] >= 1 and "commit" in record["git"]
    assert "Provenance" in (out / "report.md").read_text()


def test_a_folder_hash_changes_with_a_rename_or_an_edit(tmp_path):
    from counseltune.report.provenance import tree_sha256

    (tmp_path / "a.txt").write_text("x")
    before = tree_sha256(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    renamed = tree_sha256(tmp_path)
    (tmp_path / "b.txt").write_text("y")
    assert len({before, renamed, tree_sha256(tmp_path)}) == 3


def test_a_paired_cell_without_spread_says_d_is_undefined():
    from counseltune.report.metrics import paired_cell

    # identical differences on every item (e.g. two tiny models with the same replies): Cohen's d is None
    assert paired_cell({"difference": 0.0, "p_value": 1.0, "cohens_d": None}) == "+0.000 (p=1, d=n/a)"
    assert paired_cell({"difference": 0.1, "p_holm": 0.01, "cohens_d": 0.5}) == "+0.100 (p=0.01 *, d=0.50)"
