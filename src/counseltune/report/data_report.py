"""Curated tables + per-source ingest stats -> the data report (counts, distributions, quarantine reasons)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.report.document import Document, Image, Paragraph, Section, Table
from counseltune.report.plots import histograms
from counseltune.schemas.tables import CuratedDialogs, Quarantine, Turns
from counseltune.tables.io import read_table


def write_data_report(params: dict[str, Any], ingest_stats_dir: Path, processed_dir: Path, out: Path, figures: Path) -> None:
    dialogs = read_table(processed_dir / "dialogs.parquet", CuratedDialogs)
    turns = read_table(processed_dir / "turns.parquet", Turns)
    quarantine = read_table(processed_dir / "quarantine.parquet", Quarantine)
    ingest_stats = [json.loads((ingest_stats_dir / f"{s}.json").read_text(encoding="utf-8")) for s in params["sources"]]
    turns = turns.join(dialogs.select("dialog_id", "source", "split", "language"), on="dialog_id")

    figures.mkdir(parents=True, exist_ok=True)
    plots = _plots(dialogs, turns, figures)
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    doc = Document("counseltune data report", [
        Section("Ingest", [Paragraph("Every raw record is kept, merged into another (e.g. a second annotator's copy) "
                                     "or quarantined with its file, record and reason."), _ingest_table(ingest_stats)]),
        Section("Curated dialogs per source and split", [_split_table(dialogs)]),
        Section("Languages", [_count_table(dialogs, "language")]),
        Section("Turns per dialog", [_describe(dialogs, "n_turns", "source"), Image(rel(plots["turns"]), "turns per dialog")]),
        Section("Utterance length (characters)", [
            _describe(turns.with_columns(pl.col("text").str.len_chars().alias("chars")), "chars", "source"),
            Image(rel(plots["length"]), "utterance length"),
        ]),
        Section("Quarantine and dropped dialogs", [_quarantine_table(quarantine)]),
        Section("Params", [Paragraph("curate: " + json.dumps(params["curate"], ensure_ascii=False, sort_keys=True))]),
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc.to_markdown(), encoding="utf-8")
    out.with_suffix(".html").write_text(doc.to_html(), encoding="utf-8")


def _ingest_table(stats: list[dict[str, Any]]) -> Table:
    rows = [[s["source"], s["format"], f"{s['records_in']} {s['unit']}s", s["kept"], sum(s["merged"].values()),
             s["quarantined"], s["dialogs"], s["turns"], ", ".join(f"{k}={v}" for k, v in s["events"].items()) or "-"]
            for s in stats]
    return Table(["source", "format", "records in", "kept", "merged", "quarantined", "dialogs", "turns", "events"], rows)


def _split_table(dialogs: pl.DataFrame) -> Table:
    wide = dialogs.pivot(on="split", index="source", values="dialog_id", aggregate_function="len").fill_null(0)
    splits = [s for s in ("train", "val", "test") if s in wide.columns]
    wide = wide.with_columns(pl.sum_horizontal(splits).alias("total")).sort("source")
    return Table(["source", *splits, "total"], [list(r) for r in wide.select("source", *splits, "total").iter_rows()])


def _count_table(df: pl.DataFrame, column: str) -> Table:
    counts = df.group_by(column).len().sort(column)
    return Table([column, "dialogs"], [list(r) for r in counts.iter_rows()])


def _describe(df: pl.DataFrame, value: str, by: str) -> Table:
    stats = df.group_by(by).agg(
        pl.col(value).min().alias("min"), pl.col(value).median().alias("median"),
        pl.col(value).mean().alias("mean"), pl.col(value).quantile(0.95).alias("p95"), pl.col(value).max().alias("max"),
    ).sort(by)
    return Table([by, "min", "median", "mean", "p95", "max"], [list(r) for r in stats.iter_rows()])


def _quarantine_table(quarantine: pl.DataFrame) -> Table:
    if quarantine.is_empty():
        return Table(["stage", "source", "reason", "records"], [["-", "-", "nothing quarantined", 0]])
    counts = quarantine.group_by("stage", "source", "reason").agg(pl.col("n_records").sum()).sort("stage", "source", "reason")
    return Table(["stage", "source", "reason", "records"], [list(r) for r in counts.iter_rows()])


def _plots(dialogs: pl.DataFrame, turns: pl.DataFrame, figures: Path) -> dict[str, Path]:
    chars = turns.with_columns(pl.col("text").str.len_chars().alias("chars"))
    by_source = lambda df, column: {  # noqa: E731
        source: df.filter(pl.col("source") == source)[column].to_list() for source in sorted(df["source"].unique())
    }
    return {
        "turns": histograms(by_source(dialogs, "n_turns"), "utterances per dialog", figures / "turns_per_dialog.png"),
        "length": histograms(by_source(chars, "chars"), "characters per utterance", figures / "utterance_length.png"),
    }
