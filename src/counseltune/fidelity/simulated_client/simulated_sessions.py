"""Whole sessions of the fine-tuned counselor with a simulated client: intake profiles, the dialogue, CTRS, MITI.

Unlike the predictions (one reply after a human history), every counselor turn after the opening is the
model's, so the CTRS judge and the embedded coder rate the model alone. The coder codes only the generated
counselor turns (an opening turn from the source corpus is context).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from counseltune.fidelity.embedded_coder.coded_replies import CODER_LANGUAGES
from counseltune.fidelity.embedded_coder.coder import MitiCoder, code_turns
from counseltune.fidelity.miti_scoring.counts import behavior_counts
from counseltune.fidelity.judges.ctrs import TOTAL_MAX, CtrsJudgement
from counseltune.fidelity.simulated_client.intake import IntakeProfile, cpsycoune_profiles, load_cactus, profiles_from_dialogs
from counseltune.fidelity.miti_scoring.profile import miti_profile
from counseltune.fidelity.simulated_client.simulate import Simulation

GENERATED = "generated:"   # Turns.location prefix of a simulated turn (simulate._append)


def intake_profiles(cfg: dict, dialogs: pl.DataFrame, turns: pl.DataFrame) -> list[IntakeProfile]:
    """fidelity.simulate -> at most `limit` profiles from its source, attitudes taken in turn. curated and cpsycoune
    read the stage's curated tables (dialogs, turns); cactus reads its seed file at fidelity.simulate.path."""
    source, limit, attitudes = cfg["source"], cfg["limit"], tuple(cfg["attitudes"])
    if source == "cactus" and not cfg.get("path"):
        raise ValueError("fidelity.simulate.source cactus needs fidelity.simulate.path (the Cactus seed file)")
    if source == "cactus":
        return load_cactus(Path(cfg["path"]), attitudes=attitudes, limit=limit)
    per_attitude = []
    for attitude in attitudes:
        if source == "cpsycoune":
            per_attitude.append(cpsycoune_profiles(dialogs, turns, attitude=attitude, limit=limit))
        elif source == "curated":
            per_attitude.append(profiles_from_dialogs(dialogs, turns, opening_turns=cfg["opening_turns"],
                                                      attitude=attitude, limit=limit))
        else:
            raise ValueError(f"fidelity.simulate.source must be curated, cactus or cpsycoune, got {source!r}")
    interleaved = [p for group in zip(*per_attitude) for p in group]   # each case under every attitude first
    return interleaved[:limit] if limit is not None else interleaved


def coded_session_turns(coder: MitiCoder, simulation: Simulation) -> pl.DataFrame:
    """The embedded coder's codes of the generated counselor turns of sessions in a language it knows."""
    codable = simulation.dialogs.filter(pl.col("language").is_in(CODER_LANGUAGES))["dialog_id"]
    turns = simulation.turns.filter(pl.col("dialog_id").is_in(codable.implode()))
    if not turns.filter(pl.col("role") == "counselor").height:
        return pl.DataFrame()
    generated = turns.filter(pl.col("location").str.starts_with(GENERATED)).select("dialog_id", "turn_index")
    return code_turns(coder, turns).join(generated, on=["dialog_id", "turn_index"], how="semi")


def simulation_summary(simulation: Simulation, coded: pl.DataFrame, ctrs: CtrsJudgement | None,
                       competence_total: int, n_samples: int, seed: int) -> dict:
    """The session counts, the coder's MITI profile of the model's turns, and the CTRS items and total."""
    out = simulation.report()
    out["miti_coder"] = miti_profile(behavior_counts(coded), n_samples, seed) if coded.height else None
    if ctrs is not None:
        totals = ctrs.totals
        out["ctrs"] = ctrs.report() | {"competence_total": competence_total, "total_max": TOTAL_MAX,
                                       "competent_sessions": int(totals["competent"].sum()) if totals.height else 0}
    return out
