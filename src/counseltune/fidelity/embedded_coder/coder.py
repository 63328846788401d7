"""The embedded MITI coder: a CPU-only linear classifier of counselor utterances, trained on AnnoMI's expert codes.

What it codes
  - the four AnnoMI therapist classes (mi_behavior): question, reflection, therapist_input, other;
  - the subtypes AnnoMI annotates for them: open/closed question, simple/complex reflection (mi_code).
    therapist_input subtypes (information/advice/negotiation/options) are too rare in AnnoMI (22 options)
    to learn, so a predicted therapist_input keeps mi_code None;
  - from those, the MITI code where one exists (miti.miti_code): question, simple_reflection,
    complex_reflection. A predicted therapist_input or other gets miti_code None.
What it cannot code
  - MITI's Affirm, Seeking Collaboration, Emphasizing Autonomy, Confront, Persuade and Persuade with
    Permission: AnnoMI folds them into therapist_input/other (miti.UNMAPPABLE), so no label exists to learn
    them from. counts.behavior_counts reports them as None (not coded), never as 0, and the summary scores
    that need them (%MI-adherent) come out None;
  - global scores: see globals.py.

How: TF-IDF word and character n-grams of the utterance and its context (features.py) feed a class-
balanced linear model per label family (behavior: a linear SVM; question and reflection subtypes: logistic
regression), each with the feature set, model and C that measurement on training transcripts chose
(DEFAULT_MODELS; benchmarks/bench_coder.py). The context is only what precedes a turn, so a model's
generated reply (no client answer after it yet) is coded the same way as a transcript turn.

Measured (validation.validate_coder; 113 AnnoMI transcripts, 90 train / 23 held out, stratified by MI
quality; behavior macro-F1 / Cohen's kappa on the held-out transcripts; benchmarks/RESULTS.md has the
per-class and subtype numbers): split seeds 20240419 / 0 / 1 / 2 give 0.766 / 0.759 / 0.767 / 0.728
(kappa 0.71 / 0.71 / 0.71 / 0.69), up from 0.742 / 0.749 / 0.755 / 0.716 with logistic regression and
unigram context. Human coders agree with each other at macro-F1 0.79 (kappa 0.73; AnnoMI's 10-annotator
transcripts), and most AnnoMI labels come from one annotator, so a held-out score near 0.8 is the ceiling.
The subtypes are weak, simple/complex reflection above all: treat %CR from this coder as indicative, and
validate it against human codes before using it to compare models.
Not reached: the 0.80 target. A sentence embedding (all-MiniLM-L6-v2 of the utterance and both contexts)
did not help (mean macro-F1 0.752 vs 0.755) and took 672 s to compute for the corpus's turns against ~15 s
to train this coder, so the coder stays sparse and CPU-cheap. What limits it is the labels: therapist_input
(F1 0.53-0.64) vs other is where humans disagree most too (annotator pairs: 0.73 on therapist_input).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import polars as pl
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from counseltune.errors import CounseltuneError
from counseltune.instruments import miti
from counseltune.fidelity.embedded_coder.features import (
    FEATURE_SETS,
    KEY,
    TurnsError,
    as_input,
    counselor_turns,
    turn_vectorizer,
)
from counseltune.schemas.tables import MI_BEHAVIORS

# family -> the mi_codes a subtype model chooses between
SUBTYPES: dict[str, tuple[str, ...]] = {
    "question": ("open_question", "closed_question"),
    "reflection": ("simple_reflection", "complex_reflection"),
}
# label family -> the feature set, model and inverse regularization. Subtypes: chosen by 5-fold
# transcript-grouped CV on the training transcripts of the seed-20240419 split (macro-F1: open/closed
# 0.75, simple/complex 0.63). Behavior: the linear SVM beat logistic regression (C 1-10) and a calibrated
# SVM on seeded transcript splits (benchmarks/bench_coder.py).
DEFAULT_MODELS: dict[str, dict] = {
    "behavior": {"features": "context", "model": "svm", "c": 0.1},
    "question": {"features": "utterance", "model": "logistic", "c": 1.0},
    "reflection": {"features": "context", "model": "logistic", "c": 0.3},
}
MODELS = ("logistic", "svm")
SETTING_KEYS = ("features", "model", "c")
FORMAT = 2  # bump when MitiCoder changes shape: an old file then fails to load with a clear message


class CoderError(CounseltuneError, ValueError):
    """The coder cannot be trained, loaded or applied; the message says why and what to do."""


@dataclass
class MitiCoder:
    behavior: Pipeline
    subtypes: dict[str, Pipeline]  # family -> model; a family without one (too few labels) is not coded
    train_dialogs: tuple[str, ...]
    settings: dict = field(default_factory=dict)
    sklearn_version: str = sklearn.__version__
    format: int = FORMAT


def _classifier(setting: dict, min_df: int) -> Pipeline:
    if setting["model"] == "svm":
        model = LinearSVC(C=setting["c"], class_weight="balanced")
    else:
        # lbfgs with a loose tolerance: same CV macro-F1 as tol=1e-4 on AnnoMI, at a fifth of the time
        model = LogisticRegression(C=setting["c"], class_weight="balanced", max_iter=300, tol=1e-3)
    return Pipeline([("features", turn_vectorizer(setting["features"], min_df=min_df)), ("model", model)])


def _fit(setting: dict, min_df: int, rows: pl.DataFrame, labels: pl.Series) -> Pipeline:
    pipeline = _classifier(setting, min_df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 300 loose-tolerance iterations are enough here
        pipeline.fit(as_input(rows), labels.to_numpy())
    return pipeline


def _settings(models: dict | None) -> dict[str, dict]:
    settings = {family: dict(setting) for family, setting in DEFAULT_MODELS.items()}
    for family, setting in (models or {}).items():
        if family not in settings:
            raise CoderError(f"unknown model family {family!r}; expected one of {sorted(settings)}")
        unknown = sorted(set(setting) - set(SETTING_KEYS))
        if unknown:
            raise CoderError(f"unknown setting(s) {unknown} for {family}; expected some of {list(SETTING_KEYS)}")
        settings[family].update(setting)
    for family, setting in settings.items():
        if setting["features"] not in FEATURE_SETS:
            raise CoderError(f"{family}: unknown feature set {setting['features']!r}; expected one of {sorted(FEATURE_SETS)}")
        if setting["model"] not in MODELS:
            raise CoderError(f"{family}: unknown model {setting['model']!r}; expected one of {list(MODELS)}")
        if not setting["c"] > 0:
            raise CoderError(f"{family}: c must be positive, got {setting['c']!r}")
    return settings


def train_coder(turns: pl.DataFrame, train_dialogs: list[str] | None = None, *,
                models: dict | None = None, min_df: int = 2) -> MitiCoder:
    """Fit the behavior and subtype models on the human-coded counselor turns of `train_dialogs` (default: all).

    models: per family ('behavior', 'question', 'reflection') overrides of DEFAULT_MODELS, e.g.
    {'reflection': {'c': 1.0}} or {'behavior': {'model': 'logistic', 'c': 1.0}}; min_df: a word or character n-gram must occur in this many training turns.
    """
    settings = _settings(models)
    if "mi_behavior" not in turns.columns or "mi_code" not in turns.columns:
        raise CoderError("training needs human codes: a Turns table with mi_behavior and mi_code columns")
    if train_dialogs is not None:
        turns = turns.filter(pl.col("dialog_id").is_in(list(train_dialogs)))
    rows = counselor_turns(turns)
    miti.check_codes(rows)
    coded = rows.filter(pl.col("mi_behavior").is_not_null())
    classes = coded["mi_behavior"].unique().to_list()
    if len(classes) < 2:
        raise CoderError(f"training needs at least two coded behaviors among the counselor turns, found {classes}; "
                         "train on a source with MI codes (AnnoMI)")
    behavior = _fit(settings["behavior"], min_df, coded, coded["mi_behavior"])
    subtypes = {}
    for family, codes in SUBTYPES.items():
        labelled = coded.filter((pl.col("mi_behavior") == family) & pl.col("mi_code").is_in(list(codes)))
        if labelled["mi_code"].n_unique() == len(codes):  # both subtypes seen, else the family stays uncoded
            subtypes[family] = _fit(settings[family], min_df, labelled, labelled["mi_code"])
    return MitiCoder(behavior=behavior, subtypes=subtypes, train_dialogs=tuple(sorted(coded["dialog_id"].unique())),
                     settings={"models": settings, "min_df": min_df})


def softmax_scores(decision: np.ndarray) -> np.ndarray:
    """Rows summing to 1 from an SVM's decision values (1-D for two classes), ordered as its classes_.

    Not calibrated probabilities: they rank the classes as the SVM does (argmax = its prediction).
    Calibrating (CalibratedClassifierCV) cost 0.02 macro-F1 on AnnoMI, so the scores stay uncalibrated.
    """
    scores = np.column_stack([-decision / 2, decision / 2]) if decision.ndim == 1 else decision
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def _probabilities(model: Pipeline, x, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """label -> P(label) per row (an SVM: softmax of its decision values); a label the model never saw gets 0."""
    p = model.predict_proba(x) if hasattr(model, "predict_proba") else softmax_scores(model.decision_function(x))
    index = {label: k for k, label in enumerate(model.classes_)}
    return {label: p[:, index[label]] if label in index else np.zeros(len(p)) for label in labels}


def code_turns(coder: MitiCoder, turns: pl.DataFrame) -> pl.DataFrame:
    """Code every counselor turn of a turns table (any source, any model's predictions).

    Returns one row per counselor turn: dialog_id, turn_index, the predicted mi_behavior, mi_code and
    miti_code, p_<behavior> for the four classes, and per subtype family <family>_subtype with
    p_<code> (the subtype model's answer whatever the predicted behavior; mi_code uses it only when the
    behavior matches). Human codes in `turns` are not carried over: compare with agreement.agreement.
    """
    rows = counselor_turns(turns)
    x = as_input(rows)
    behavior_p = _probabilities(coder.behavior, x, tuple(MI_BEHAVIORS))
    stacked = np.column_stack([behavior_p[b] for b in MI_BEHAVIORS])
    behavior = np.asarray(MI_BEHAVIORS, dtype=object)[stacked.argmax(axis=1)]
    columns: dict[str, object] = {f"p_{b}": behavior_p[b] for b in MI_BEHAVIORS}
    code = np.full(len(rows), None, dtype=object)
    for family, codes in SUBTYPES.items():
        model = coder.subtypes.get(family)
        if model is None:
            columns[f"{family}_subtype"] = pl.Series([None] * len(rows), dtype=pl.String)
            columns.update({f"p_{c}": pl.Series([None] * len(rows), dtype=pl.Float64) for c in codes})
            continue
        p = _probabilities(model, x, codes)
        subtype = np.asarray(codes, dtype=object)[np.column_stack([p[c] for c in codes]).argmax(axis=1)]
        columns[f"{family}_subtype"] = pl.Series(subtype.tolist(), dtype=pl.String)
        columns.update({f"p_{c}": p[c] for c in codes})
        code = np.where(behavior == family, subtype, code)
    predicted = rows.select(*KEY).with_columns(
        pl.Series("mi_behavior", behavior.tolist(), dtype=pl.String),
        pl.Series("mi_code", code.tolist(), dtype=pl.String),
    )
    return predicted.with_columns(
        miti.miti_code_expr().alias("miti_code"),
        **{name: pl.Series(name, values) for name, values in columns.items()},
    )


def save_coder(coder: MitiCoder, path: Path | str) -> Path:
    """Write the coder with joblib (atomically: a killed job leaves no half-written model)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(coder, tmp, compress=3)
    tmp.replace(path)
    return path


def load_coder(path: Path | str) -> MitiCoder:
    """Read a coder written by save_coder; refuse files of another format or sklearn version."""
    path = Path(path)
    if not path.is_file():
        raise CoderError(f"no MITI coder at {path}: train one first (train_coder + save_coder)")
    coder = joblib.load(path)
    if not isinstance(coder, MitiCoder) or getattr(coder, "format", None) != FORMAT:
        raise CoderError(f"{path} is not a MITI coder of format {FORMAT}; retrain it with this version of counseltune")
    if coder.sklearn_version != sklearn.__version__:
        # pickled sklearn models are only guaranteed to load in the version that wrote them
        raise CoderError(f"{path} was trained with scikit-learn {coder.sklearn_version}, this is {sklearn.__version__}; retrain it")
    return coder


__all__ = ["SUBTYPES", "CoderError", "MitiCoder", "TurnsError", "code_turns", "load_coder", "save_coder", "train_coder"]
