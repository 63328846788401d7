"""One source's raw files -> data/interim/<source>/{dialogs,turns,quarantine}.parquet + its ingest stats (JSON)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from counseltune.config import source_policies
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, SourceTables, build_tables
from counseltune.schemas.tables import Dialogs, Quarantine, Turns
from counseltune.tables.staged import StagedOutputs

FORMATS = ("cpsycound", "cpsycoune", "psydtcorpus", "annomi", "kmi")
TABLES = ("dialogs.parquet", "turns.parquet", "quarantine.parquet")


def ingest_source(params: dict[str, Any], source: str, raw_dir: Path, out_dir: Path, stats_path: Path) -> SourceTables:
    """Read, check and write one source; fail when it has no records or its quarantined share passes the threshold.

    The tables and the stats appear together or not at all (tables.staged): a killed ingest leaves the last
    complete set. Entering StagedOutputs first makes an --out-dir that cannot be written fail before the read.
    """
    policies = source_policies(params, source)  # an undeclared --source fails here, before any folder is made
    with StagedOutputs([*(out_dir / t for t in TABLES), stats_path]) as out:
        tables = read_source(params, source, raw_dir)
        check_not_empty(tables, source, raw_dir, params["sources"][source]["format"])
        check_quarantine_share(tables, source, policies["max_quarantine_share"])
        # build_tables has just validated all three frames against these models
        out.table(out_dir / "dialogs.parquet", tables.dialogs, Dialogs, validated=True)
        out.table(out_dir / "turns.parquet", tables.turns, Turns, validated=True)
        out.table(out_dir / "quarantine.parquet", tables.quarantine, Quarantine, validated=True)
        out.json(stats_path, tables.stats)
    return tables


def read_source(params: dict[str, Any], source: str, raw_dir: Path) -> SourceTables:
    """Parse one source into validated tables (nothing written)."""
    spec = params["sources"][source]
    reader = load_reader(spec["format"])
    policies = source_policies(params, source)
    options = IngestOptions(
        language=spec["language"], width=policies["width"], same_speaker=policies["same_speaker"],
        trailing_client=policies["trailing_client"],
        empty_utterance=policies["empty_utterance"], method=spec.get("method"), extra=spec.get("options", {}),
    )
    ledger = Ledger(source, reader.UNIT)
    # Only readers of multi-record files have a file that can break off part-way with records still in it.
    file_policy = {}
    if getattr(reader, "MULTI_RECORD_FILES", False):
        file_policy["on_truncated_file"] = policies.get("on_truncated_file", "fail")
    parsed = reader.read(Path(raw_dir), ledger, options.extra, **file_policy)
    return build_tables(source, spec["format"], parsed, ledger, options)


def load_reader(fmt: str):
    if fmt not in FORMATS:
        raise IngestError(f"unknown source format {fmt!r}; known formats: {', '.join(FORMATS)}")
    # Imported on demand: a stage runs (and declares as a dependency) only its own format's module.
    return importlib.import_module(f"counseltune.ingest.{fmt}")


def check_not_empty(tables: SourceTables, source: str, raw_dir: Path, fmt: str) -> None:
    """A source whose files hold no records at all is a wrong path or a broken export, never a valid input."""
    if tables.stats["records_in"] == 0:
        raise IngestError(f"ingest[{source}]: no {tables.stats['unit']}s at all in {raw_dir} (format {fmt}): the "
                          f"files there hold nothing; point sources.{source}.path in params.yaml at the real export, "
                          "or remove the source")


def check_quarantine_share(tables: SourceTables, source: str, limit: float) -> None:
    stats = tables.stats
    if stats["records_in"] == 0 or stats["quarantine_share"] <= limit:
        return
    lines = [
        f"ingest[{source}]: {stats['quarantined']} of {stats['records_in']} {stats['unit']}s quarantined "
        f"({stats['quarantine_share']:.1%}), above max_quarantine_share={limit:.1%}: fix those files, or accept the "
        f"loss by raising sources.{source}.max_quarantine_share in params.yaml. Top reasons:"
    ]
    quarantine = tables.quarantine
    for reason, count in list(stats["quarantine_reasons"].items())[:5]:
        examples = quarantine.filter(quarantine["reason"] == reason).head(3)
        lines.append(f"  - {reason}: {count}")
        for row in examples.iter_rows(named=True):
            lines.append(f"      {row['file']} record {row['record']}: {row['detail']}")
    raise IngestError("\n".join(lines))
