"""Synthetic sessions for the SFT mix: sft.synthetic gives each generator the share of its accepted sessions
that joins the real train dialogs.

The subsample is chosen by a hash of (synthesize.seed, dialog_id), so it is the same for every model and run,
and a larger share keeps every session a smaller one chose.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from counseltune.schemas.tables import CuratedDialogs, Turns
from counseltune.tables.io import read_table

TablePair = tuple[pl.DataFrame, pl.DataFrame]


def synthetic_tables(params: dict, synthetic_dir: Path) -> list[tuple[str, TablePair]]:
    """(generator, (dialogs, turns)) for every generator with a share > 0, subsampled and split 'train'."""
    seed = params["synthesize"]["seed"]
    out = []
    for generator, share in sorted(params["sft"].get("synthetic", {}).items()):
        if share <= 0:
            continue
        folder = Path(synthetic_dir) / generator
        if not (folder / "dialogs.parquet").exists():
            raise FileNotFoundError(f"sft.synthetic mixes in {generator!r} but {folder}/dialogs.parquet does not "
                                    f"exist: run its synthesize stage first (snakemake data/synthetic/{generator}/...)")
        dialogs = read_table(folder / "dialogs.parquet", CuratedDialogs)
        chosen = [d for d in dialogs["dialog_id"].to_list() if _unit_hash(seed, d) < share]
        dialogs = dialogs.filter(pl.col("dialog_id").is_in(chosen)).with_columns(split=pl.lit("train"))
        turns = read_table(folder / "turns.parquet", Turns).filter(pl.col("dialog_id").is_in(chosen))
        out.append((generator, (dialogs, turns)))
    return out


def _unit_hash(seed: int, dialog_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{dialog_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
