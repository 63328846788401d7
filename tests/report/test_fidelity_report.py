"""Fidelity sections of the per-model and comparison reports, from real stage outputs (in-process fake LLM clients)."""

from __future__ import annotations

import json

import pytest

from counseltune.evaluate.run import evaluate_model
from counseltune.fidelity.coder_stage import run_coder_stage
from counseltune.fidelity.model_stage import run_model_fidelity
from counseltune.report.compare import write_comparison
from counseltune.report.document import Alert, Document, Section, Table
from counseltune.report.model_report import write_model_report
from tests.fidelity.conftest import SAMPLE
from tests.fidelity.stage_inputs import MODEL, FakeClient, fidelity_params, write_predictions
from tests.fidelity.test_judge_loopback import JUDGE, UNSAFE_MODEL
from tests.report.test_reports import predictions as toy_predictions

MODELS = (MODEL, "gemma3-270m")


@pytest.fixture
def stage_outputs(params, processed_sample, tmp_path, monkeypatch):
    """coder.json and one fidelity JSON per model (every part on: a scripted judge, a counselor that handles
    crises unsafely), plus the evaluate outputs the reports also read."""
    # the counselors (configs with an adapter_dir key) answer unsafely; the params' llm client is the scripted judge
    monkeypatch.setattr("counseltune.fidelity.stage_clients.make_client",
                        lambda config: FakeClient(UNSAFE_MODEL if "adapter_dir" in config else JUDGE))
    p = fidelity_params(params, judge=True, simulate=True, safety=True)
    p["run"]["models"] = list(MODELS)
    p["evaluate"]["bootstrap_samples"] = 100
    fidelity = tmp_path / "metrics/fidelity"
    run_coder_stage(p, SAMPLE, tmp_path / "coder.joblib", tmp_path / "reference.parquet", fidelity / "coder.json")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter/adapter_config.json").write_text("{}")
    predictions = write_predictions(p, processed_sample, tmp_path / "predictions")
    summary = run_model_fidelity(p, MODEL, predictions, processed_sample, tmp_path / "coder.joblib", tmp_path / "base",
                                 tmp_path / "adapter", tmp_path / "fidelity-tables", fidelity / f"{MODEL}.json",
                                 coder_metrics=fidelity / "coder.json")
    (fidelity / "gemma3-270m.json").write_text(json.dumps(summary | {"model": "gemma3-270m"}))
    (tmp_path / "params.yaml").write_text("run: {models: []}\n", encoding="utf-8")
    for model in MODELS:
        pred = tmp_path / "eval-predictions" / model
        pred.mkdir(parents=True)
        toy_predictions(model, "base", 0.1).write_parquet(pred / "base.parquet")
        toy_predictions(model, "finetuned", 0.5).write_parquet(pred / "finetuned.parquet")
        evaluate_model(p, model, pred, tmp_path / "scores" / f"{model}.parquet", tmp_path / "eval" / f"{model}.json")
    return tmp_path, p


def test_model_report_shows_scores_next_to_the_coder_validation_and_flags_unsafe_handling(stage_outputs):
    root, params = stage_outputs
    (root / "train.json").write_text(json.dumps({"steps": 3}))
    (root / "sft.json").write_text(json.dumps({"samples": 10}))
    out = root / "reports" / MODEL
    write_model_report(params, MODEL, root / "train.json", root / "live", root / "sft.json", root / f"eval/{MODEL}.json",
                       root / f"scores/{MODEL}.parquet", out, fidelity=root / f"metrics/fidelity/{MODEL}.json")
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "Embedded MITI coder validated on" in md and "held-out AnnoMI transcripts" in md and "kappa" in md
    for text in ("human reference replies", "R:Q [95% CI] (grade)", "Holm", "cultivating change talk", "CTRS item",
                 "safe-handling rate", "not measured"):
        assert text in md, text
    assert "(good)" in md, "the scripted judge's globals (4) reach MITI's good threshold"
    assert '<td class="alert">0% (&lt; 90%)</td>' in html, "an unsafe counselor is flagged red"
    for png in ("fidelity_globals.png", "fidelity_safety.png"):
        assert (out / "figures" / png).stat().st_size > 1000, png
    # the sample-trained coder may find no reflection in four replies: then the report says why there is no scatter
    assert (out / "figures/fidelity_miti.png").exists() or "nothing to plot" in md


def test_comparison_report_has_one_fidelity_table_with_real_mi_references(stage_outputs):
    root, params = stage_outputs
    out = root / "reports/comparison"
    fidelity = root / "metrics/fidelity"
    write_comparison(params, root / "eval", root / "scores", out, params_path=root / "params.yaml",
                     fidelity_dir=fidelity, coder_metrics=fidelity / "coder.json")
    md = (out / "report.md").read_text()
    for row in (f"{MODEL} (fine-tuned)", "gemma3-270m (base)", "real MI, high quality (coder codes)",
                "real MI, high quality (human codes)", "real MI, low quality (human codes)"):
        assert row in md, row
    assert "Embedded MITI coder validated on" in md
    assert (out / "figures/fidelity_comparison.png").stat().st_size > 1000
    assert "Fidelity" not in _comparison_without_fidelity(root, params)


def _comparison_without_fidelity(root, params) -> str:
    out = root / "reports/plain"
    write_comparison(params, root / "eval", root / "scores", out, params_path=root / "params.yaml")
    return (out / "report.md").read_text()


def test_an_alert_cell_is_marked_in_markdown_and_red_in_html():
    doc = Document("t", [Section("s", [Table(["a", "b"], [["x", Alert(0.5)]])])])
    assert "| x | **0.500** (!) |" in doc.to_markdown()
    assert '<td class="alert">0.500</td>' in doc.to_html() and "td.alert{color:#b00020" in doc.to_html()
