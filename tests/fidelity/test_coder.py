"""The embedded coder on real AnnoMI (the bundled sample and the test fixtures) with real sklearn models."""

from __future__ import annotations

import joblib
import numpy as np
import polars as pl
import pytest
from counseltune.schemas.tables import MI_BEHAVIORS

from counseltune.fidelity.embedded_coder import coder as coder_module
from counseltune.fidelity.embedded_coder.coder import (
    CoderError,
    TurnsError,
    code_turns,
    load_coder,
    save_coder,
    softmax_scores,
    train_coder,
)
from counseltune.fidelity.embedded_coder.features import as_input, counselor_turns, turn_vectorizer
from counseltune.instruments.miti import MitiError
from tests.conftest import dialog_rows, frames

from .conftest import FIXTURES, annomi_tables


def test_trains_on_train_transcripts_only(sample_coder, sample_split):
    assert set(sample_coder.train_dialogs) == set(sample_split["train"])
    assert not set(sample_coder.train_dialogs) & set(sample_split["test"])
    assert set(sample_coder.subtypes) == {"question", "reflection"}
    assert list(sample_coder.behavior.classes_) == sorted(MI_BEHAVIORS)


def test_codes_every_counselor_turn(sample_tables, sample_split, sample_coder):
    _, turns = sample_tables
    held_out = turns.filter(pl.col("dialog_id").is_in(sample_split["test"]))
    coded = code_turns(sample_coder, held_out)
    counselor = held_out.filter(pl.col("role") == "counselor").sort("dialog_id", "turn_index")
    assert coded.select("dialog_id", "turn_index").equals(counselor.select("dialog_id", "turn_index"))
    assert set(coded["mi_behavior"]) <= set(MI_BEHAVIORS)
    p = coded.select(f"p_{b}" for b in MI_BEHAVIORS).to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (coded["mi_behavior"].to_numpy() == np.asarray(MI_BEHAVIORS)[p.argmax(axis=1)]).all()
    assert np.allclose(coded["p_open_question"] + coded["p_closed_question"], 1.0)
    # mi_code is the subtype only where the behavior is that family; miti_code follows from both
    question = coded.filter(pl.col("mi_behavior") == "question")
    assert (question["mi_code"] == question["question_subtype"]).all() and (question["miti_code"] == "question").all()
    reflection = coded.filter(pl.col("mi_behavior") == "reflection")
    assert (reflection["mi_code"] == reflection["miti_code"]).all()
    rest = coded.filter(pl.col("mi_behavior").is_in(["therapist_input", "other"]))
    assert rest["mi_code"].is_null().all() and rest["miti_code"].is_null().all()
    # better than chance on unseen transcripts, even from 6 training transcripts
    agree = coded.join(counselor.select("dialog_id", "turn_index", human=pl.col("mi_behavior")), on=["dialog_id", "turn_index"])
    assert (agree["mi_behavior"] == agree["human"]).mean() > 0.4


def test_typical_utterances(sample_coder):
    dialog, rows = dialog_rows("toy:1", [
        ("client", "I drink maybe six beers every night, and my wife hates it."),
        ("counselor", "What do you think about your drinking?"),
        ("client", "I guess it is too much, but it helps me relax."),
        ("counselor", "Do you drink every day?"),
    ])
    coded = code_turns(sample_coder, frames((dialog, rows))[1])
    assert coded["mi_behavior"].to_list() == ["question", "question"]  # subtypes: see the slow full-AnnoMI test


def test_save_load_roundtrip(tmp_path, sample_tables, sample_coder):
    _, turns = sample_tables
    path = save_coder(sample_coder, tmp_path / "models" / "miti_coder.joblib")
    loaded = load_coder(path)
    assert loaded.train_dialogs == sample_coder.train_dialogs and loaded.settings == sample_coder.settings
    assert code_turns(loaded, turns).equals(code_turns(sample_coder, turns))


def test_load_errors(tmp_path, sample_coder, monkeypatch):
    with pytest.raises(CoderError, match="no MITI coder at"):
        load_coder(tmp_path / "missing.joblib")
    joblib.dump({"not": "a coder"}, tmp_path / "other.joblib")
    with pytest.raises(CoderError, match="is not a MITI coder of format"):
        load_coder(tmp_path / "other.joblib")
    save_coder(sample_coder, tmp_path / "coder.joblib")
    monkeypatch.setattr(coder_module.sklearn, "__version__", "0.0.1")
    with pytest.raises(CoderError, match="trained with scikit-learn .* retrain it"):
        load_coder(tmp_path / "coder.joblib")


def test_codes_the_fixture_transcripts(sample_coder):
    _, turns = annomi_tables(FIXTURES)
    coded = code_turns(sample_coder, turns)
    assert coded.height == turns.filter(pl.col("role") == "counselor").height == 5


def test_turns_without_counselor_turns_are_rejected(sample_coder):
    dialog, rows = dialog_rows("toy:2", [("client", "Hello."), ("client", "Anyone there?")])
    with pytest.raises(TurnsError, match=r"no counselor turns \(roles seen: \['client'\]\)"):
        code_turns(sample_coder, frames((dialog, rows))[1])
    with pytest.raises(TurnsError, match=r"lacks column\(s\) \['role'\]"):
        code_turns(sample_coder, frames((dialog, rows))[1].drop("role"))


def test_training_input_errors(sample_tables):
    _, turns = sample_tables
    with pytest.raises(CoderError, match="at least two coded behaviors"):
        train_coder(turns.with_columns(mi_behavior=pl.when(pl.col("role") == "counselor").then(pl.lit("other"))))
    with pytest.raises(MitiError, match=r"unknown mi_code value\(s\) \['reframe'\]"):
        train_coder(turns.with_columns(mi_code=pl.when(pl.col("mi_behavior") == "other").then(pl.lit("reframe")).otherwise("mi_code")))
    with pytest.raises(CoderError, match="needs human codes"):
        train_coder(turns.drop("mi_code"))
    with pytest.raises(CoderError, match="unknown model family 'affirm'"):
        train_coder(turns, models={"affirm": {"c": 1.0}})
    with pytest.raises(CoderError, match="c must be positive"):
        train_coder(turns, models={"behavior": {"c": 0}})
    with pytest.raises(CoderError, match="unknown feature set 'bert'"):
        train_coder(turns, models={"question": {"features": "bert"}})
    with pytest.raises(CoderError, match=r"behavior: unknown model 'forest'; expected one of \['logistic', 'svm'\]"):
        train_coder(turns, models={"behavior": {"model": "forest"}})


def test_softmax_scores_by_hand():
    # three classes: exp(d - max) normalized; e.g. row (0, ln 2, ln 3) -> (1, 2, 3) / 6
    d = np.log(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(softmax_scores(d), [[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]])
    # two classes: sklearn's 1-D decision value d favours classes_[1]; P(classes_[1]) = 1 / (1 + e^-d)
    d = np.array([0.0, np.log(3.0), -np.log(4.0)])
    assert np.allclose(softmax_scores(d), [[0.5, 0.5], [0.25, 0.75], [0.8, 0.2]])
    assert np.allclose(softmax_scores(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow


def test_behavior_model_is_an_svm_and_scores_follow_it(sample_tables, sample_split, sample_coder):
    _, turns = sample_tables
    held_out = turns.filter(pl.col("dialog_id").is_in(sample_split["test"]))
    model = sample_coder.behavior.named_steps["model"]
    assert type(model).__name__ == "LinearSVC" and sample_coder.settings["models"]["behavior"]["model"] == "svm"
    coded = code_turns(sample_coder, held_out)
    assert coded["mi_behavior"].to_list() == sample_coder.behavior.predict(as_input(counselor_turns(held_out))).tolist()
    # the logistic setting still trains and codes (probabilities from predict_proba)
    logistic = train_coder(turns, sample_split["train"], models={"behavior": {"model": "logistic", "c": 1.0}})
    p = code_turns(logistic, held_out).select(f"p_{b}" for b in MI_BEHAVIORS).to_numpy()
    assert type(logistic.behavior.named_steps["model"]).__name__ == "LogisticRegression" and np.allclose(p.sum(axis=1), 1.0)


def test_context_blocks_keep_speakers_apart_with_bigrams():
    dialog, rows = dialog_rows("toy:3", [
        ("client", "I drink too much"), ("counselor", "You drink too much."),
        ("counselor", "Tell me more."), ("client", "My wife hates it"), ("counselor", "She hates it."),
    ])
    x = as_input(counselor_turns(frames((dialog, rows))[1]))
    vectorizer = turn_vectorizer("context", min_df=1).fit(x)
    client = vectorizer.named_transformers_["client_words"].vocabulary_
    counselor = vectorizer.named_transformers_["counselor_words"].vocabulary_
    assert {"drink too", "wife hates"} <= set(client) and "you drink" in counselor  # word bigrams of each context
    assert "drink" in client and "drink" in counselor  # one word, a feature in each speaker's own block


def test_family_without_both_subtypes_is_not_coded(sample_tables):
    _, turns = sample_tables
    no_closed = turns.with_columns(mi_code=pl.when(pl.col("mi_code") == "closed_question").then(pl.lit("open_question")).otherwise("mi_code"))
    coder = train_coder(no_closed)
    assert set(coder.subtypes) == {"reflection"}
    coded = code_turns(coder, turns)
    assert coded["question_subtype"].is_null().all() and coded["p_open_question"].is_null().all()
    assert coded.filter(pl.col("mi_behavior") == "question")["mi_code"].is_null().all()
