"""What the embedded MITI coder sees of a counselor turn: its text, its context, and a few shape cues.

A reflection and a question can share every word ("You want to quit" vs "You want to quit?"), and a
reflection often repeats the client's words, so each counselor turn is described by
  - its own text (word 1-2-grams and character 2-5-grams: punctuation and "you"-stems matter),
  - the client utterance just before it (what a reflection would mirror), word 1-2-grams,
  - the counselor's previous turn (runs of questions, and "so"/"and" continuations), word 1-2-grams;
    each context has its own vectorizer, so "client said X" and "counselor said X" are different features,
  - its last sentence (the last one with a question mark, if any): "Okay. Yeah. So what do you think?"
    is open or closed by its last part, not by the backchannel before it,
  - shape cues: question marks, length, whether the client spoke right before.
Which of these a model uses is a FEATURE_SETS choice, made by cross-validation on training transcripts
(open/closed questions: the utterance alone did better; behavior and reflection subtypes: with context).
Context bigrams over unigrams: behavior macro-F1 +0.004 on the full AnnoMI (benchmarks/bench_coder.py).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from counseltune.errors import CounseltuneError

TEXT = "text"
PREV_CLIENT = "prev_client"
PREV_COUNSELOR = "prev_counselor"
LAST_SENTENCE = "last_sentence"
SHAPE = ("ends_with_question_mark", "question_marks", "log_words", "after_client", "words_shared_with_client")
KEY = ("dialog_id", "turn_index")
_WORD = re.compile(r"[a-z']+")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
FEATURE_SETS = {
    "context": ("text_words", "text_chars", "client_words", "counselor_words", "shape"),
    "utterance": ("text_words", "text_chars", "last_words", "shape"),
}


class TurnsError(CounseltuneError, ValueError):
    """A turns table the coder cannot use; the message says what is wrong and how to fix it."""


def counselor_turns(turns: pl.DataFrame) -> pl.DataFrame:
    """One row per counselor turn: the key, the human codes (if any), the text, its context and shape cues."""
    required = {"dialog_id", "turn_index", "role", "text"}
    missing = sorted(required - set(turns.columns))
    if missing:
        raise TurnsError(f"turns table lacks column(s) {missing}; pass a canonical Turns table (schemas/tables.py)")
    human = [c for c in ("mi_behavior", "mi_code") if c in turns.columns]
    ordered = turns.sort(*KEY)
    role, text = pl.col("role"), pl.col("text")
    # The latest client text up to a row is, for a counselor row, the client text before it.
    with_context = ordered.with_columns(
        pl.when(role == "client").then(text).forward_fill().over("dialog_id").fill_null("").alias(PREV_CLIENT),
        pl.when(role == "counselor").then(text).forward_fill().shift(1).over("dialog_id").fill_null("").alias(PREV_COUNSELOR),
        (role.shift(1).over("dialog_id") == "client").fill_null(False).alias("after_client"),
    )
    rows = with_context.filter(role == "counselor")
    if rows.is_empty():
        raise TurnsError(
            f"turns table has no counselor turns (roles seen: {sorted(turns['role'].unique().drop_nulls().to_list())}); "
            "the MITI coder codes counselor utterances only"
        )
    return rows.select(*KEY, *human, TEXT, PREV_CLIENT, PREV_COUNSELOR, "after_client")


def last_sentence(text: str) -> str:
    """The last sentence with a question mark, else the last sentence."""
    sentences = [part for part in _SENTENCE_END.split(text.strip()) if part]
    asking = [part for part in sentences if "?" in part]
    return (asking or sentences or [text])[-1]


def _shape(frame) -> np.ndarray:
    texts, clients = list(frame[TEXT]), list(frame[PREV_CLIENT])
    after_client = np.asarray(list(frame["after_client"]), dtype=float)
    out = np.zeros((len(texts), len(SHAPE)))
    for i, (text, client) in enumerate(zip(texts, clients)):
        words = _WORD.findall(text.lower())
        client_words = set(_WORD.findall(client.lower()))
        out[i] = (
            text.rstrip().endswith("?"),
            text.count("?"),
            np.log1p(len(words)),
            after_client[i],
            # a reflection mirrors the client: the share of its words the client just said
            sum(w in client_words for w in words) / len(words) if words else 0.0,
        )
    return out


class ShapeCues(BaseEstimator, TransformerMixin):
    """The SHAPE cues of each row (needs the text, prev_client and after_client columns)."""

    def fit(self, frame, y=None):
        return self

    def transform(self, frame):
        return _shape(frame)


def turn_vectorizer(feature_set: str = "context", min_df: int = 2) -> ColumnTransformer:
    """Sparse features (the blocks of FEATURE_SETS[feature_set]) of as_input() rows for a linear classifier."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; expected one of {sorted(FEATURE_SETS)}")
    words = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "min_df": min_df, "lowercase": True,
             "token_pattern": r"(?u)\b\w+\b|\?"}  # keeps one-letter words ("I") and the question mark
    blocks = {
        "text_words": (TfidfVectorizer(**words), TEXT),
        "text_chars": (TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=min_df), TEXT),
        "last_words": (TfidfVectorizer(**{**words, "ngram_range": (1, 3)}), LAST_SENTENCE),
        "client_words": (TfidfVectorizer(**words), PREV_CLIENT),
        "counselor_words": (TfidfVectorizer(**words), PREV_COUNSELOR),
        "shape": (make_pipeline(ShapeCues(), StandardScaler()), [TEXT, PREV_CLIENT, "after_client"]),
    }
    chosen = [(name, *blocks[name]) for name in FEATURE_SETS[feature_set]]
    return ColumnTransformer(chosen, sparse_threshold=1.0)


def as_input(rows: pl.DataFrame):
    """counselor_turns() rows in the form the vectorizer takes (sklearn's ColumnTransformer selects by name)."""
    last = rows[TEXT].map_elements(last_sentence, return_dtype=pl.String).alias(LAST_SENTENCE)
    return rows.select(TEXT, PREV_CLIENT, PREV_COUNSELOR, "after_client").with_columns(last).to_pandas()
