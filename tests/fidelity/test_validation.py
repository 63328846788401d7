"""Held-out validation: transcript-level split, the report, and (slow) the measurement on the full AnnoMI."""

from __future__ import annotations

import json

import polars as pl
import pytest

from counseltune.fidelity.embedded_coder.coder import code_turns, load_coder
from counseltune.fidelity.embedded_coder.validation import (
    ValidationError,
    split_transcripts,
    validate_coder,
)
from tests.conftest import dialog_rows, frames

from .conftest import FULL, SEED, annomi_tables


def test_split_is_seeded_disjoint_and_stratified(sample_tables):
    dialogs, _ = sample_tables
    split = split_transcripts(dialogs, SEED, 0.25)
    assert split == split_transcripts(dialogs, SEED, 0.25)
    assert not set(split["train"]) & set(split["test"])
    assert set(split["train"]) | set(split["test"]) == set(dialogs["dialog_id"])
    quality = {d: json.loads(m)["mi_quality"] for d, m in dialogs.select("dialog_id", "meta").iter_rows()}
    assert {quality[d] for d in split["test"]} == set(quality.values())  # both strata reach the held-out side
    assert any(split_transcripts(dialogs, s, 0.25) != split for s in range(1, 6))


def test_split_errors():
    one = frames(dialog_rows("toy:1", [("counselor", "Hi.")]))[0]
    with pytest.raises(ValidationError, match="at least 2 dialogs"):
        split_transcripts(one, 1)
    with pytest.raises(ValidationError, match="test_fraction"):
        split_transcripts(one, 1, 1.0)


def test_validate_coder_on_sample(tmp_path, sample_tables):
    dialogs, turns = sample_tables
    report = validate_coder(turns, dialogs, SEED, test_fraction=0.25, model_path=tmp_path / "coder.joblib")
    assert not set(report["train_dialogs"]) & set(report["test_dialogs"])
    assert set(report["agreement"]) == {"behavior", "question_subtype", "reflection_subtype", "code"}
    assert report["n_test_turns"] == turns.filter(pl.col("dialog_id").is_in(report["test_dialogs"]) & (pl.col("role") == "counselor")).height
    assert load_coder(tmp_path / "coder.joblib").train_dialogs == tuple(report["train_dialogs"])
    json.dumps(report)  # the report is plain JSON


def test_validate_coder_needs_dialogs_for_every_turn(sample_tables):
    dialogs, turns = sample_tables
    with pytest.raises(ValidationError, match="missing from dialogs"):
        validate_coder(turns, dialogs.head(2), SEED)


@pytest.mark.slow
@pytest.mark.skipif(not FULL.is_dir(), reason=f"full AnnoMI not found at {FULL} (a clean clone has no ../shared)")
def test_full_annomi_held_out_behavior_macro_f1():
    dialogs, turns = annomi_tables(FULL)
    assert dialogs.height == 113  # 20 transcripts stay with the data owner
    report = validate_coder(turns, dialogs, SEED)
    behavior = report["agreement"]["behavior"]
    # linear SVM + context bigrams: 0.766 / kappa 0.713 on this split (logistic + unigrams: 0.742 / 0.679)
    assert behavior["macro_f1"] >= 0.755, report["agreement"]
    assert behavior["kappa"] >= 0.69
    assert report["agreement"]["question_subtype"]["macro_f1"] >= 0.6
    assert report["agreement"]["reflection_subtype"]["macro_f1"] >= 0.55
    assert report["train_seconds"] < 60


@pytest.mark.slow
@pytest.mark.skipif(not FULL.is_dir(), reason=f"full AnnoMI not found at {FULL} (a clean clone has no ../shared)")
def test_full_annomi_coder_on_typical_utterances():
    from counseltune.fidelity.embedded_coder.coder import train_coder

    _, turns = annomi_tables(FULL)
    coder = train_coder(turns)
    dialog, rows = dialog_rows("toy:1", [
        ("client", "I drink maybe six beers every night, and my wife hates it."),
        ("counselor", "What do you think about your drinking?"),
        ("client", "I guess it is too much, but it helps me relax."),
        ("counselor", "Do you drink every day?"),
        ("client", "Pretty much, yes. I know I should cut down but it's hard."),
        ("counselor", "Part of you wants to cut down, and part of you worries about losing the way you relax."),
    ])
    coded = code_turns(coder, frames((dialog, rows))[1])
    assert coded["mi_behavior"].to_list() == ["question", "question", "reflection"]
    assert coded["mi_code"].to_list()[:2] == ["open_question", "closed_question"]
