"""A counselor model in session with a simulated client (an LLM role-playing an intake profile), both Clients.

All sessions advance in lockstep: each round is one complete() call for the counselor side (every live session)
then one for the client side, so a batched backend (a local model) fills its batches and a remote one its
concurrency. A session starts from its profile's opening turns; a client who has not spoken yet speaks first
(one extra client call). Each of the `rounds` rounds adds a counselor turn and, but for the last round, a client
reply; a client ends the session early by saying END_MARKER. A session whose request fails on either side is
dropped and counted (never written half-done). With fixed seeds every request is a function of the history,
so a re-run replays from the client caches.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from counseltune.llm import ChatRequest, Client, Failure
from counseltune.models.decode import DecodeSettings
from counseltune.schemas.tables import Dialogs, Turns
from counseltune.tables.io import empty_table, validate, write_table
from counseltune.text import normalize_text

from counseltune.fidelity.simulated_client.client_prompts import END_MARKER, FIRST_WORDS, client_system
from counseltune.fidelity.simulated_client.intake import IntakeProfile

PROMPT_VERSION = "simulated-client-v1"   # bump whenever client_prompts changes
SOURCE_PREFIX = "simulated"
METHOD, SPLIT = "CBT", "test"
_SLUG_UNSAFE = re.compile(r"[^a-z0-9_\-]+")


@dataclass(frozen=True)
class SimulationSettings:
    rounds: int = 8                            # counselor turns per session
    seed: int = 0
    # how the counselor decodes: its registry models.<m>.decode (model_stage.py), as the predict stage decodes it
    counselor_decode: DecodeSettings = DecodeSettings(max_new_tokens=256, temperature=0.7)
    client_max_tokens: int = 200
    client_temperature: float = 0.7
    counselor_system: Mapping[str, str] | None = None   # language -> system prompt; None: none (as fine-tuned)
    counselor_name: str | None = None          # names the source; default: the counselor client's model


@dataclass
class _Session:
    profile: IntakeProfile
    history: list[tuple[str, str, str]]        # (role, raw text, location)
    ended_by: str | None = None                # client_end | rounds | failure
    failure: tuple[str, str, str] | None = None   # (side, reason, detail)


@dataclass
class Simulation:
    dialogs: pl.DataFrame                      # canonical Dialogs (validated)
    turns: pl.DataFrame                        # canonical Turns (validated)
    failures: pl.DataFrame                     # profile_id, side, reason, detail
    calls: Counter = field(default_factory=Counter)   # complete() calls per side

    def report(self) -> dict:
        return {"sessions": self.dialogs.height, "failed": self.failures.height,
                "failures_by_reason": dict(Counter(self.failures["reason"].to_list())),
                "complete_calls": dict(self.calls),
                "turns_per_session": float(self.dialogs["n_turns"].mean()) if self.dialogs.height else None}


def write_simulation(simulation: Simulation, dialogs_path, turns_path) -> None:
    """Write the simulated sessions as canonical tables (validated again by write_table)."""
    write_table(simulation.dialogs, dialogs_path, Dialogs)
    write_table(simulation.turns, turns_path, Turns)


def source_name(model: str) -> str:
    """'simulated:<slug>', the Dialogs source of a counselor model's simulated sessions."""
    slug = _SLUG_UNSAFE.sub("-", model.lower()).strip("-")
    if not slug:
        raise ValueError(f"counselor name {model!r} has no usable characters for a source name")
    return f"{SOURCE_PREFIX}:{slug}"


def simulate(counselor: Client, client: Client, profiles: Sequence[IntakeProfile],
             settings: SimulationSettings = SimulationSettings()) -> Simulation:
    if settings.rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {settings.rounds}")
    ids = Counter(p.profile_id for p in profiles)
    if any(n > 1 for n in ids.values()):
        raise ValueError(f"profile ids repeat: {[i for i, n in ids.items() if n > 1][:5]}")
    sessions = [_Session(p, [(role, text, _source_location(p)) for role, text in p.opening]) for p in profiles]
    calls: Counter = Counter()
    first = [s for s in sessions if not any(role == "client" for role, _, _ in s.history)]
    if first:
        _client_turn(client, first, settings, calls, round_=0)
    for round_ in range(1, settings.rounds + 1):
        _counselor_turn(counselor, _live(sessions), settings, calls, round_)
        if round_ < settings.rounds:
            _client_turn(client, _live(sessions), settings, calls, round_)
    for s in _live(sessions):
        s.ended_by = "rounds"
    source = source_name(settings.counselor_name or counselor.model)
    done = [s for s in sessions if s.failure is None]
    dialogs, turns = _tables(done, source, counselor.model, client.model, settings)
    failures = pl.DataFrame([dict(zip(("profile_id", "side", "reason", "detail"), (s.profile.profile_id, *s.failure)))
                             for s in sessions if s.failure is not None],
                            schema={"profile_id": pl.String, "side": pl.String, "reason": pl.String,
                                    "detail": pl.String})
    return Simulation(dialogs, turns, failures, calls)


def _source_location(p: IntakeProfile) -> str:
    """file#record, the Turns location of an opening turn (a record may already be '#<i>', as ingest names them)."""
    return f"{p.provenance_file}{'' if p.provenance_record.startswith('#') else '#'}{p.provenance_record}"


def _live(sessions: list[_Session]) -> list[_Session]:
    return [s for s in sessions if s.ended_by is None]


def _counselor_turn(counselor: Client, live: list[_Session], settings: SimulationSettings, calls: Counter,
                    round_: int) -> None:
    if not live:
        return
    decode = settings.counselor_decode
    requests = [ChatRequest(_counselor_messages(s, settings), max_tokens=decode.max_new_tokens,
                            temperature=decode.temperature, top_p=decode.top_p,
                            repetition_penalty=decode.repetition_penalty, seed=settings.seed,
                            tag=s.profile.profile_id) for s in live]
    calls["counselor"] += 1
    for s, result in zip(live, counselor.complete(requests, desc=f"simulate counselor round {round_}")):
        _append(s, "counselor", result, f"generated:{counselor.model}#round{round_}")


def _client_turn(client: Client, live: list[_Session], settings: SimulationSettings, calls: Counter,
                 round_: int) -> None:
    if not live:
        return
    requests = [ChatRequest(_client_messages(s), max_tokens=settings.client_max_tokens,
                            temperature=settings.client_temperature, seed=settings.seed,
                            prompt_version=PROMPT_VERSION, tag=s.profile.profile_id) for s in live]
    calls["client"] += 1
    for s, result in zip(live, client.complete(requests, desc=f"simulate client round {round_}")):
        _append(s, "client", result, f"generated:{client.model}#round{round_}")


def _append(session: _Session, role: str, result, location: str) -> None:
    if isinstance(result, Failure):
        session.ended_by, session.failure = "failure", (role, result.reason, result.detail)
        return
    text = result.text
    if role == "client" and END_MARKER in text:
        text, session.ended_by = text.replace(END_MARKER, ""), "client_end"
    if normalize_text(text):
        session.history.append((role, text.strip(), location))
    elif session.ended_by is None:  # only a bare end marker may be empty
        session.ended_by, session.failure = "failure", (role, "empty_turn", "the reply has no text")


def _counselor_messages(s: _Session, settings: SimulationSettings) -> tuple[tuple[str, str], ...]:
    system = (settings.counselor_system or {}).get(s.profile.language)
    chat = tuple(("user" if role == "client" else "assistant", text) for role, text, _ in s.history)
    return ((("system", system),) if system else ()) + chat


def _client_messages(s: _Session) -> tuple[tuple[str, str], ...]:
    p = s.profile
    system = ("system", client_system(p.language, p.intake, p.attitude, p.attitude_instruction))
    chat = tuple(("assistant" if role == "client" else "user", text) for role, text, _ in s.history)
    if not chat or chat[0][0] == "assistant":  # the client speaks first: cue it
        chat = (("user", FIRST_WORDS[p.language]),) + chat
    return (system,) + chat


def _tables(sessions: list[_Session], source: str, counselor_model: str, client_model: str,
            settings: SimulationSettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    dialogs, turns = [], []
    for s in sessions:
        p = s.profile
        dialog_id = f"{source}:{p.profile_id}"
        meta = {"profile_id": p.profile_id, "attitude": p.attitude, "counselor_model": counselor_model,
                "client_model": client_model, "rounds": settings.rounds, "seed": settings.seed,
                "ended_by": s.ended_by, "opening_turns": len(p.opening)}
        dialogs.append({"dialog_id": dialog_id, "source": source, "language": p.language, "topic": p.topic,
                        "method": METHOD, "split": SPLIT, "n_turns": len(s.history),
                        "provenance_file": p.provenance_file, "provenance_record": p.provenance_record,
                        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)})
        turns += [{"dialog_id": dialog_id, "turn_index": i, "role": role, "text": normalize_text(text),
                   "text_raw": text, "mi_behavior": None, "mi_code": None, "client_talk": None,
                   "code_agreement": None, "n_annotators": None, "location": location}
                  for i, (role, text, location) in enumerate(s.history)]
    return (validate(_frame(dialogs, Dialogs), Dialogs, "simulated dialogs"),
            validate(_frame(turns, Turns), Turns, "simulated turns"))


def _frame(rows: list[dict], model) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=empty_table(model).schema)
