# Helpers shared by the rules: the run's sources, the code each stage runs, and every output of the run.
import os
import re
from pathlib import Path

# Every stage re-reads params.yaml itself (as under DVC), so a --config override would be ignored by the
# stages: refuse it instead of running with two different configs.
if workflow.config_settings.config or len(workflow.config_settings.configfiles or []) > 1:
    raise WorkflowError(
        "counseltune reads params.yaml in every stage: edit params.yaml (or use `dvc exp run -S key=value`) "
        "instead of --config/--configfile"
    )

SOURCES = list(config["sources"])
PKG = "src/counseltune"
TABLES = ["dialogs.parquet", "turns.parquet", "quarantine.parquet"]


# The code a stage runs is computed from imports (counseltune/codedeps.py), for this checkout's own files:
# cli.py plus the import closure of what the stage's command imports. dvc.yaml holds the same lists, written by
# `counseltune code-deps --write` and checked by the tests.
from counseltune.codedeps import CodeTree
from counseltune.stage_params import declared_values

CODE_TREE = CodeTree(workflow.basedir)


def stage_code(command, *extra_modules):
    """The source files `counseltune <command>` runs, as inputs: editing one re-runs exactly the stages that run it."""
    return CODE_TREE.stage_code(command, *extra_modules)


def declared(command, **job):
    """Rule params: the values of the params keys `counseltune <command>` declares (counseltune/stage_params.py,
    the same table the CLI enforces and dvc.yaml's params lists are written from). job maps a key placeholder to
    the wildcard that fills it, e.g. model="model"."""
    if not job:
        return declared_values(config, command)
    return lambda wc: declared_values(config, command, **{key: wc[name] for key, name in job.items()})


def ingest_code(wildcards):
    """The ingest code, with the one format reader this source's params choose (imported by name at run time)."""
    return CODE_TREE.ingest_code(config["sources"][wildcards.source]["format"])


def model(wildcards):
    """The registry entry of a job's model."""
    return config["models"][wildcards.model]


def raw_files(wildcards):
    """Every file of a source (not its folder: a folder's mtime does not change when a file in it is edited)."""
    root = Path(config["sources"][wildcards.source]["path"])
    if not root.is_dir():
        raise WorkflowError(f"sources.{wildcards.source}.path: {root} is not a folder; fix it in params.yaml")
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def data_outputs():
    return (
        expand("data/interim/{source}/{table}", source=SOURCES, table=TABLES)
        + expand("metrics/ingest/{source}.json", source=SOURCES)
        + expand("data/processed/{table}", table=TABLES)
        + ["metrics/curate.json"]
        + DATA_REPORT
    )


def all_outputs():
    return data_outputs() + SYNTH_OUTPUTS + MODEL_OUTPUTS + FIDELITY_OUTPUTS
