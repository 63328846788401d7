"""The `slurm_cluster` fixture: a real single-node SLURM (slurmctld + slurmd on localhost) for the session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.cluster.slurm import SlurmCluster, SlurmUnavailable, ensure_installed

# One fixed folder per user, so a run that was killed leaves pid files the next run uses to stop its daemons.
CLUSTER_ROOT = Path(tempfile.gettempdir()) / f"counseltune-slurm-{os.getuid()}"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running SLURM cluster; SLURM_CONF points at it for this session (so Snakemake and its jobs use it)."""
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
