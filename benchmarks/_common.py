"""What every benchmark script shares: the machine description, the RESULTS.md section writer, the model cache.

The scripts run as `python benchmarks/<script>.py`, so this folder is on sys.path and `import _common` works.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

MODEL_CACHE = Path(os.environ.get("COUNSELTUNE_MODEL_CACHE", Path.home() / ".cache" / "counseltune" / "models"))
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Each script in benchmarks/ writes (and on a re-run replaces) only its own section, delimited by "
    "`<!-- <script>:start -->` / `<!-- <script>:end -->`. See benchmarks/README.md.\n\n"
)


def markers(script: str) -> tuple[str, str]:
    return f"<!-- {script}:start -->", f"<!-- {script}:end -->"


def shell(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              check=False).stdout.strip()
    except OSError:
        return "?"


def machine(*packages: str) -> dict[str, str]:
    """Date, CPU, RAM, OS, Python, load average and the versions of the given packages."""
    cpu, mem = "?", "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    loadavg = Path("/proc/loadavg")
    return {"date": shell(["date"]), "nproc": shell(["nproc"]) or str(os.cpu_count()), "cpu": cpu, "ram": mem,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            **{name: version(name) for name in packages},
            "load": " ".join(loadavg.read_text().split()[:3]) if loadavg.exists() else "?"}


def write_section(out: Path, section: str, script: str) -> None:
    """Replace this script's delimited section of RESULTS.md (or append it), leaving the others alone."""
    start, end = markers(script)
    if out.exists():
        text = out.read_text(encoding="utf-8")
        if start in text and end in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1].lstrip("\n")
            text = head + section + ("\n" + tail if tail else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = RESULTS_HEADER + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def ensure_model(name: str, model_dir: Path | None, params: dict, log) -> Path:
    """The converted model folder: model_dir, else the shared cache (built with prepare_base_model when missing)."""
    if model_dir is not None:
        return model_dir
    out = MODEL_CACHE / name
    if not (out / "counseltune_base.json").exists():
        from counseltune.models.base import prepare_base_model

        log(f"building the base model into {out} ...")
        prepare_base_model(name, params["models"][name], out)
    return out
