"""Run a long command under a watchdog that fails on a hang, not on a slow machine.

A pipeline run under load is slow but keeps making progress: its output grows, its log files change. The
watchdog kills the command (its whole process group) only when nothing moved for `stall_s` seconds, or past a
generous `limit_s` cap, and the failure names the step that was running and for how long.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# How an engine says what it is running: Snakemake's job headers, DVC's stage lines, our stages' log prefix.
STEP = re.compile(r"^(?:local)?rule (\S+):$|^Running stage '([^']+)'|^(counseltune [\w-]+(?: \S+)?):")
STALL_S = float(os.environ.get("COUNSELTUNE_TEST_STALL_S", 900))  # no output, no log change: a hang
LIMIT_S = float(os.environ.get("COUNSELTUNE_TEST_LIMIT_S", 4 * 3600))  # a cap far above any loaded run


class Progress:
    """What a running command has done so far: output size, newest change under its log folders, last step."""

    def __init__(self, logs: list[Path], watched: list[Path]):
        self.logs, self.watched = logs, watched
        self.size, self.newest, self.moved_at = -1, 0.0, time.monotonic()
        self.step, self.step_since = "(starting)", time.monotonic()

    def poll(self) -> None:
        size = sum(log.stat().st_size for log in self.logs if log.exists())
        newest = max((_newest_mtime(folder) for folder in self.watched), default=0.0)
        if size != self.size or newest > self.newest:
            self.size, self.newest, self.moved_at = size, max(newest, self.newest), time.monotonic()
            step = next(filter(None, (last_step(log) for log in self.logs)), None)
            if step and step != self.step:
                self.step, self.step_since = step, time.monotonic()

    def idle_s(self) -> float:
        return time.monotonic() - self.moved_at


def last_step(log: Path) -> str | None:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    for line in reversed(text.splitlines()):
        found = STEP.match(line.strip())
        if found:
            return next(group for group in found.groups() if group)
    return None


def run_watched(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, *, stall_s: float = STALL_S,
                limit_s: float = LIMIT_S, watched: list[Path] | None = None,
                on_timeout: Callable[[], None] | None = None,
                while_running: Callable[[subprocess.Popen], None] | None = None,
                stderr_log: Path | None = None) -> tuple[int, str, str]:
    """Run cmd with its output in log (stderr too, unless stderr_log is given); return (exit code, stdout,
    stderr). Fail the test on a stall or past the cap, naming the step that was running."""
    logs = [log] + ([stderr_log] if stderr_log is not None else [])
    progress = Progress(logs, watched if watched is not None else [cwd / "logs", cwd / ".snakemake" / "log"])
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out, \
            (open(stderr_log, "w", encoding="utf-8") if stderr_log is not None else _same(out)) as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err if err is not out else subprocess.STDOUT,
                                text=True, start_new_session=True)
        reason = None
        while reason is None:
            try:
                code = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                progress.poll()
                if progress.idle_s() > stall_s:
                    reason = f"no progress for {progress.idle_s():.0f} s (stall limit {stall_s:.0f} s)"
                elif time.monotonic() - started > limit_s:
                    reason = f"still running after {limit_s:.0f} s (cap)"
                elif while_running is not None:
                    while_running(proc)
        if reason is not None:
            _kill_group(proc)
            if on_timeout is not None:
                on_timeout()
            text = "\n".join(_read(path)[-4000:] for path in logs)
            pytest.fail(f"{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4]))} ... {reason}; "
                        f"step running: {progress.step} (for {time.monotonic() - progress.step_since:.0f} s), "
                        f"{time.monotonic() - started:.0f} s in all. Output ({', '.join(map(str, logs))}):\n{text}",
                        pytrace=False)
    return code, _read(log), _read(stderr_log) if stderr_log is not None else ""


class _same:
    """A context manager that hands back an already open file without closing it."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self.handle

    def __exit__(self, *exc):
        return False


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def _newest_mtime(folder: Path) -> float:
    newest = 0.0
    if folder.is_dir():
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                except OSError:
                    continue
    return newest
