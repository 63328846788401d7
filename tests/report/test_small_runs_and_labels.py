"""evaluate -> report on real parquet: per-language metric labels, and no interval or test from too few dialogs."""

import copy
import json

import polars as pl
import pytest

from counseltune.evaluate.run import evaluate_model
from counseltune.report.compare import write_comparison
from counseltune.report.model_report import write_model_report

MODEL = "smollm2-135m-instruct"
TEXTS = {
    "zh": ["听起来你最近压力很大，能多说说吗？", "你觉得是什么让你睡不着？", "我们一起想想可以做些什么。", "这种感觉持续多久了？"],
    "en": ["It sounds like work has been really stressful.", "What would you like to change?",
           "You are worried about your drinking.", "How important is this to you?"],
    "ko": ["요즘 많이 힘드셨겠어요.", "더 말씀해 주시겠어요?", "무엇이 가장 걱정되세요?", "그 마음 이해해요."],
}


def predictions(variant: str, languages: tuple[str, ...], dialogs_per_language: int) -> pl.DataFrame:
    """Four turns per language, spread over the given number of dialogs; the base variant truncates its replies."""
    rows = []
    for language in languages:
        for i, ref in enumerate(TEXTS[language]):
            hyp = ref if variant == "finetuned" else ref[: len(ref) // 2]
            rows.append({"model": MODEL, "variant": variant, "dialog_id": f"{language}:d{i % dialogs_per_language}",
                         "turn_index": 1 + 2 * i, "source": "toy", "language": language, "reference": ref,
                         "hypothesis": hyp, "prompt_tokens": 10, "new_tokens": 5})
    return pl.DataFrame(rows)


def evaluate(tmp_path, params, languages, dialogs_per_language, convention="standard"):
    params = copy.deepcopy(params)
    params["evaluate"].update(bootstrap_samples=100, convention=convention)
    params["run"]["models"] = [MODEL]
    pred = tmp_path / "predictions" / MODEL
    pred.mkdir(parents=True)
    for variant in ("base", "finetuned"):
        predictions(variant, languages, dialogs_per_language).write_parquet(pred / f"{variant}.parquet")
    metrics = evaluate_model(params, MODEL, pred, tmp_path / "scores" / f"{MODEL}.parquet",
                             tmp_path / "eval" / f"{MODEL}.json")
    return metrics, params


def write_report(tmp_path, params) -> str:
    (tmp_path / "train.json").write_text(json.dumps({"steps": 1}))
    (tmp_path / "sft.json").write_text(json.dumps({"samples": {"train": 4}}))
    (tmp_path / "live").mkdir()
    out = tmp_path / "reports" / MODEL
    write_model_report(params, MODEL, tmp_path / "train.json", tmp_path / "live", tmp_path / "sft.json",
                       tmp_path / "eval" / f"{MODEL}.json", tmp_path / "scores" / f"{MODEL}.parquet", out)
    return (out / "report.md").read_text(encoding="utf-8"), (out / "report.html").read_text(encoding="utf-8")


def test_the_default_runs_size_one_dialog_gives_no_interval_and_no_test(tmp_path, params):
    # the default run: 4 English items from one dialog
    metrics, params = evaluate(tmp_path, params, ("en",), dialogs_per_language=1)
    en = metrics["languages"]["en"]
    assert (en["n_items"], en["n_dialogs"]) == (4, 1)
    for variant in ("base", "finetuned"):
        for name, ci in en["variants"][variant].items():
            assert ci["low"] is None and ci["high"] is None, name
            assert ci["no_interval"] == "n=1 dialog < 5: no interval" and ci["estimate"] is not None
    for name, test in en["paired"].items():
        assert test["p_value"] is None and test["p_holm"] is None and test["low"] is None, name
        assert test["no_test"] == "n=1 dialog < 5: no test"
    saved = json.loads((tmp_path / "eval" / f"{MODEL}.json").read_text())
    assert saved["languages"]["en"]["variants"]["base"]["rougeL"]["low"] is None  # null in the JSON

    md, html = write_report(tmp_path, params)
    assert "*1.000 (n=1 dialog < 5: no interval)*" in md  # greyed estimate, no interval
    assert "*n=1 dialog < 5: no test (difference +" in md
    assert "[" not in md.split("## Scores: en")[1].split("\n\n|")[1].split("\n\n")[0]  # no interval printed
    assert "p=" not in md and "Holm-adjusted" not in md
    assert '<td class="greyed">' in html


def test_four_dialogs_are_still_too_few_and_five_are_enough(tmp_path, params):
    metrics, _ = evaluate(tmp_path / "four", params, ("zh",), dialogs_per_language=4)
    assert metrics["languages"]["zh"]["paired"]["rougeL"]["no_test"] == "n=4 dialogs < 5: no test"
    params = copy.deepcopy(params)
    params["evaluate"]["min_dialogs_for_inference"] = 4
    metrics, _ = evaluate(tmp_path / "enough", params, ("zh",), dialogs_per_language=4)
    zh = metrics["languages"]["zh"]
    assert zh["paired"]["rougeL"]["p_value"] is not None and "no_test" not in zh["paired"]["rougeL"]
    assert zh["variants"]["base"]["rougeL"]["low"] is not None


def test_between_model_tests_with_too_few_shared_dialogs_are_greyed(tmp_path, params):
    _, params = evaluate(tmp_path, params, ("en",), dialogs_per_language=1)
    params["run"]["models"] = [MODEL, "other"]
    (tmp_path / "eval" / "other.json").write_bytes((tmp_path / "eval" / f"{MODEL}.json").read_bytes())
    scores = pl.read_parquet(tmp_path / "scores" / f"{MODEL}.parquet")
    scores.with_columns(pl.lit("other").alias("model")).write_parquet(tmp_path / "scores" / "other.parquet")
    write_comparison(params, tmp_path / "eval", tmp_path / "scores", tmp_path / "cmp")
    md = (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert "*n=1 dialog < 5: no test (difference +0.000)*" in md and "5 comparisons not tested" in md


@pytest.mark.parametrize("convention", ["standard", "llamafactory"])
def test_labels_state_what_was_computed_per_language(tmp_path, params, convention):
    metrics, params = evaluate(tmp_path, params, ("zh", "en", "ko"), dialogs_per_language=4, convention=convention)
    labels = {lang: block["labels"] for lang, block in metrics["languages"].items()}
    conventions = {lang: block["convention"] for lang, block in metrics["languages"].items()}
    assert metrics["convention"] == convention
    if convention == "standard":
        assert {lang: label["bleu_tokenizer"] for lang, label in labels.items()} == {"zh": "zh", "en": "13a", "ko": "char"}
        assert "tokenize=13a" in conventions["en"] and "tokenize=char" in conventions["ko"]
        assert "tokenize=zh" in conventions["zh"] and "tokenize=zh" not in conventions["en"] + conventions["ko"]
        assert labels["en"]["rouge_tokenizer"].startswith("rouge-score default") and labels["zh"]["rouge_tokenizer"] == "char"
        assert all(label["rouge_implementation"].startswith("rouge-score") for label in labels.values())
    else:
        assert all(label["bleu_tokenizer"].startswith("characters") for label in labels.values())
        assert all(label["rouge_implementation"].startswith("rouge-chinese 1.0.3") for label in labels.values())
        assert all(c.startswith("llamafactory: LLaMA-Factory ComputeSimilarity") for c in conventions.values())
    md, _ = write_report(tmp_path, params)
    note = md.split("## Training")[0]
    for lang, label in labels.items():
        assert f"{lang}: BLEU-4 = {label['bleu_kind']}, tokenizer {label['bleu_tokenizer']}" in note
