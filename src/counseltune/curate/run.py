"""data/interim/<source>/* for every source in params -> data/processed/{dialogs,turns,quarantine}.parquet + stats (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from counseltune.dedupe import find_duplicates
from counseltune.curate.filters import filter_reasons
from counseltune.curate.split import assign_splits
from counseltune.schemas.tables import CuratedDialogs, Dialogs, Quarantine, Turns
from counseltune.errors import CounseltuneError
from counseltune.tables.io import read_table
from counseltune.tables.staged import StagedOutputs


class CurateError(CounseltuneError, ValueError):
    """Curation would write tables nobody can use (every dialog dropped); the message names the drop reasons."""


def curate(params: dict[str, Any], interim_dir: Path, out_dir: Path, stats_path: Path) -> dict[str, Any]:
    """Merge the run's sources, drop filtered and duplicate dialogs (quarantined, never lost), split, write."""
    sources = list(params["sources"])
    dialogs = pl.concat([read_table(interim_dir / s / "dialogs.parquet", Dialogs) for s in sources])
    turns = pl.concat([read_table(interim_dir / s / "turns.parquet", Turns) for s in sources])
    ingest_quarantine = pl.concat([read_table(interim_dir / s / "quarantine.parquet", Quarantine) for s in sources])

    cfg = params["curate"]
    rejected = filter_reasons(dialogs, turns, cfg)
    remaining = dialogs.join(rejected, on="dialog_id", how="anti")
    dupes = _duplicates(remaining, turns, cfg["dedupe"])
    dropped = pl.concat([rejected, dupes])

    kept = remaining.join(dupes, on="dialog_id", how="anti")
    fixed = {name: spec["split"] for name, spec in params["sources"].items() if spec.get("split", "auto") != "auto"}
    split_cfg = cfg["split"]
    kept = assign_splits(kept.drop("split"), fixed, split_cfg["fractions"], split_cfg["stratify_by"], split_cfg["seed"])
    kept = kept.select(dialogs.columns)
    kept_turns = turns.join(kept.select("dialog_id"), on="dialog_id", how="semi")

    quarantine = pl.concat([ingest_quarantine, _quarantine_rows(dropped, dialogs, turns)])
    stats = _stats(dialogs, kept, kept_turns, dropped)
    if kept.is_empty():
        raise CurateError(f"curate: all {dialogs.height} dialogs were dropped ({stats['dropped']}): nothing to "
                          "train or evaluate on; loosen curate.* in params.yaml (min_turns, max_turns, "
                          "max_utterance_chars, require_counselor)")
    # the three tables and the stats appear together or not at all (tables.staged)
    with StagedOutputs([out_dir / "dialogs.parquet", out_dir / "turns.parquet", out_dir / "quarantine.parquet",
                        stats_path]) as out:
        out.table(out_dir / "dialogs.parquet", kept, CuratedDialogs)
        out.table(out_dir / "turns.parquet", kept_turns, Turns)
        out.table(out_dir / "quarantine.parquet", quarantine, Quarantine)
        out.json(stats_path, stats)
    return stats


def _duplicates(dialogs: pl.DataFrame, turns: pl.DataFrame, dedupe: dict[str, Any]) -> pl.DataFrame:
    """Exact and near duplicates among `dialogs` (kept in input order: first occurrence wins)."""
    texts = (
        turns.join(dialogs.select("dialog_id"), on="dialog_id", how="semi")
        .sort("turn_index")
        .group_by("dialog_id", maintain_order=True)
        .agg(pl.format("{}: {}", "role", "text").str.join("\n").alias("text"))
    )
    ordered = dialogs.select("dialog_id").join(texts, on="dialog_id", how="left", maintain_order="left")
    found = find_duplicates(ordered["dialog_id"].to_list(), ordered["text"].to_list(),
                            dedupe["shingle_chars"], dedupe["near_threshold"])
    return pl.DataFrame(
        {"dialog_id": list(found), "reason": [v[0] for v in found.values()], "detail": [v[2] for v in found.values()]},
        schema={"dialog_id": pl.String, "reason": pl.String, "detail": pl.String},
    )


def _quarantine_rows(dropped: pl.DataFrame, dialogs: pl.DataFrame, turns: pl.DataFrame) -> pl.DataFrame:
    raw = turns.sort("turn_index").group_by("dialog_id").agg(pl.format("{}: {}", "role", "text_raw").str.join("\n").alias("raw"))
    return (
        dropped.join(dialogs.select("dialog_id", "source", "provenance_file"), on="dialog_id", how="left")
        .join(raw, on="dialog_id", how="left")
        .select(
            "source", pl.lit("curate").alias("stage"), pl.col("provenance_file").alias("file"),
            pl.col("dialog_id").alias("record"), pl.lit(1, dtype=pl.Int64).alias("n_records"), "reason", "detail",
            pl.col("raw").fill_null(""),
        )
    )


def _stats(all_dialogs: pl.DataFrame, kept: pl.DataFrame, kept_turns: pl.DataFrame, dropped: pl.DataFrame) -> dict[str, Any]:
    def counts(df: pl.DataFrame, *keys: str) -> dict[str, int]:
        rows = df.group_by(keys).len().sort(keys).iter_rows()
        return {"/".join(str(v) for v in row[:-1]): row[-1] for row in rows}

    return {
        "dialogs_in": all_dialogs.height,
        "dialogs_kept": kept.height,
        "turns_kept": kept_turns.height,
        "dropped": counts(dropped, "reason"),
        "per_split": counts(kept, "split"),
        "per_source_split": counts(kept, "source", "split"),
        "per_language": counts(kept, "language"),
    }
