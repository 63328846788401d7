"""Where a run's numbers came from: code version, params, data hashes, packages and hardware.

Written beside the comparison report (provenance.json) so a table in a paper can be traced to one commit,
one params file and the exact data and adapters it was computed from.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

PACKAGES = ("counseltune", "torch", "transformers", "peft", "accelerate", "datasets", "snakemake", "dvc",
            "pandera", "polars", "sacrebleu", "rouge-score", "jieba", "openai", "scikit-learn")


def provenance(root: Path, params_path: Path, inputs: list[Path]) -> dict[str, Any]:
    """The provenance record of a run rooted at root; inputs are files or folders the report was built from."""
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": _git(root),
        "params": {"path": params_path.as_posix(), "sha256": file_sha256(params_path)},
        "inputs": {p.as_posix(): tree_sha256(p) for p in inputs if p.exists()},
        "dvc_lock": _dvc_lock_stages(root / "dvc.lock"),
        "packages": {name: _version(name) for name in PACKAGES},
        "hardware": hardware(),
    }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's (relative path, file hash) list: renames and edits both show."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "os": f"{platform.system()} {platform.release()}",
                            "python": platform.python_version(), "cpus": os.cpu_count(), "cpu": _cpu_name(),
                            "ram_gib": _ram_gib(), "gpus": []}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # provenance must not fail a report
        pass
    return info


def _git(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _dvc_lock_stages(lock: Path) -> dict[str, Any] | None:
    """Each stage's recorded output hashes from dvc.lock (absent when the run was made by Snakemake alone)."""
    if not lock.exists():
        return None
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {name: {o["path"]: o.get("md5") for o in stage.get("outs", [])} for name, stage in stages.items()}


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None
