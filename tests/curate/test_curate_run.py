"""curate() end to end on a real ingested source: a run that would keep nothing fails instead of writing it."""

import copy

import pytest

from counseltune.curate.run import CurateError, curate
from counseltune.errors import CounseltuneError
from counseltune.ingest.run import ingest_source


@pytest.fixture
def kmi_only(params, repo, tmp_path):
    params = copy.deepcopy(params)
    params["sources"] = {"kmi": params["sources"]["kmi"]}
    ingest_source(params, "kmi", repo / params["sources"]["kmi"]["path"], tmp_path / "interim" / "kmi",
                  tmp_path / "stats" / "kmi.json")
    return params


def test_curation_that_drops_every_dialog_fails_and_writes_nothing(kmi_only, tmp_path):
    kmi_only["curate"]["max_utterance_chars"] = 1  # valid on its own, yet no real dialog passes it
    with pytest.raises(CurateError, match=r"all 24 dialogs were dropped .*too_long.*curate\.\*") as err:
        curate(kmi_only, tmp_path / "interim", tmp_path / "processed", tmp_path / "stats" / "curate.json")
    assert isinstance(err.value, CounseltuneError)
    assert not (tmp_path / "processed").exists() and not (tmp_path / "stats" / "curate.json").exists()

