"""One params file per registry entry (models/registry/<model>.yaml), so DVC can track one model's keys.

DVC reads a declared params key by splitting it on every dot (dpath), with no quoting: `models.<name>.decode` is
missing for a name such as llama-3.1-8b-instruct or qwen2.5-7b-instruct. A file path may hold dots, so dvc.yaml
declares a model's keys in its own file (`models/registry/${item}.yaml: [decode, ...]`), which the model-registry
stage writes from params.yaml's `models:`. A change to one entry rewrites its file alone with new content, so DVC
re-runs only that model's stages, as Snakemake does from params.yaml directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def write_registry(models: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write each entry of `models` to out_dir/<name>.yaml (the folder holds nothing else afterwards)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):  # an entry removed from params.yaml must not leave its file behind
        stale.unlink()
    written = []
    for name, entry in models.items():
        path = out_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_plain(entry), sort_keys=True, allow_unicode=True), encoding="utf-8")
        written.append(path)
    return written


def _plain(value: Any) -> Any:
    """A ParamsView (or any mapping/sequence) as plain dicts and lists, for yaml.safe_dump."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
