"""Shared test helpers: the repo root, the full raw corpora (when present), small table builders."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = REPO.parent / "shared" / "data" / "raw"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def params() -> dict:
    from counseltune.config import load_params

    return load_params(REPO / "params.yaml")


def dialog_rows(dialog_id: str, turns: list[tuple[str, str]], source: str = "toy", topic: str | None = None) -> tuple[dict, list[dict]]:
    """One dialogs row and its turns rows, valid against the contracts."""
    dialog = {
        "dialog_id": dialog_id, "source": source, "language": "zh", "topic": topic, "method": "unspecified",
        "split": None, "n_turns": len(turns), "provenance_file": f"{dialog_id}.txt", "provenance_record": "-",
        "meta": json.dumps({}),
    }
    rows = [
        {"dialog_id": dialog_id, "turn_index": i, "role": role, "text": text, "text_raw": text, "mi_behavior": None,
         "mi_code": None, "client_talk": None, "code_agreement": None, "n_annotators": None, "location": f"{dialog_id}:{i + 1}"}
        for i, (role, text) in enumerate(turns)
    ]
    return dialog, rows


def frames(*dialogs: tuple[dict, list[dict]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    from counseltune.schemas.tables import Dialogs, Turns
    from counseltune.tables.io import empty_table

    d = pl.DataFrame([x[0] for x in dialogs], schema=empty_table(Dialogs).schema)
    t = pl.DataFrame([row for x in dialogs for row in x[1]], schema=empty_table(Turns).schema)
    return d, t


MODEL_CACHE = Path(os.environ.get("COUNSELTUNE_MODEL_CACHE", Path.home() / ".cache" / "counseltune" / "models"))


@pytest.fixture(scope="session")
def base_model_dir():
    """name -> a converted base model folder, built once per machine by the real base-model step."""
    from counseltune.config import load_params

    params = load_params(REPO / "params.yaml")

    def get(name: str) -> Path:
        out = MODEL_CACHE / name
        if not (out / "counseltune_base.json").exists():
            from counseltune.models.base import prepare_base_model

            prepare_base_model(name, params["models"][name], out)
        return out

    return get


@pytest.fixture(scope="session")
def processed_sample(tmp_path_factory) -> Path:
    """data/processed built from the bundled sample by the real ingest and curate steps (once per session)."""
    from counseltune.config import load_params
    from counseltune.curate.run import curate
    from counseltune.ingest.run import ingest_source

    params = load_params(REPO / "params.yaml")
    root = tmp_path_factory.mktemp("processed-sample")
    for name, source in params["sources"].items():
        ingest_source(params, name, REPO / source["path"], root / "interim" / name, root / "stats" / f"{name}.json")
    curate(params, root / "interim", root / "processed", root / "stats" / "curate.json")
    return root / "processed"


# The `slurm_cluster` fixture: a real single-node SLURM (slurmctld + slurmd on localhost) for the session, shared by
# the cluster tests and the study rehearsal (one cluster per session, started by whichever needs it first).
# One fixed folder per user, so a run that was killed leaves pid files the next run uses to stop its daemons.
CLUSTER_ROOT = Path(tempfile.gettempdir()) / f"counseltune-slurm-{os.getuid()}"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running SLURM cluster; SLURM_CONF points at it for this session (so Snakemake and its jobs use it)."""
    from tests.cluster.slurm import SlurmCluster, SlurmUnavailable, ensure_installed

    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster needs root (SlurmUser=root, munged, apt-get install of the packages)")
    try:
        ensure_installed()
    except SlurmUnavailable as reason:
        pytest.skip(f"no SLURM for the cluster tests: {reason}")
    # MinJobAge=3600: slurmctld keeps every finished job of a run, so a test can read its records afterwards
    cluster = SlurmCluster(CLUSTER_ROOT, min_job_age=3600)
    cluster.startup_seconds = cluster.start()
    print(f"\nSLURM test cluster up in {cluster.startup_seconds:.1f} s ({cluster.conf})")
    previous = {key: os.environ.get(key) for key in ("SLURM_CONF", "PATH")}
    # every subprocess of the session (snakemake, sbatch, squeue, the jobs via --export=ALL) uses this cluster
    os.environ.update({key: cluster.env()[key] for key in previous})
    try:
        yield cluster
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.stop()
