"""predictions/<model>/{base,finetuned}.parquet -> per-item scores + metrics JSON with CIs and paired tests.

Turns of one dialog are not independent: intervals resample dialogs (cluster bootstrap) and paired tests flip the
signs of per-dialog mean differences. A language with fewer than evaluate.min_dialogs_for_inference dialogs gets
null intervals and tests with the reason ('n=1 dialog < 5: no interval'), not degenerate numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from counseltune.evaluate.text_metrics import CorpusBleu, Distinct, convention_label, metric_labels, score
from counseltune.paired_scores import CLUSTER, ITEM_METRICS, KEYS, adjust_holm, compare_paired
from counseltune.schemas.scores import Scores
from counseltune.stats import bootstrap_corpus_ci, cluster_bootstrap_ci, too_few_clusters
from counseltune.tables.staged import StagedOutputs

VARIANTS = ("base", "finetuned")
CI_METHOD = "95% percentile cluster bootstrap over dialogs"


def evaluate_model(params: dict[str, Any], model: str, predictions_dir: Path, scores_path: Path, metrics_path: Path) -> dict:
    cfg = params["evaluate"]
    predictions = {v: pl.read_parquet(predictions_dir / f"{v}.parquet") for v in VARIANTS}
    scores = pl.concat([score_items(predictions[v], cfg) for v in VARIANTS])
    summary = {
        "model": model, "convention": cfg["convention"], "rouge_tokenizer": cfg["rouge_tokenizer"],
        "bootstrap_samples": cfg["bootstrap_samples"], "ci_method": CI_METHOD,
        "min_dialogs_for_inference": cfg["min_dialogs_for_inference"], "languages": {},
    }
    for language in sorted(scores["language"].unique()):
        by_variant = {v: scores.filter((pl.col("variant") == v) & (pl.col("language") == language)) for v in VARIANTS}
        summary["languages"][language] = {
            "n_items": by_variant["finetuned"].height,
            "n_dialogs": by_variant["finetuned"][CLUSTER].n_unique(),
            "convention": convention_label(language, cfg["rouge_tokenizer"], cfg["convention"]),
            "labels": metric_labels(language, cfg["rouge_tokenizer"], cfg["convention"]),
            "variants": {v: summarize(df, language, cfg) for v, df in by_variant.items()},
            "paired": compare_paired(by_variant["finetuned"], by_variant["base"], cfg, by_language=False),
        }
    _holm(summary)
    with StagedOutputs([scores_path, metrics_path]) as out:  # both appear, validated, or neither
        out.table(scores_path, scores, Scores)
        out.json(metrics_path, summary)
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


def summarize(df: pl.DataFrame, language: str, cfg: dict[str, Any]) -> dict[str, dict]:
    """Each metric's estimate with a 95% cluster-bootstrap CI over dialogs, or a null CI and the reason."""
    n, seed = cfg["bootstrap_samples"], cfg["seed"]
    hyps, refs, dialogs = df["hypothesis"].to_list(), df["reference"].to_list(), df[CLUSTER].to_list()
    reason = too_few_clusters(len(set(dialogs)), cfg["min_dialogs_for_inference"], "dialog", "interval")
    # per-item means; BLEU is corpus BLEU (recomputed on each resample) in the standard convention, while
    # LLaMA-Factory averages sentence BLEU
    metrics: dict[str, Any] = {m: df[m].to_numpy() for m in ITEM_METRICS}
    if cfg["convention"] == "standard":
        metrics["bleu4"] = CorpusBleu(language)
    for k in (1, 2):
        metrics[f"distinct{k}"] = Distinct(k, language, cfg["rouge_tokenizer"], cfg["convention"])
    out = {}
    for name, metric in metrics.items():
        if reason is not None:
            estimate = float(metric.mean()) if isinstance(metric, np.ndarray) else float(metric(hyps, refs))
            out[name] = {"estimate": estimate, "low": None, "high": None, "no_interval": reason}
        elif isinstance(metric, np.ndarray):
            out[name] = _ci(cluster_bootstrap_ci(metric, dialogs, n, seed))
        else:
            out[name] = _ci(bootstrap_corpus_ci(hyps, refs, metric, n, seed, clusters=dialogs))
    return {name: out[name] for name in ("bleu4", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "length_chars")}


def _holm(summary: dict[str, Any]) -> None:
    family = {(lang, m): r for lang, block in summary["languages"].items() for m, r in block["paired"].items()}
    adjust_holm(family)


def _ci(triple: tuple[float, float, float]) -> dict[str, float | None]:
    estimate, low, high = triple
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}
