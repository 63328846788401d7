"""Atomic training checkpoints: step-<N>/ folders, a `latest` pointer, pruning, and RNG state capture.

Layout of a checkpoint folder (what finetune.py puts in it is its own business; this module only makes
the folder appear whole or not at all):

    <checkpoint_dir>/
      step-8/                  complete: written as .tmp-step-8/, checkpoint.json last, then renamed
        checkpoint.json        {"step": 8, ...} - its presence (with the matching step) marks completeness
        ...                    adapter/, optimizer.pt, scheduler.pt, rng-<rank>.pt (see finetune.py)
      step-16/
      latest                   "step-16": written atomically after the rename (tmp file + os.replace)
      .tmp-step-24/            a half-written checkpoint (killed mid-save): ignored, removed by the next save

Resolution (`latest_checkpoint`) takes the highest complete step-<N>/ folder rather than trusting the
pointer, so a kill between the rename and the pointer update loses nothing; the pointer is for people and
tools (`cat models/checkpoints/NAME/latest`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

META = "checkpoint.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def save_checkpoint(checkpoint_dir: Path, step: int, write: Callable[[Path], None], meta: dict[str, Any],
                    keep: int = 2) -> Path:
    """Single-process save: write(tmp_dir) fills the folder, then it is committed as step-<step>/; returns it."""
    tmp = begin_checkpoint(checkpoint_dir, step)
    write(tmp)
    return commit_checkpoint(tmp, step, meta, keep)


def begin_checkpoint(checkpoint_dir: Path, step: int) -> Path:
    """A fresh, empty temp folder for step <step> (a stale one from a killed save is removed first)."""
    tmp = temp_path(checkpoint_dir, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def temp_path(checkpoint_dir: Path, step: int) -> Path:
    """Where step <step> is written before it is committed (every rank agrees on it)."""
    return Path(checkpoint_dir) / f".tmp-step-{step}"


def commit_checkpoint(tmp: Path, step: int, meta: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint.json last, fsync, rename tmp -> step-<step>/, point `latest` at it, keep the last `keep`."""
    checkpoint_dir = tmp.parent
    _write_json_durable(tmp / META, {**meta, "step": step})
    _fsync_tree(tmp)
    final = checkpoint_dir / f"step-{step}"
    if final.exists():  # re-saving a step (e.g. preempted right after a periodic save): replace it whole
        stale = checkpoint_dir / f".old-step-{step}"
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(final, stale)
        shutil.rmtree(stale)
    os.rename(tmp, final)
    _fsync_dir(checkpoint_dir)
    write_text_atomic(checkpoint_dir / LATEST, final.name + "\n")
    prune_checkpoints(checkpoint_dir, keep)
    return final


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete step-<N>/ folder with the highest N, or None (temp folders and folders without meta are ignored)."""
    complete = list_checkpoints(checkpoint_dir)
    return complete[-1] if complete else None


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest step first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and _is_complete(path, int(match.group(1))):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint.json of a complete checkpoint."""
    return json.loads((Path(checkpoint) / META).read_text(encoding="utf-8"))


def prune_checkpoints(checkpoint_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints, and leftovers (temp folders, incomplete step dirs)."""
    complete = list_checkpoints(checkpoint_dir)
    kept = set(complete[-keep:]) if keep > 0 else set()
    for path in Path(checkpoint_dir).iterdir():
        leftover = path.is_dir() and (path.name.startswith((".tmp-step-", ".old-step-")) or _STEP_DIR.match(path.name))
        if leftover and path not in kept:
            shutil.rmtree(path, ignore_errors=True)


def clear_checkpoints(checkpoint_dir: Path) -> None:
    """Remove every checkpoint (used when the existing ones belong to another configuration)."""
    prune_checkpoints(checkpoint_dir, keep=0)
    (Path(checkpoint_dir) / LATEST).unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) RNG states, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file so readers see the old or the new content, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _is_complete(path: Path, step: int) -> bool:
    try:
        return read_meta(path).get("step") == step
    except (OSError, ValueError):
        return False


def _write_json_durable(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(root: Path) -> None:
    # A rename is only as durable as the data it points at: flush every file before committing.
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
