"""A stage's output files appear together or not at all.

Each output is first written under a `.tmp-<name>-<pid>` name beside its final path (so the rename stays on
one filesystem). Only when every file is written does `publish` rename them into place, driven by a small
journal (`.tmp-<first name>-<pid>.publish`) listing the renames. A SIGKILL while writing leaves the old
complete set untouched (plus `.tmp-*` files that DVC and git ignore); a SIGKILL between two renames leaves
the journal, which readers refuse (`pending_publish`) and the stage's next run completes before cleaning up.

Test hook: COUNSELTUNE_TEST_KILL_AFTER=<output name> (e.g. `dialogs.parquet` or just `dialogs`) SIGKILLs the
process right after that output is staged; `publish:<output name>` right after that output is renamed into
place. tests/tables/test_staged.py uses it to kill a real `counseltune ingest` mid-write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl

from counseltune.errors import CounseltuneError

KILL_HOOK = "COUNSELTUNE_TEST_KILL_AFTER"
JOURNAL_SUFFIX = ".publish"


class PendingPublishError(CounseltuneError):
    """A killed run stopped between renaming its outputs into place: the set on disk is mixed."""


class StagedOutputs:
    """Context manager: write a stage's outputs through `table`/`json`, published together on a clean exit.

    On entry, leftovers of an earlier killed run of the same outputs are completed (journal) or removed, and
    the output folders are created (a path that cannot be a folder fails here, before any work); on an
    exception, the staged files are removed and folders created here are removed again when empty.
    """

    def __init__(self, finals: Iterable[Path | str]):
        self.finals = [Path(f) for f in finals]
        if len({f.resolve() for f in self.finals}) != len(self.finals):
            raise ValueError(f"an output is listed twice: {self.finals}")
        self._staged: dict[Path, Path] = {}
        self._created: list[Path] = []

    def __enter__(self) -> StagedOutputs:
        clean_stale(self.finals)
        for folder in dict.fromkeys(f.parent for f in self.finals):
            missing = [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            self._created += missing  # deepest first: removed in this order when the stage fails
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
            return
        for staged in self._staged.values():
            staged.unlink(missing_ok=True)
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): leave it
                pass

    def path(self, final: Path | str) -> Path:
        """Where to write `final` for now."""
        final = Path(final)
        if final not in self.finals:
            raise ValueError(f"{final} is not one of this stage's outputs {self.finals}")
        staged = final.parent / f".tmp-{final.name}-{os.getpid()}"
        self._staged[final] = staged
        return staged

    def table(self, final: Path | str, df: pl.DataFrame, model: type[pa.DataFrameModel], *, validated: bool = False) -> None:
        from counseltune.tables.io import write_table

        write_table(df, self.path(final), model, validated=validated, atomic=False, where=str(final))
        _kill_point(Path(final).name)

    def json(self, final: Path | str, data: Any) -> None:
        self.path(final).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _kill_point(Path(final).name)

    def publish(self) -> None:
        unwritten = [str(f) for f in self.finals if f not in self._staged or not self._staged[f].exists()]
        if unwritten:
            raise RuntimeError(f"bug: the stage did not write {unwritten}; nothing was published")
        moves = [(os.path.abspath(self._staged[f]), os.path.abspath(f)) for f in self.finals]  # whatever the cwd
        journal = _journal_path(self.finals[0])
        part = journal.with_name(journal.name + ".part")
        part.write_text(json.dumps(moves), encoding="utf-8")
        os.replace(part, journal)  # from here on the set is committed: a crash is completed, never rolled back
        for staged, final in moves:
            os.replace(staged, final)
            _kill_point("publish:" + Path(final).name)
        journal.unlink()


def clean_stale(finals: Iterable[Path | str]) -> list[Path]:
    """Complete a publish a killed run left half done, then remove that run's `.tmp-*` leftovers.

    Only the `.tmp-<name>-*` entries of these outputs are touched, so ingest jobs of other sources running
    at the same time keep theirs. Returns what was removed.
    """
    finals = [Path(f) for f in finals]
    for journal in sorted(finals[0].parent.glob(f".tmp-{finals[0].name}-*{JOURNAL_SUFFIX}")):
        for staged, final in json.loads(journal.read_text(encoding="utf-8")):
            if Path(staged).exists():
                os.replace(staged, final)
        journal.unlink()
    removed = []
    for final in finals:
        for stale in [*final.parent.glob(f".tmp-{final.name}-*"), *final.parent.glob(f".{final.name}.tmp-*")]:
            # (the second pattern: temp files of write_table before it used the .tmp- prefix)
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def pending_publish(folder: Path) -> list[Path]:
    """Journals of a publish a killed run left half done in `folder` (the set there is mixed old/new)."""
    return sorted(Path(folder).glob(f".tmp-*{JOURNAL_SUFFIX}"))


def _journal_path(first: Path) -> Path:
    return first.parent / f".tmp-{first.name}-{os.getpid()}{JOURNAL_SUFFIX}"


def _kill_point(event: str) -> None:
    """The documented test hook (module docstring): die here, as a SIGKILL would, without cleaning up."""
    wanted = os.environ.get(KILL_HOOK)
    if wanted and wanted in (event, event.rsplit(".", 1)[0]):
        os.kill(os.getpid(), signal.SIGKILL)
