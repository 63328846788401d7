"""One source's raw files -> data/interim/<source>/{dialogs,turns,quarantine}.parquet + its ingest stats (JSON)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from counseltune.config import source_policies
from counseltune.ingest.base import IngestError, IngestOptions, Ledger, SourceTables, build_tables
from counseltune.schemas.tables import Dialogs, Quarantine, Turns
from counseltune.tables.io import write_table

FORMATS = ("cpsycound", "cpsycoune", "psydtcorpus", "annomi", "kmi")
TABLES = ("dialogs.parquet", "turns.parquet", "quarantine.parquet")


def ingest_source(params: dict[str, Any], source: str, raw_dir: Path, out_dir: Path, stats_path: Path) -> SourceTables:
    """Read, check and write one source; fail when its quarantined share passes the threshold."""
    tables = read_source(params, source, raw_dir)
    check_quarantine_share(tables, source, source_policies(params, source)["max_quarantine_share"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # build_tables has just validated all three frames against these models
    write_table(tables.dialogs, out_dir / "dialogs.parquet", Dialogs, validated=True)
    write_table(tables.turns, out_dir / "turns.parquet", Turns, validated=True)
    write_table(tables.quarantine, out_dir / "quarantine.parquet", Quarantine, validated=True)
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    stats_path.write_text(json.dumps(tables.stats, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
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
    parsed = reader.read(Path(raw_dir), ledger, options.extra)
    return build_tables(source, spec["format"], parsed, ledger, options)


def load_reader(fmt: str):
    if fmt not in FORMATS:
        raise IngestError(f"unknown source format {fmt!r}; known formats: {', '.join(FORMATS)}")
    # Imported on demand: a stage runs (and declares as a dependency) only its own format's module.
    return importlib.import_module(f"counseltune.ingest.{fmt}")


def check_quarantine_share(tables: SourceTables, source: str, limit: float) -> None:
    stats = tables.stats
    if stats["records_in"] == 0 or stats["quarantine_share"] <= limit:
        return
    lines = [
        f"ingest[{source}]: {stats['quarantined']} of {stats['records_in']} {stats['unit']}s quarantined "
        f"({stats['quarantine_share']:.1%}), above max_quarantine_share={limit:.1%}. Top reasons:"
    ]
    quarantine = tables.quarantine
    for reason, count in list(stats["quarantine_reasons"].items())[:5]:
        examples = quarantine.filter(quarantine["reason"] == reason).head(3)
        lines.append(f"  - {reason}: {count}")
        for row in examples.iter_rows(named=True):
            lines.append(f"      {row['file']} record {row['record']}: {row['detail']}")
    lines.append(
        f"Fix those files, or accept the loss by raising sources.{source}.max_quarantine_share in params.yaml."
    )
    raise IngestError("\n".join(lines))
