"""Generated sessions -> rows of the canonical tables (CuratedDialogs, Turns, Quarantine)."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from counseltune.llm.scrub import scrub
from counseltune.schemas.tables import CuratedDialogs, Quarantine, Turns
from counseltune.synthesize.codes import columns_of
from counseltune.synthesize.generate import SOURCE_PREFIX, Session
from counseltune.tables.io import empty_table

SPLIT = "train"  # synthetic data is training material only


def _quarantine_stage() -> str:
    # 'synthesize' once schemas/tables.py allows it; until then the closest existing stage
    allowed = next((c.statistics["allowed_values"] for c in Quarantine.to_schema().columns["stage"].checks
                    if "allowed_values" in c.statistics), ["curate"])
    return "synthesize" if "synthesize" in allowed else "curate"


QUARANTINE_STAGE = _quarantine_stage()


def source_of(generator: str) -> str:
    return f"{SOURCE_PREFIX}:{generator}"


def provenance_file(session: Session) -> str:
    return f"{session.generator}:{session.seed.dialog_id}"


def dialog_row(session: Session, method: str, language: str, run_meta: dict[str, Any], extra_meta: dict[str, Any]) -> dict[str, Any]:
    meta = {
        **run_meta,
        "seed_dialog_id": session.seed.dialog_id,
        "session_seed": session.request_seed,
        "planned": [step.label() for step in session.steps],
        **session.meta,
        **extra_meta,
    }
    return {
        "dialog_id": session.dialog_id, "source": source_of(session.generator), "language": language,
        "topic": session.seed.topic, "method": method, "split": SPLIT, "n_turns": len(session.turns),
        "provenance_file": provenance_file(session), "provenance_record": f"session {session.index}",
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True),
    }


def turn_rows(session: Session) -> list[dict[str, Any]]:
    rows = []
    for i, turn in enumerate(session.turns):
        behavior, code = columns_of(turn.code) if turn.code and turn.role == "counselor" else (None, None)
        rows.append({
            "dialog_id": session.dialog_id, "turn_index": i, "role": turn.role, "text": turn.text,
            "text_raw": turn.text_raw, "mi_behavior": behavior, "mi_code": code,
            "client_talk": turn.talk if turn.role == "client" else None, "code_agreement": None,
            "n_annotators": None, "location": f"{session.dialog_id}#turn{i}",
        })
    return rows


def quarantine_row(session: Session, reason: str, detail: str) -> dict[str, Any]:
    raw = scrub("\n".join(f"{t.role}: {t.text_raw}" for t in session.turns))  # server text: no key kept
    return {
        "source": source_of(session.generator), "stage": QUARANTINE_STAGE, "file": provenance_file(session),
        "record": session.dialog_id, "n_records": 1, "reason": reason, "detail": scrub(detail), "raw": raw,
    }


def frame(rows: list[dict[str, Any]], model) -> pl.DataFrame:
    schema = empty_table(model).schema
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def tables(accepted: list[dict[str, Any]], turns: list[dict[str, Any]], quarantined: list[dict[str, Any]]):
    return frame(accepted, CuratedDialogs), frame(turns, Turns), frame(quarantined, Quarantine)
