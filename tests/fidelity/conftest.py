"""AnnoMI as canonical tables (the bundled sample, the test fixtures, the full corpus when present) and a coder trained on the sample."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from counseltune.ingest import annomi
from counseltune.ingest.base import IngestOptions, Ledger, build_tables

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "AnnoMI"
FIXTURES = REPO / "tests" / "fixtures" / "annomi"
FULL = REPO.parent / "shared" / "data" / "raw" / "AnnoMI"
SEED = 20240419


def annomi_tables(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(dialogs, turns) of an AnnoMI folder; same_speaker=keep so one turn is one annotated utterance."""
    ledger = Ledger("annomi", annomi.UNIT)
    parsed = annomi.read(root, ledger, {"variant": "full"})
    tables = build_tables("annomi", "annomi", parsed, ledger, IngestOptions(language="en", method="MI", same_speaker="keep"))
    return tables.dialogs, tables.turns


def ingested_annomi(params: dict, root: Path, out: Path) -> Path:
    """The real ingest of an AnnoMI folder as the source fidelity.coder.source names: the miti-coder stage's input."""
    from counseltune.ingest.run import ingest_source

    source = params["fidelity"]["coder"]["source"]
    ingest_source(params, source, root, out / source, out / f"{source}.json")
    return out / source


@pytest.fixture(scope="session")
def sample_ingested(tmp_path_factory) -> Path:
    """data/interim/annomi of the bundled sample, ingested with params.yaml."""
    from counseltune.config import load_params

    return ingested_annomi(load_params(REPO / "params.yaml"), SAMPLE, tmp_path_factory.mktemp("interim"))


@pytest.fixture(scope="session")
def sample_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    return annomi_tables(SAMPLE)


@pytest.fixture(scope="session")
def sample_split(sample_tables) -> dict[str, list[str]]:
    from counseltune.fidelity.embedded_coder.validation import split_transcripts

    return split_transcripts(sample_tables[0], SEED, test_fraction=0.25)


@pytest.fixture(scope="session")
def sample_coder(sample_tables, sample_split):
    from counseltune.fidelity.embedded_coder.coder import train_coder

    return train_coder(sample_tables[1], sample_split["train"])


@pytest.fixture
def loopback(monkeypatch, tmp_path):
    """(server, client_for(model)): the scripted loopback judge server of test_judge_loopback, one per test."""
    from .test_judge_loopback import serve

    yield from serve(monkeypatch, tmp_path)
