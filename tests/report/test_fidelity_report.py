"""Fidelity sections of the per-model and comparison reports, from real stage outputs (in-process fake LLM clients)."""

from __future__ import annotations

import json

import pytest

from counseltune.evaluate.run import evaluate_model
from counseltune.fidelity.embedded_coder.coder_stage import run_coder_stage
from counseltune.fidelity.judges.judge_validation import run_judge_validation
from counseltune.fidelity.model_stage import run_model_fidelity
from counseltune.report.compare import write_comparison
from counseltune.report.document import Alert, Document, Section, Table
from counseltune.report.model_report import write_model_report
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
                        lambda config, **_: FakeClient(UNSAFE_MODEL if "adapter_dir" in config else JUDGE))
    monkeypatch.setattr("counseltune.fidelity.judges.judge_validation.make_client", lambda config, **_: FakeClient(JUDGE))
    p = fidelity_params(params, judge=True, simulate=True, safety=True)
    p["fidelity"]["judge_validation"] = {"enabled": True, "max_transcripts": 1, "max_turns": 30}
    p["run"]["models"] = list(MODELS)
    p["evaluate"]["bootstrap_samples"] = 100
    fidelity = tmp_path / "metrics/fidelity"
    interim = processed_sample.parent / "interim" / p["fidelity"]["coder"]["source"]  # the real ingest of the sample
    run_coder_stage(p, interim, tmp_path / "coder.joblib", tmp_path / "reference.parquet", fidelity / "coder.json",
                    held_out_dir=tmp_path / "held_out")
    run_judge_validation(p, tmp_path / "held_out", tmp_path / "judge_codes.parquet", tmp_path / "judge_validation.json")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter/adapter_config.json").write_text("{}")
    predictions = write_predictions(p, processed_sample, tmp_path / "predictions")
    summary = run_model_fidelity(p, MODEL, predictions, processed_sample, tmp_path / "coder.joblib", tmp_path / "base",
                                 tmp_path / "adapter", tmp_path / "fidelity-tables", fidelity / f"{MODEL}.json",
                                 coder_metrics=fidelity / "coder.json",
                                 judge_validation=tmp_path / "judge_validation.json")
    # the second model's numbers come without a judge validation: its report must say so
    (fidelity / "gemma3-270m.json").write_text(json.dumps(summary | {"model": "gemma3-270m", "judge_validation": None}))
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


def test_every_judge_number_stands_beside_its_agreement_with_human_codes(stage_outputs):
    root, params = stage_outputs
    validation = json.loads((root / "judge_validation.json").read_text())
    question = validation["behaviors"]["question"]
    assert validation["measured"] and question["n"] > 0 and question["kappa"] is not None
    (root / "train.json").write_text(json.dumps({"steps": 3}))
    (root / "sft.json").write_text(json.dumps({"samples": 10}))
    reports = {}
    for model in MODELS:
        out = root / "reports" / model
        write_model_report(params, model, root / "train.json", root / "live", root / "sft.json",
                           root / f"eval/{model}.json", root / f"scores/{model}.parquet", out,
                           fidelity=root / f"metrics/fidelity/{model}.json")
        reports[model] = (out / "report.md").read_text()
    judge_part = reports[MODEL].split("## Fidelity: LLM judge", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in judge_part.splitlines() if line.startswith("| agreement vs human"))
    assert f"question kappa {question['kappa']:.2f} vs human, n={question['n']}" in row  # under R:Q
    assert row.count("agreement not measured: AnnoMI has no human global scores") == 6  # 4 globals, technical, relational
    assert row.count("AnnoMI has no human SC/AF/EA/CON/PER codes") == 3  # the two totals and the MIA share
    assert "Total MI-Adherent (SC+AF+EA)" in judge_part and "MIA share (not a MITI 4.2.1 score)" in judge_part
    assert "per session" in judge_part and "Cohen's kappa (judge vs human)" in judge_part
    assert "no human CTRS ratings" in reports[MODEL] and "no human-rated crisis replies" in reports[MODEL]
    other = reports["gemma3-270m"].split("## Fidelity: LLM judge", 1)[1].split("\n## ", 1)[0]
    assert "agreement not measured: no judge validation" in other and "vs human, n=" not in other


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


def test_a_judge_that_coded_nothing_on_the_held_out_set_is_not_given_a_kappa():
    from counseltune.report.fidelity import agreement_cell, kappa_text

    failed = {"measured": True, "judged_utterances": 0, "failed": 1, "sessions": 1,
              "failures_by_reason": {"client_truncated": 1}, "behaviors": {"question": {"n": 0, "kappa": None}}}
    assert kappa_text(failed, "question") == ("agreement not measured: the judge coded no held-out utterance "
                                              "(1 of 1 transcripts failed: 1 client_truncated)")
    assert agreement_cell(None, "reflection_to_question") == "agreement not measured: no judge validation"
    off = {"measured": False, "why": "fidelity.judge_validation.enabled is false"}
    assert agreement_cell(off, "empathy") == ("agreement not measured: no judge validation "
                                              "(fidelity.judge_validation.enabled is false)")
