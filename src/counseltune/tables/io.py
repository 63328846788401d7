"""Parquet I/O for the canonical tables: validate (data, not only schema) before every write."""

from __future__ import annotations

import os
from pathlib import Path

import pandera.errors
import pandera.polars as pa
import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.tables.staged import pending_publish


class TableError(CounseltuneError, ValueError):
    """A table broke its contract; the message names the table, the file and the failed checks."""


def _columns(model: type[pa.DataFrameModel]) -> dict[str, pl.DataType]:
    schema = model.to_schema()
    return {name: col.dtype.type for name, col in schema.columns.items()}


def empty_table(model: type[pa.DataFrameModel]) -> pl.DataFrame:
    """A zero-row frame with the model's columns and dtypes (a source with nothing quarantined, say)."""
    return pl.DataFrame(schema=_columns(model))


def validate(df: pl.DataFrame, model: type[pa.DataFrameModel], where: str) -> pl.DataFrame:
    """Validate a DataFrame (an eager frame, so Pandera checks values and not only the schema)."""
    if isinstance(df, pl.LazyFrame):  # a LazyFrame would only get schema-level checks
        df = df.collect()
    columns = list(_columns(model))
    missing = [c for c in columns if c not in df.columns]
    extra = [c for c in df.columns if c not in columns]
    if missing or extra:
        raise TableError(f"{model.__name__} table for {where}: missing columns {missing}, unexpected {extra}")
    df = df.select(columns)
    if df.is_empty():
        # no values to check; the dtypes still must match (Pandera's fixed cost is ~8 ms a table)
        return _check_empty_dtypes(df, model, where)
    try:
        return model.validate(df, lazy=True)
    except pandera.errors.SchemaErrors as err:
        raise TableError(f"{model.__name__} table for {where} failed validation:\n{_summarize(err)}") from None


def _check_empty_dtypes(df: pl.DataFrame, model: type[pa.DataFrameModel], where: str) -> pl.DataFrame:
    expected = _columns(model)
    wrong = {c: str(df.schema[c]) for c in df.columns if df.schema[c] != expected[c] and df.schema[c] != pl.Null}
    if wrong:
        raise TableError(f"{model.__name__} table for {where}: wrong dtypes {wrong}, expected {expected}")
    return df.cast(expected)


def write_table(df: pl.DataFrame, path: Path | str, model: type[pa.DataFrameModel], *, validated: bool = False,
                atomic: bool = True, where: str | None = None) -> pl.DataFrame:
    """Validate, then write atomically (a killed job never leaves a half-written parquet).

    validated=True skips the check for a frame that `validate` returned just before (ingest validates in
    build_tables); checking it twice cost half the validation time of a full CPsyCounD ingest. atomic=False
    writes `path` directly: for a path that is itself a temp name (tables.staged.StagedOutputs), which names
    the final file as `where` in errors. The temp file is `.tmp-<name>-<pid>` (ignored by DVC and git); one a
    killed earlier run left behind is removed here.
    """
    path = Path(path)
    valid = df if validated else validate(df, model, where or str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not atomic:
        valid.write_parquet(path, compression="zstd", statistics=False)
        return valid
    for stale in [*path.parent.glob(f".tmp-{path.name}-*"), *path.parent.glob(f".{path.name}.tmp-*")]:
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    valid.write_parquet(tmp, compression="zstd", statistics=False)
    os.replace(tmp, path)
    return valid


def read_table(path: Path | str, model: type[pa.DataFrameModel], check: bool = True) -> pl.DataFrame:
    """Read a parquet table; by default re-validate it, so a hand-edited file cannot slip through."""
    path = Path(path)
    if pending_publish(path.parent):  # a run was killed while renaming its outputs: this folder holds a mixed set
        raise TableError(f"{path.parent} holds a half-published set of tables ({pending_publish(path.parent)[0].name}): "
                         "re-run the stage that writes it (its next run completes or replaces the set)")
    if not path.exists():
        raise TableError(f"{model.__name__} table not found at {path}: run the stage that writes it first")
    df = pl.read_parquet(path)
    return validate(df, model, str(path)) if check else df


def _summarize(err: pandera.errors.SchemaErrors, limit: int = 8) -> str:
    cases = err.failure_cases
    lines = []
    for row in cases.head(limit).iter_rows(named=True):
        lines.append(f"  - column {row.get('column')!s}: check {row.get('check')!s} failed on {row.get('failure_case')!s}")
    if cases.height > limit:
        lines.append(f"  ... and {cases.height - limit} more failures")
    return "\n".join(lines) or str(err)
