"""The judge_validation stage: the LLM judge codes human-coded held-out AnnoMI transcripts, agreement per behavior.

The transcripts are the ones the miti_coder stage holds out to validate the embedded coder (its held-out tables,
not the raw corpus), so both coders are measured on the same sessions. The judge is asked exactly as on a model's
sessions (judge.judge_miti: same prompts, schema, seed, re-asks, and the shared cached client), so its agreement
here is the agreement of the numbers it gives in the model reports. max_transcripts and max_turns (the first
turns of each transcript) bound the cost; a re-run is answered from the cache.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from counseltune.config import llm_client_config
from counseltune.fidelity.judges.judge import PROMPT_VERSION, judge_miti
from counseltune.fidelity.judges.judge_agreement import GLOBALS_NOT_MEASURED, NOT_COMPARED, behavior_agreement, paired_codes
from counseltune.fidelity.judges.sessions import Session, sessions_from_tables
from counseltune.llm import make_client
from counseltune.schemas.fidelity import JudgeValidationCodes
from counseltune.schemas.tables import Dialogs, Turns
from counseltune.tables.io import read_table
from counseltune.tables.staged import StagedOutputs

SOURCE = "AnnoMI transcripts held out by the miti_coder stage (human codes: AnnoMI's annotators, majority vote)"
CODES_SCHEMA = {"judge_model": pl.String, "dialog_id": pl.String, "turn_index": pl.Int64, "mi_behavior": pl.String,
                "mi_code": pl.String, "miti_code": pl.String}


def held_out_sessions(dialogs: pl.DataFrame, turns: pl.DataFrame, max_transcripts: int | None,
                      max_turns: int | None) -> list[Session]:
    """The first max_transcripts transcripts by dialog id, each cut to its first max_turns turns (None = no bound)."""
    ids = sorted(set(turns["dialog_id"].to_list()) & set(dialogs["dialog_id"].to_list()))
    chosen = ids[:max_transcripts] if max_transcripts is not None else ids
    sessions = sessions_from_tables(dialogs, turns, chosen)
    if max_turns is None:
        return sessions
    return [Session(s.dialog_id, s.language, s.turns[:max_turns]) for s in sessions]


def run_judge_validation(params: dict, held_out_dir: Path, codes_out: Path, metrics_out: Path) -> dict:
    """Judge the held-out transcripts, compare with the human codes; paired codes to codes_out, JSON to metrics_out."""
    started = time.perf_counter()
    judge_cfg, cfg = params["fidelity"]["judge"], params["fidelity"]["judge_validation"]
    held_out_dir = Path(held_out_dir)
    dialogs = read_table(held_out_dir / "dialogs.parquet", Dialogs)
    turns = read_table(held_out_dir / "turns.parquet", Turns)
    why = ("fidelity.judge.enabled is false: no judge to validate" if not judge_cfg["enabled"] else
           "fidelity.judge_validation.enabled is false" if not cfg["enabled"] else None)
    summary: dict = {"measured": why is None, "why": why, "source": SOURCE, "prompt_version": PROMPT_VERSION,
                     "settings": dict(cfg), "globals": {"measured": False, "why": GLOBALS_NOT_MEASURED},
                     "not_compared": {"codes": list(NOT_COMPARED),
                                      "why": "AnnoMI's human codes have no such code (fidelity.miti.UNMAPPABLE)"}}
    codes = pl.DataFrame(schema=CODES_SCHEMA)
    if why is None:
        sessions = held_out_sessions(dialogs, turns, cfg["max_transcripts"], cfg["max_turns"])
        judge = make_client(llm_client_config(params), stage="judge_validation")
        judgement = judge_miti(judge, sessions, seed=judge_cfg["seed"], max_reasks=judge_cfg["max_reasks"],
                               max_tokens=judge_cfg["miti_max_tokens"])
        shown = pl.DataFrame([{"dialog_id": s.dialog_id, "turn_index": i} for s in sessions for i, _, _ in s.turns],
                             schema={"dialog_id": pl.String, "turn_index": pl.Int64})
        pairs = paired_codes(turns.join(shown, on=["dialog_id", "turn_index"], how="semi"), judgement.codes)
        codes = pairs.with_columns(judge_model=pl.lit(judge.model)).select(*CODES_SCHEMA).cast(CODES_SCHEMA)
        summary |= {
            "judge_model": judge.model,
            "transcripts": [s.dialog_id for s in sessions],
            **judgement.report(),
            "human_coded_utterances": pairs.height,
            "judged_utterances": int(pairs["miti_code"].is_not_null().sum()),
            "behaviors": behavior_agreement(pairs),
            "usage": {"model": judge.model, "backend": judge.backend, **asdict(judge.usage)},
        }
    summary["wall_s"] = round(time.perf_counter() - started, 2)
    with StagedOutputs([Path(codes_out), Path(metrics_out)]) as out:  # both, validated, or neither
        out.table(codes_out, codes, JudgeValidationCodes)
        out.json(metrics_out, summary)
    return summary
