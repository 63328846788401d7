"""The LLM judge on a model's predictions: MITI codes of the predicted turns and the four global scores, per variant.

A session is a held-out dialog with the model's replies in place of the reference turns (sessions.
sessions_from_predictions). Behavior counts use the judge's codes of the predicted turns only; the global
scores rate the whole session, a mix of reference and model turns (the simulated sessions rate the model
alone). Both variants are judged on the same dialogs, the first max_sessions by dialog id.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from counseltune.stats import bootstrap_ci
from counseltune.fidelity.judges.judge import MitiJudgement, behavior_counts, judge_miti
from counseltune.instruments.miti import GLOBAL_SCORES, TOTALS, grade, per_session, summary_scores
from counseltune.fidelity.judges.sessions import sessions_from_predictions
from counseltune.llm import Client

JUDGED_VARIANTS = ("base", "finetuned")
GLOBALS_CAVEAT = ("global scores rate whole sessions in which only the predicted turns are the model's; the rest "
                  "are the reference counselor's")


def judge_predictions(judge: Client, dialogs: pl.DataFrame, turns: pl.DataFrame, predictions: dict[str, pl.DataFrame],
                      cfg: dict, n_samples: int, seed: int) -> tuple[dict[str, MitiJudgement], dict]:
    """variant -> the judge's MITI judgement of its sessions, and the per-variant summary for the metrics."""
    shared = sorted(set(predictions["base"]["dialog_id"]) & set(predictions["finetuned"]["dialog_id"]))
    chosen = shared[: cfg["max_sessions"]] if cfg["max_sessions"] is not None else shared
    judgements, summary = {}, {}
    for variant in JUDGED_VARIANTS:
        preds = predictions[variant].filter(pl.col("dialog_id").is_in(chosen))
        sessions = sessions_from_predictions(dialogs, turns, preds) if preds.height else []
        judgement = judge_miti(judge, sessions, seed=cfg["seed"], max_reasks=cfg["max_reasks"],
                               max_tokens=cfg["miti_max_tokens"])
        judgements[variant] = judgement
        summary[variant] = judgement.report() | {"dialogs": chosen} | summarize(judgement, preds, n_samples, seed)
    return judgements, {"model": judge.model, "caveat": GLOBALS_CAVEAT, "variants": summary}


def summarize(judgement: MitiJudgement, predictions: pl.DataFrame, n_samples: int, seed: int) -> dict:
    """Mean global scores (CI over sessions) and MITI summary scores with grades from the judged sessions."""
    rated = judgement.globals
    globals_ = {}
    for scale in GLOBAL_SCORES:
        values = rated.filter(pl.col("scale") == scale)["score"].to_numpy().astype(float)
        globals_[scale] = _ci(values, n_samples, seed)
    means = {scale: ci["estimate"] for scale, ci in globals_.items()}
    predicted = predictions.select("dialog_id", "turn_index")
    coded = judgement.codes.join(predicted, on=["dialog_id", "turn_index"], how="semi")
    codes, n_sessions = coded["miti_code"].to_list(), coded["dialog_id"].n_unique()
    # no coded turn: no counts ({} -> None scores, not zeros); no rated session: no globals
    scores = summary_scores(behavior_counts(codes) if codes else {},
                            means if all(v is not None for v in means.values()) else None)
    summary = {name: {"value": value, "grade": grade(name, value)} for name, value in scores.items()}
    for total in TOTALS:  # MITI totals are per-session counts: their mean over the sessions coded
        summary[total]["per_session"] = per_session(scores[total], n_sessions)
    return {"globals": globals_, "coded_predicted_turns": len(codes), "coded_sessions": n_sessions, "summary": summary}


def _ci(values: np.ndarray, n_samples: int, seed: int) -> dict:
    if not len(values):
        return {"estimate": None, "low": None, "high": None, "n": 0}
    estimate, low, high = bootstrap_ci(values, n_samples, seed)
    return {"estimate": estimate, "low": low, "high": high, "n": len(values)}
