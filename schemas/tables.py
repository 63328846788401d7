"""Pandera (polars backend) models of the canonical tables: one definition per table.

Every writer validates against these before a parquet file is written (see counseltune.tables.io).
"""

from typing import Optional

import pandera.polars as pa
import polars as pl

LANGUAGES = ["zh", "en", "ko"]
METHODS = ["MI", "CBT", "unspecified"]
SPLITS = ["train", "val", "test"]
ROLES = ["client", "counselor", "system"]
# AnnoMI's four therapist classes: the family every MI code maps onto.
MI_BEHAVIORS = ["question", "reflection", "therapist_input", "other"]
# Finer codes where a source has them (AnnoMI full subtypes, KMI labels); MITI 4.2.1 names where they exist.
MI_CODES = [
    "open_question", "closed_question",
    "simple_reflection", "complex_reflection",
    "information", "advice", "negotiation", "options",
    "affirm", "general",
]
CLIENT_TALK = ["change", "neutral", "sustain"]
VARIANTS = ("base", "finetuned")  # a prediction comes from the base model or its fine-tuned adapter
# A normalized text has no control characters (tab and newline excepted) and no outer whitespace.
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff]"


class Dialogs(pa.DataFrameModel):
    """One row per dialog. dialog_id = '<source>:<source key>', stable across runs."""

    dialog_id: str = pa.Field(unique=True, str_matches=r"^[a-z0-9_\-]+:\S+$")
    source: str = pa.Field(str_matches=r"^[a-z0-9_\-]+(:[a-z0-9_\-]+)?$")
    language: str = pa.Field(isin=LANGUAGES)
    topic: Optional[str] = pa.Field(nullable=True)
    method: str = pa.Field(isin=METHODS)
    split: Optional[str] = pa.Field(nullable=True, isin=SPLITS)
    n_turns: int = pa.Field(ge=1)
    provenance_file: str = pa.Field(str_length={"min_value": 1})
    provenance_record: str = pa.Field(str_length={"min_value": 1})
    meta: str = pa.Field()  # JSON object: source-specific metadata (system prompt, MI quality, ...)

    class Config:
        strict = True
        coerce = True


class CuratedDialogs(Dialogs):
    """Dialogs after curation: every dialog has a split."""

    split: str = pa.Field(isin=SPLITS)


class Turns(pa.DataFrameModel):
    """One row per utterance; turn_index runs 0..n-1 without gaps inside a dialog."""

    dialog_id: str = pa.Field(str_matches=r"^[a-z0-9_\-]+:\S+$")
    turn_index: int = pa.Field(ge=0)
    role: str = pa.Field(isin=ROLES)
    text: str = pa.Field(str_length={"min_value": 1})
    text_raw: str = pa.Field()  # the source's text before normalization: nothing is lost
    mi_behavior: Optional[str] = pa.Field(nullable=True, isin=MI_BEHAVIORS)
    mi_code: Optional[str] = pa.Field(nullable=True, isin=MI_CODES)
    client_talk: Optional[str] = pa.Field(nullable=True, isin=CLIENT_TALK)
    code_agreement: Optional[float] = pa.Field(nullable=True, in_range={"min_value": 0.0, "max_value": 1.0})
    n_annotators: Optional[int] = pa.Field(nullable=True, ge=1)
    location: str = pa.Field(str_length={"min_value": 1})  # file:line or file#record of the raw text

    class Config:
        strict = True
        coerce = True

    @pa.dataframe_check
    def text_is_normalized(cls, data: pa.PolarsData) -> pl.LazyFrame:
        text = pl.col("text")
        return data.lazyframe.select(
            (text == text.str.strip_chars()) & ~text.str.contains(_CONTROL)
        )

    @pa.dataframe_check
    def turn_index_is_contiguous(cls, data: pa.PolarsData) -> pl.LazyFrame:
        index = pl.col("turn_index")
        per_dialog = (index.max() + 1 == index.len()) & (index.n_unique() == index.len())
        return data.lazyframe.select(per_dialog.over("dialog_id").alias("turn_index"))

    @pa.dataframe_check
    def codes_match_roles(cls, data: pa.PolarsData) -> pl.LazyFrame:
        role = pl.col("role")
        counselor_codes_ok = pl.col("mi_behavior").is_null() | (role == "counselor")
        client_codes_ok = pl.col("client_talk").is_null() | (role == "client")
        return data.lazyframe.select(counselor_codes_ok & client_codes_ok)


class Quarantine(pa.DataFrameModel):
    """Every raw record that did not become a row, with where it was and why."""

    source: str = pa.Field()
    stage: str = pa.Field(isin=["ingest", "curate", "synthesize"])
    file: str = pa.Field()
    record: str = pa.Field()
    n_records: int = pa.Field(ge=1)  # raw records this row stands for (a whole CSV transcript, say)
    reason: str = pa.Field(str_matches=r"^[a-z0-9_]+$")
    detail: str = pa.Field()
    raw: str = pa.Field()  # the record as read (undecodable bytes shown as \x.. escapes)

    class Config:
        strict = True
        coerce = True


class Predictions(pa.DataFrameModel):
    """One row per predicted counselor turn: the reference and the model's reply (predictions/<name>/<variant>.parquet)."""

    model: str = pa.Field(str_length={"min_value": 1})
    variant: str = pa.Field(isin=list(VARIANTS))
    dialog_id: str = pa.Field(str_matches=r"^[a-z0-9_\-]+:\S+$")
    turn_index: int = pa.Field(ge=1)  # a predicted turn always has history (the assistant-first rule)
    source: str = pa.Field(str_matches=r"^[a-z0-9_\-]+(:[a-z0-9_\-]+)?$")
    language: str = pa.Field(isin=LANGUAGES)
    reference: str = pa.Field(str_length={"min_value": 1})
    hypothesis: str = pa.Field()  # may be empty: the model can end its turn at once
    prompt_tokens: int = pa.Field(ge=1)
    new_tokens: int = pa.Field(ge=0)

    class Config:
        strict = True
        coerce = True
        unique = ["model", "variant", "dialog_id", "turn_index"]
