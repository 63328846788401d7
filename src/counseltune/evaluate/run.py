"""predictions/<model>/{base,finetuned}.parquet -> per-item scores + metrics JSON with CIs and paired tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.evaluate.stats import bootstrap_ci, bootstrap_corpus_ci, holm_bonferroni, paired_test
from counseltune.evaluate.text_metrics import CorpusBleu, Distinct, convention_label, score

VARIANTS = ("base", "finetuned")
ITEM_METRICS = ("bleu4", "rouge1", "rouge2", "rougeL", "length_chars")  # per item: paired tests are possible
KEYS = ("dialog_id", "turn_index", "language")


def evaluate_model(params: dict[str, Any], model: str, predictions_dir: Path, scores_path: Path, metrics_path: Path) -> dict:
    cfg = params["evaluate"]
    predictions = {v: pl.read_parquet(predictions_dir / f"{v}.parquet") for v in VARIANTS}
    scores = pl.concat([score_items(predictions[v], cfg) for v in VARIANTS])
    summary = {
        "model": model, "convention": convention_label("zh", cfg["rouge_tokenizer"], cfg["convention"]),
        "rouge_tokenizer": cfg["rouge_tokenizer"], "bootstrap_samples": cfg["bootstrap_samples"], "languages": {},
    }
    for language in sorted(scores["language"].unique()):
        by_variant = {v: scores.filter((pl.col("variant") == v) & (pl.col("language") == language)) for v in VARIANTS}
        summary["languages"][language] = {
            "n_items": by_variant["finetuned"].height,
            "variants": {v: summarize(df, language, cfg) for v, df in by_variant.items()},
            "paired": compare_paired(by_variant["finetuned"], by_variant["base"], cfg, by_language=False),
        }
    _holm(summary)
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    scores.write_parquet(scores_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return summary


def score_items(predictions: pl.DataFrame, cfg: dict[str, Any]) -> pl.DataFrame:
    """One row per prediction with its sentence-level metrics (tokenized for its language)."""
    frames = []
    for (language,), group in predictions.group_by("language", maintain_order=True):
        pairs, _ = score(group["hypothesis"].to_list(), group["reference"].to_list(), language,
                         rouge_tokenizer=cfg["rouge_tokenizer"], convention=cfg["convention"])
        frames.append(group.with_columns(
            pl.Series("bleu4", [p["bleu"] for p in pairs], dtype=pl.Float64),
            pl.Series("rouge1", [p["rouge1"] for p in pairs], dtype=pl.Float64),
            pl.Series("rouge2", [p["rouge2"] for p in pairs], dtype=pl.Float64),
            pl.Series("rougeL", [p["rougeL"] for p in pairs], dtype=pl.Float64),
            pl.Series("length_chars", [p["hyp_chars"] for p in pairs], dtype=pl.Float64),
            pl.Series("ref_length_chars", [p["ref_chars"] for p in pairs], dtype=pl.Float64),
            pl.Series("length_tokens", [p["hyp_tokens"] for p in pairs], dtype=pl.Float64),
        ))
    columns = ["model", "variant", *KEYS, "source", "reference", "hypothesis", "bleu4", "rouge1", "rouge2", "rougeL",
               "length_chars", "ref_length_chars", "length_tokens"]
    return pl.concat(frames).select(columns).sort(KEYS)


def summarize(df: pl.DataFrame, language: str, cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each metric's estimate with a 95% percentile bootstrap CI over items."""
    n, seed = cfg["bootstrap_samples"], cfg["seed"]
    hyps, refs = df["hypothesis"].to_list(), df["reference"].to_list()
    out = {}
    if cfg["convention"] == "standard":  # corpus BLEU, resampling items and recomputing it
        out["bleu4"] = _ci(bootstrap_corpus_ci(hyps, refs, CorpusBleu(language), n, seed))
    else:  # LLaMA-Factory averages sentence BLEU
        out["bleu4"] = _ci(bootstrap_ci(df["bleu4"].to_numpy(), n, seed))
    for metric in ("rouge1", "rouge2", "rougeL", "length_chars"):
        out[metric] = _ci(bootstrap_ci(df[metric].to_numpy(), n, seed))
    for k in (1, 2):
        metric = Distinct(k, language, cfg["rouge_tokenizer"], cfg["convention"])
        out[f"distinct{k}"] = _ci(bootstrap_corpus_ci(hyps, refs, metric, n, seed))
    return out


def compare_paired(a: pl.DataFrame, b: pl.DataFrame, cfg: dict[str, Any], by_language: bool = True) -> dict:
    """Paired tests of a − b on the items both scored, per metric (and per language when by_language)."""
    joined = a.join(b, on=list(KEYS), suffix="_b")
    groups = joined.group_by("language", maintain_order=True) if by_language else [((None,), joined)]
    results = {}
    for (language,), group in groups:
        for metric in ITEM_METRICS:
            test = paired_test(group[metric].to_numpy(), group[f"{metric}_b"].to_numpy(), cfg["bootstrap_samples"], cfg["seed"])
            result = {"difference": test["mean_diff"], "low": test["ci_low"], "high": test["ci_high"],
                      "p_value": test["p_value"], "test": test["test"], "p_wilcoxon": test["p_wilcoxon"],
                      "cohens_d": test["cohens_d"], "rank_biserial": test["rank_biserial"], "n": test["n"]}
            results[(language, metric) if by_language else metric] = result
    return results


def adjust_holm(results: dict) -> None:
    """Add p_holm to every result of one family of comparisons (in place)."""
    adjusted = holm_bonferroni({str(k): r["p_value"] for k, r in results.items()})
    for key, result in results.items():
        result["p_holm"] = adjusted[str(key)]


def _holm(summary: dict[str, Any]) -> None:
    family = {(lang, m): r for lang, block in summary["languages"].items() for m, r in block["paired"].items()}
    adjust_holm(family)


def _ci(triple: tuple[float, float, float]) -> dict[str, float]:
    estimate, low, high = triple
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}
