"""The miti-coder stage: ingested AnnoMI -> a validated embedded coder + real-MI reference profiles (high vs low quality).

The coder is trained on the train transcripts of a seeded, MI-quality-stratified split and measured on the
held-out ones (validation.validate_coder). The held-out transcripts are then the study's reference for what
real MI looks like: their MITI profile per mi_quality, once from the coder's codes and once from AnnoMI's
human codes, side by side, so a model's coder-measured profile can be read against both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.instruments import miti
from counseltune.fidelity.embedded_coder.coder import code_turns, load_coder
from counseltune.fidelity.miti_scoring.counts import CODED_BY_ANNOMI, CODED_BY_EMBEDDED_CODER, behavior_counts, with_summary_scores
from counseltune.fidelity.miti_scoring.global_scores import NOT_RATED_REASON
from counseltune.fidelity.miti_scoring.profile import miti_profile
from counseltune.fidelity.embedded_coder.validation import validate_coder
from counseltune.schemas.fidelity import ReferenceCounts
from counseltune.schemas.tables import Dialogs, Turns
from counseltune.tables.io import read_table
from counseltune.tables.staged import StagedOutputs

CODINGS = {"coder": CODED_BY_EMBEDDED_CODER, "human": CODED_BY_ANNOMI}


def run_coder_stage(params: dict, tables_dir: Path, coder_out: Path, reference_out: Path, metrics_out: Path,
                    held_out_dir: Path | None = None) -> dict:
    """Train + validate the coder (saved to coder_out), profile the held-out transcripts; write parquet + JSON.

    tables_dir: the ingested tables of the AnnoMI source fidelity.coder.source names (data/interim/<source>/).

    held_out_dir: where to write the held-out transcripts (dialogs.parquet, turns.parquet with the human codes),
    so the judge_validation stage codes the very same ones without parsing the corpus again.
    """
    started = time.perf_counter()
    cfg = params["fidelity"]["coder"]
    dialogs, turns = annomi_tables(Path(tables_dir))
    coder_out, reference_out, metrics_out = Path(coder_out), Path(reference_out), Path(metrics_out)
    held_out_tables = [Path(held_out_dir) / "dialogs.parquet", Path(held_out_dir) / "turns.parquet"] if held_out_dir else []
    with StagedOutputs([coder_out, reference_out, *held_out_tables, metrics_out]) as out:  # all of them, or none
        validation = validate_coder(turns, dialogs, cfg["seed"], test_fraction=cfg["test_fraction"],
                                    min_df=cfg["min_df"], model_path=out.path(coder_out))
        held_out = turns.filter(pl.col("dialog_id").is_in(validation["test_dialogs"]))
        reference = reference_counts(code_turns(load_coder(out.path(coder_out)), held_out), held_out, dialogs)
        out.table(reference_out, reference, ReferenceCounts)
        if held_out_tables:
            out.table(held_out_tables[0], dialogs.filter(pl.col("dialog_id").is_in(validation["test_dialogs"])), Dialogs)
            out.table(held_out_tables[1], held_out, Turns)
        summary = _summary(params, dialogs, validation, reference, started)
        out.json(metrics_out, summary)
    return summary


def _summary(params: dict, dialogs: pl.DataFrame, validation: dict, reference: pl.DataFrame, started: float) -> dict:
    return {
        "n_transcripts": dialogs.height,
        "n_transcripts_by_quality": _by_quality(dialogs),
        "validation": validation,
        "reference": reference_profiles(reference, params["fidelity"]["bootstrap_samples"], params["fidelity"]["seed"]),
        "not_coded": not_coded(),
        "bootstrap_samples": params["fidelity"]["bootstrap_samples"],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def annomi_tables(tables_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The AnnoMI source's ingested (dialogs, turns), one turn per annotated utterance.

    The source's ingest keeps two utterances of one speaker apart (same_speaker: keep, checked when params load):
    merging them would keep a code only where both halves agree, and the coder learns from every code.
    """
    return read_table(tables_dir / "dialogs.parquet", Dialogs), read_table(tables_dir / "turns.parquet", Turns)


def mi_quality(dialogs: pl.DataFrame) -> pl.DataFrame:
    """dialog_id -> AnnoMI's mi_quality (high | low) from the dialogs' meta."""
    return dialogs.select("dialog_id", pl.col("meta").map_elements(lambda m: json.loads(m).get("mi_quality"),
                                                                   return_dtype=pl.String).alias("mi_quality"))


def reference_counts(coded: pl.DataFrame, human: pl.DataFrame, dialogs: pl.DataFrame) -> pl.DataFrame:
    """Per held-out dialog and coding (coder | human): MITI counts, summary scores and grades, with mi_quality."""
    frames = [with_summary_scores(behavior_counts(source, coded_codes=CODINGS[coding])).with_columns(coding=pl.lit(coding))
              for coding, source in (("coder", coded), ("human", human))]
    table = pl.concat(frames).join(mi_quality(dialogs), on="dialog_id", how="left")
    return table.select("coding", "mi_quality", pl.exclude("coding", "mi_quality")).sort("coding", "mi_quality", "dialog_id")


def reference_profiles(reference: pl.DataFrame, n_samples: int, seed: int) -> dict[str, dict[str, dict]]:
    """mi_quality -> coding -> miti_profile (pooled scores, shares, CIs over dialogs)."""
    out: dict[str, dict[str, dict]] = {}
    for (quality, coding), group in reference.group_by("mi_quality", "coding"):
        out.setdefault(str(quality), {})[coding] = miti_profile(group, n_samples, seed)
    return {q: dict(sorted(v.items())) for q, v in sorted(out.items())}


def not_coded() -> dict[str, Any]:
    """What the embedded coder cannot code, and why (reported with every number it produced)."""
    missing = [k for k in miti.COUNT_KEYS if k not in CODED_BY_EMBEDDED_CODER]
    return {"miti_codes": missing, "why": miti.UNMAPPABLE, "global_scores": NOT_RATED_REASON,
            "language": "trained on English AnnoMI transcripts: replies in other languages are not coded"}


def _by_quality(dialogs: pl.DataFrame) -> dict[str, int]:
    counts = mi_quality(dialogs).group_by("mi_quality").len().sort("mi_quality")
    return {str(q): int(n) for q, n in counts.iter_rows()}
