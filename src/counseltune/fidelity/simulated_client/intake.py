"""Intake profiles for simulated clients: who the client is, how they behave, and how their session opens.

Three sources:
  - Cactus evaluation seeds (evaluation.json / evaluation_chinese.json: 150 intake forms x 3 attitudes);
  - CPsyCounE cases (the pipeline's canonical tables of the cpsycoune source, not its raw files): the case's
    client utterances are the background, its first client utterance the opening;
  - curated test dialogs (canonical tables): the opening client turns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from counseltune.errors import CounseltuneError

ATTITUDES = ("positive", "neutral", "negative")
SUMMARY_KEYS = ("case_summary", "summary", "context", "description")  # dialog meta keys holding a case summary
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class IntakeError(CounseltuneError, ValueError):
    """An intake source that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class IntakeProfile:
    profile_id: str                          # unique, no whitespace (it ends the simulated dialog_id)
    language: str                            # the session's language
    intake: str                              # what the simulated client knows about themself
    attitude: str                            # positive | neutral | negative
    opening: tuple[tuple[str, str], ...]     # (role, text) turns the session starts from; may be empty
    topic: str | None
    provenance_file: str
    provenance_record: str
    attitude_instruction: str | None = None  # the source's own wording of the attitude (Cactus), else a default


def load_cactus(path: Path | str, *, attitudes: tuple[str, ...] = ATTITUDES, limit: int | None = None) -> list[IntakeProfile]:
    """Cactus evaluation seeds -> profiles, in file order (the Chinese file: Chinese opening, English intake)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise IntakeError(f"Cactus file {path} cannot be read as JSON: {err}") from None
    if not isinstance(records, list):
        raise IntakeError(f"Cactus file {path}: expected a JSON array of evaluation seeds")
    profiles = []
    for position, record in enumerate(records):
        try:
            client, cbt = record["AI_client"], record["AI_counselor"]["CBT"]
            attitude = client["attitude"]
            # the Chinese file numbers its records (idx) and has Chinese opening turns only in init_history_*
            language = "zh" if "idx" in record else "en"
            number = record.get("idx", position)
            opening = (("counselor", cbt["init_history_counselor"]), ("client", cbt["init_history_client"]))
            intake, instruction = client["intake_form"], client["attitude_instruction"]
        except (KeyError, TypeError) as err:
            raise IntakeError(f"Cactus file {path} record #{position}: missing field {err}") from None
        if attitude not in ATTITUDES:
            raise IntakeError(f"Cactus file {path} record #{position}: unknown attitude {attitude!r}")
        if attitude not in attitudes:
            continue
        profiles.append(IntakeProfile(
            profile_id=f"cactus-{language}-{number:03d}-{attitude}", language=language, intake=intake.strip(),
            attitude=attitude, opening=tuple((r, t.strip()) for r, t in opening if t and t.strip()), topic=None,
            provenance_file=path.name, provenance_record=f"#{position}",
            # Cactus words its attitudes in English: a Chinese session gets client_prompts' Chinese wording
            attitude_instruction=instruction if language == "en" else None))
        if limit is not None and len(profiles) >= limit:
            break
    return profiles


def cpsycoune_profiles(dialogs: pl.DataFrame, turns: pl.DataFrame, *, source: str = "cpsycoune",
                       attitude: str = "neutral", limit: int | None = None) -> list[IntakeProfile]:
    """CPsyCounE cases (Chinese) in canonical tables -> profiles; the case's own client utterances are the client's
    background. Cases in the order the source lists them: `<Topic>/<n>.json` by topic, then n numerically."""
    _check_attitude(attitude)
    where = pl.col("provenance_file").str.extract_groups(r"^(?<folder>.*?)(?<number>\d*)\.json$")
    cases = (dialogs.filter(pl.col("source") == source)
             .with_columns(_folder=where.struct["folder"], _number=where.struct["number"].cast(pl.Int64, strict=False))
             .sort("_folder", "_number", "provenance_file", nulls_last=True))
    if not cases.height:
        raise IntakeError(f"fidelity.simulate.source cpsycoune: the tables hold no dialog of source {source!r}; "
                          "list CPsyCounE under sources in params.yaml (format cpsycoune)")
    said_by_case: dict[str, list[str]] = {}
    client = turns.filter((pl.col("role") == "client") & pl.col("dialog_id").is_in(cases["dialog_id"].implode()))
    for dialog_id, text in client.sort("dialog_id", "turn_index").select("dialog_id", "text").iter_rows():
        said_by_case.setdefault(dialog_id, []).append(text)
    profiles = []
    for case in cases.iter_rows(named=True):
        said = said_by_case.get(case["dialog_id"])
        if not said:
            continue
        key = case["provenance_file"].removesuffix(".json")  # the raw `<Topic>/<n>` (the dialog id normalizes it)
        profiles.append(IntakeProfile(
            profile_id=f"cpsycoune-{_safe_id(key)}-{attitude}", language=case["language"],
            intake=f"主题：{case['topic']}\n" + "\n".join(said), attitude=attitude, opening=(("client", said[0]),),
            topic=case["topic"], provenance_file=case["provenance_file"], provenance_record=case["provenance_record"]))
        if limit is not None and len(profiles) >= limit:
            break
    return profiles


def profiles_from_dialogs(dialogs: pl.DataFrame, turns: pl.DataFrame, *, split: str = "test", opening_turns: int = 2,
                          attitude: str = "neutral", limit: int | None = None) -> list[IntakeProfile]:
    """Curated dialogs of one split -> profiles: the turns up to the `opening_turns`-th client turn open the
    session, and those client words (plus a case summary from meta, where the source has one) are the intake."""
    _check_attitude(attitude)
    if opening_turns < 1:
        raise IntakeError(f"opening_turns must be >= 1, got {opening_turns}")
    chosen = dialogs.filter(pl.col("split") == split).sort("dialog_id")
    if limit is not None:
        chosen = chosen.head(limit)
    texts = turns.filter(pl.col("dialog_id").is_in(chosen["dialog_id"].to_list()) & (pl.col("role") != "system"))
    by_dialog: dict[str, list[tuple[str, str]]] = {}
    for row in texts.sort("dialog_id", "turn_index").iter_rows(named=True):
        by_dialog.setdefault(row["dialog_id"], []).append((row["role"], row["text"]))
    profiles = []
    for d in chosen.iter_rows(named=True):
        opening = _opening(by_dialog.get(d["dialog_id"], []), opening_turns)
        said = [text for role, text in opening if role == "client"]
        if not said:
            continue  # no client words: nothing to build a client from
        summary = _summary(d["meta"])
        profiles.append(IntakeProfile(
            profile_id=f"{_safe_id(d['dialog_id'])}-{attitude}", language=d["language"],
            intake="\n".join(([summary] if summary else []) + said), attitude=attitude, opening=tuple(opening),
            topic=d["topic"], provenance_file=d["provenance_file"], provenance_record=d["provenance_record"]))
    return profiles


def _opening(turns: list[tuple[str, str]], client_turns: int) -> list[tuple[str, str]]:
    """The turns up to and including the n-th client turn (or the last one, if fewer): the counselor speaks next."""
    end, seen = 0, 0
    for i, (role, _) in enumerate(turns):
        if role == "client":
            end, seen = i + 1, seen + 1
            if seen == client_turns:
                break
    return turns[:end]


def _summary(meta: str | None) -> str | None:
    try:
        values = json.loads(meta or "{}")
    except ValueError:
        return None
    found = [values.get(k) for k in SUMMARY_KEYS if isinstance(values, dict) and isinstance(values.get(k), str)]
    return found[0].strip() if found and found[0].strip() else None


def _safe_id(text: str) -> str:
    return _ID_UNSAFE.sub("-", text).strip("-")


def _check_attitude(attitude: str) -> None:
    if attitude not in ATTITUDES:
        raise IntakeError(f"attitude must be one of {ATTITUDES}, got {attitude!r}")
