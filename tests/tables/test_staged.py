"""A stage's outputs appear together or not at all: real `counseltune ingest` processes SIGKILLed mid-write.

The kill lands at a deterministic point through the documented test hook COUNSELTUNE_TEST_KILL_AFTER
(counseltune.tables.staged): right after one output is staged, or right after one is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from counseltune.schemas.tables import Turns
from counseltune.tables.io import TableError, read_table
from counseltune.tables.staged import StagedOutputs, clean_stale

TABLES = ["dialogs.parquet", "turns.parquet", "quarantine.parquet"]


def ingest(repo: Path, raw: Path, work: Path, kill_after: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COUNSELTUNE_TEST_KILL_AFTER"}
    if kill_after:
        env["COUNSELTUNE_TEST_KILL_AFTER"] = kill_after
    return subprocess.run([sys.executable, "-m", "counseltune.cli", "ingest", "--source", "kmi", "--raw", str(raw),
                           "--out-dir", str(work / "interim" / "kmi"), "--stats", str(work / "metrics" / "kmi.json")],
                          cwd=repo, env=env, capture_output=True, text=True)


def outputs(work: Path) -> dict[str, bytes]:
    """The final outputs present (by name) and their bytes."""
    files = [work / "interim" / "kmi" / t for t in TABLES] + [work / "metrics" / "kmi.json"]
    return {f.name: f.read_bytes() for f in files if f.exists()}


def leftovers(work: Path) -> list[str]:
    return sorted(p.name for p in work.rglob(".tmp-*"))


@pytest.fixture
def raws(tmp_path, repo) -> tuple[Path, Path]:
    """The bundled KMI sample, and a smaller one (one of its two files) whose tables differ."""
    full = repo / "data" / "sample" / "KMI_prerelease"
    small = tmp_path / "kmi_small"
    small.mkdir()
    shutil.copy(sorted(full.glob("KMI_*.json"))[0], small)
    return full, small


def test_a_kill_while_writing_leaves_nothing_and_the_rerun_cleans_up(tmp_path, repo, raws):
    result = ingest(repo, raws[0], tmp_path, kill_after="dialogs")
    assert result.returncode == -signal.SIGKILL
    assert outputs(tmp_path) == {}  # not dialogs.parquet without its siblings
    assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".tmp-dialogs.parquet-")

    result = ingest(repo, raws[0], tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(outputs(tmp_path)) == {*TABLES, "kmi.json"}
    assert leftovers(tmp_path) == []


def test_a_kill_while_writing_keeps_the_old_complete_set(tmp_path, repo, raws):
    full, small = raws
    assert ingest(repo, full, tmp_path).returncode == 0
    before = outputs(tmp_path)
    assert len(before) == 4

    result = ingest(repo, small, tmp_path, kill_after="quarantine.parquet")  # the last table staged, stats not yet
    assert result.returncode == -signal.SIGKILL
    assert outputs(tmp_path) == before  # byte for byte
    assert len(leftovers(tmp_path)) == 3

    assert ingest(repo, small, tmp_path).returncode == 0
    after = outputs(tmp_path)
    assert set(after) == set(before) and after["dialogs.parquet"] != before["dialogs.parquet"]
    assert json.loads(after["kmi.json"])["records_in"] < json.loads(before["kmi.json"])["records_in"]
    assert leftovers(tmp_path) == []


def test_a_kill_between_renames_is_refused_by_readers_and_completed_by_the_next_run(tmp_path, repo, raws):
    full, small = raws
    assert ingest(repo, full, tmp_path).returncode == 0
    result = ingest(repo, small, tmp_path, kill_after="publish:dialogs.parquet")
    assert result.returncode == -signal.SIGKILL
    interim = tmp_path / "interim" / "kmi"
    with pytest.raises(TableError, match="half-published"):  # new dialogs beside old turns: never read silently
        read_table(interim / "turns.parquet", Turns)

    clean_stale([interim / t for t in TABLES] + [tmp_path / "metrics" / "kmi.json"])  # what the next run does first
    assert leftovers(tmp_path) == []
    dialogs = pl.read_parquet(interim / "dialogs.parquet")
    turns = read_table(interim / "turns.parquet", Turns)
    stats = json.loads((tmp_path / "metrics" / "kmi.json").read_text(encoding="utf-8"))
    assert dialogs.height == stats["dialogs"] < 24  # the whole new (smaller) set, tables and stats together
    assert set(turns["dialog_id"]) == set(dialogs["dialog_id"])


def test_leftovers_are_ignored_by_dvc_and_git(tmp_path, repo):
    probe = repo / "data" / "interim" / f"probe-{os.getpid()}"
    names = [probe / ".tmp-dialogs.parquet-123", probe / ".tmp-dialogs.parquet-123.publish",
             probe / ".dialogs.parquet.tmp-123"]  # the last: write_table's temp name before .tmp-
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "check-ignore", *map(str, names), str(probe / "dialogs.parquet")], cwd=repo,
                            capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(map(str, names))
    git = subprocess.run(["git", "check-ignore", "--no-index", "metrics/ingest/.tmp-kmi.json-7"], cwd=repo,
                         capture_output=True, text=True)
    assert git.returncode == 0


def test_a_failing_stage_removes_what_it_staged_and_the_folders_it_made(tmp_path):
    final = tmp_path / "new" / "deeper" / "stats.json"
    with pytest.raises(KeyError):
        with StagedOutputs([final]) as out:
            out.json(final, {"a": 1})
            raise KeyError("the stage failed after writing")
    assert not (tmp_path / "new").exists()

