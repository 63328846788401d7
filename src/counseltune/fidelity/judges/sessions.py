"""A session as a judge sees it: its language and its client/counselor utterances, rendered as a numbered transcript."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from counseltune.errors import CounseltuneError

LANGUAGES = ("zh", "en", "ko")
SPEAKERS = {  # how a transcript names the two roles, per language
    "en": {"client": "Client", "counselor": "Counselor"},
    "zh": {"client": "来访者", "counselor": "咨询师"},
    "ko": {"client": "내담자", "counselor": "상담자"},
}


class SessionError(CounseltuneError, ValueError):
    """Tables a judge cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class Session:
    dialog_id: str
    language: str
    turns: tuple[tuple[int, str, str], ...]   # (turn_index, role, text); system turns left out

    @property
    def counselor_turns(self) -> list[int]:
        return [i for i, role, _ in self.turns if role == "counselor"]

    def transcript(self) -> str:
        """One line per utterance, '[turn_index] Speaker: text', so a judge can cite turns by index."""
        names = SPEAKERS[self.language]
        return "\n".join(f"[{i}] {names[role]}: {' '.join(text.split())}" for i, role, text in self.turns)


def sessions_from_tables(dialogs: pl.DataFrame, turns: pl.DataFrame, dialog_ids: list[str] | None = None) -> list[Session]:
    """Canonical Dialogs/Turns tables -> sessions in dialog_id order (all, or the given ids)."""
    languages = dict(zip(dialogs["dialog_id"].to_list(), dialogs["language"].to_list()))
    wanted = sorted(languages) if dialog_ids is None else list(dialog_ids)
    unknown = [d for d in wanted if d not in languages]
    if unknown:
        raise SessionError(f"dialog ids not in the dialogs table: {unknown[:5]}")
    chosen = turns.filter(pl.col("dialog_id").is_in(wanted) & pl.col("role").is_in(["client", "counselor"]))
    by_dialog: dict[str, list[tuple[int, str, str]]] = {d: [] for d in wanted}
    for row in chosen.sort("dialog_id", "turn_index").iter_rows(named=True):
        by_dialog[row["dialog_id"]].append((row["turn_index"], row["role"], row["text"]))
    sessions = []
    for dialog_id in wanted:
        language = languages[dialog_id]
        if language not in LANGUAGES:
            raise SessionError(f"{dialog_id}: language {language!r} has no judge prompt (known: {LANGUAGES})")
        sessions.append(Session(dialog_id, language, tuple(by_dialog[dialog_id])))
    return sessions


def sessions_from_predictions(dialogs: pl.DataFrame, turns: pl.DataFrame, predictions: pl.DataFrame) -> list[Session]:
    """Sessions in which a model's predicted counselor turns (a Predictions table, one model and variant) replace
    the reference turns, cut after the last predicted turn. Code only the predicted turns from such a session
    (Session.counselor_turns includes the reference ones); its globals rate a mix of reference and model turns,
    which is why simulated sessions are the input for model-level globals."""
    keys = predictions.select("model", "variant").unique()
    if keys.height > 1:
        raise SessionError(f"predictions of several models/variants mixed: {keys.rows()}; pass one at a time")
    predicted = {(r["dialog_id"], r["turn_index"]): r["hypothesis"].strip() or "(no reply)"
                 for r in predictions.iter_rows(named=True)}
    last = {}
    for dialog_id, index in predicted:
        last[dialog_id] = max(index, last.get(dialog_id, -1))
    sessions = []
    for s in sessions_from_tables(dialogs, turns, sorted(last)):
        swapped = tuple((i, role, predicted.get((s.dialog_id, i), text)) for i, role, text in s.turns if i <= last[s.dialog_id])
        sessions.append(Session(s.dialog_id, s.language, swapped))
    return sessions
