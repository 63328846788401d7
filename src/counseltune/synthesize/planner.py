"""Behavior planning as KMI does it: which MI code the counselor uses next, and which talk type the client answers with.

Two conditional models are estimated from expert-coded transcripts (AnnoMI, or any curated turns with codes):

    P(next counselor code | previous counselor code, last client talk type)
    P(client talk type    | previous counselor code)

Each is an add-k smoothed table that backs off to less context when a context was seen fewer than
`min_context_count` times: (previous code, talk) -> (previous code) -> the marginal. A dialog starts from
the START code; NO_TALK stands for "no client turn since the last counselor turn". An uncoded turn makes
the context unknown, and a transition is only counted at the levels whose context is fully known.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from counseltune.errors import CounseltuneError
from counseltune.schemas.tables import CLIENT_TALK
from counseltune.synthesize.codes import code_of

START = "<start>"
NO_TALK = "<none>"
_UNKNOWN = None
FORMAT = "counseltune-planner/1"
MARGINAL = ""  # the context key of the last backoff level


class PlannerError(CounseltuneError, ValueError):
    """A planner cannot be fitted or loaded (no coded turns, a malformed file)."""


@dataclass(frozen=True)
class PlannedTurn:
    role: str                 # client | counselor
    code: str | None = None   # counselor turns: the MI code to write
    talk: str | None = None   # client turns: change | neutral | sustain


class BackoffTable:
    """P(outcome | context) with add-k smoothing and backoff; contexts are given most specific first."""

    def __init__(self, outcomes: list[str], k: float, min_context_count: int, levels: int):
        self.outcomes = list(outcomes)
        self.k, self.min_context_count = float(k), int(min_context_count)
        self.counts: list[dict[str, Counter[str]]] = [defaultdict(Counter) for _ in range(levels)]

    def add(self, contexts: list[str | None], outcome: str) -> None:
        """Count one observation at every level whose context is known (the marginal always is)."""
        for level, context in enumerate(contexts + [MARGINAL]):
            if context is not _UNKNOWN:
                self.counts[level][context][outcome] += 1

    def level_for(self, contexts: list[str]) -> int:
        """The most specific level whose context was seen often enough (the marginal as the last resort)."""
        for level, context in enumerate(contexts):
            if sum(self.counts[level].get(context, Counter()).values()) >= self.min_context_count:
                return level
        return len(contexts)

    def distribution(self, contexts: list[str]) -> np.ndarray:
        level = self.level_for(contexts)
        seen = self.counts[level].get((contexts + [MARGINAL])[level], Counter())
        weights = np.array([seen.get(o, 0) + self.k for o in self.outcomes], dtype=float)
        return weights / weights.sum()

    def to_json(self) -> list[dict[str, dict[str, int]]]:
        return [{ctx: dict(sorted(c.items())) for ctx, c in sorted(level.items())} for level in self.counts]

    @classmethod
    def from_json(cls, data: list[dict[str, dict[str, int]]], outcomes: list[str], k: float, min_context_count: int) -> BackoffTable:
        table = cls(outcomes, k, min_context_count, len(data))
        for level, contexts in enumerate(data):
            for ctx, counts in contexts.items():
                table.counts[level][ctx] = Counter(counts)
        return table


class Planner:
    """The fitted next-code and client-talk models; sample() writes a session plan."""

    def __init__(self, codes: BackoffTable, talks: BackoffTable, fitted_on: dict[str, Any]):
        self.code_table, self.talk_table, self.fitted_on = codes, talks, fitted_on

    @property
    def codes(self) -> list[str]:
        return self.code_table.outcomes

    def code_probabilities(self, previous_code: str, last_talk: str) -> dict[str, float]:
        p = self.code_table.distribution([f"{previous_code}|{last_talk}", previous_code])
        return dict(zip(self.code_table.outcomes, p.tolist()))

    def talk_probabilities(self, previous_code: str) -> dict[str, float]:
        p = self.talk_table.distribution([previous_code])
        return dict(zip(self.talk_table.outcomes, p.tolist()))

    def sample(self, n_turns: int, rng: np.random.Generator, first_role: str = "client") -> list[PlannedTurn]:
        """A plan of n_turns alternating turns; the same rng state gives the same plan."""
        plan: list[PlannedTurn] = []
        previous_code, last_talk = START, NO_TALK
        role = first_role
        for _ in range(n_turns):
            if role == "client":
                last_talk = _draw(self.talk_table.outcomes, self.talk_table.distribution([previous_code]), rng)
                plan.append(PlannedTurn("client", talk=last_talk))
                role = "counselor"
            else:
                probs = self.code_table.distribution([f"{previous_code}|{last_talk}", previous_code])
                previous_code = _draw(self.code_table.outcomes, probs, rng)
                plan.append(PlannedTurn("counselor", code=previous_code))
                last_talk, role = NO_TALK, "client"
        return plan

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT, "k": self.code_table.k, "min_context_count": self.code_table.min_context_count,
            "codes": self.code_table.outcomes, "talks": self.talk_table.outcomes,
            "code_counts": self.code_table.to_json(), "talk_counts": self.talk_table.to_json(),
            "fitted_on": self.fitted_on,
        }
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> Planner:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise PlannerError(f"{path}: not a {FORMAT} file (format={data.get('format')!r})")
            k, m = data["k"], data["min_context_count"]
            codes = BackoffTable.from_json(data["code_counts"], data["codes"], k, m)
            talks = BackoffTable.from_json(data["talk_counts"], data["talks"], k, m)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise PlannerError(f"cannot load planner from {path}: {err}") from None
        return cls(codes, talks, data.get("fitted_on", {}))


def fit(turns: pl.DataFrame, k: float = 0.5, min_context_count: int = 3) -> Planner:
    """Estimate both models from a Turns table (only dialogs with coded counselor turns contribute)."""
    rows = turns.filter(pl.col("role") != "system").sort("dialog_id", "turn_index")
    observed = rows.filter(pl.col("role") == "counselor").select(
        pl.coalesce("mi_code", "mi_behavior").alias("code")).drop_nulls()["code"].unique().sort().to_list()
    if not observed:
        raise PlannerError("no coded counselor turns to fit a planner on (need AnnoMI/KMI turns with mi_behavior/mi_code)")
    code_table = BackoffTable(observed, k, min_context_count, levels=3)
    talk_table = BackoffTable(list(CLIENT_TALK), k, min_context_count, levels=2)
    n_dialogs = n_codes = n_talks = 0
    for _, dialog in rows.group_by("dialog_id", maintain_order=True):
        previous_code, last_talk = START, NO_TALK
        coded = False
        for role, mi_behavior, mi_code, talk in dialog.select("role", "mi_behavior", "mi_code", "client_talk").iter_rows():
            if role == "client":
                last_talk = talk  # None (uncoded) makes the talk context unknown
                if talk is not None:
                    talk_table.add([previous_code], talk)
                    n_talks += 1
                continue
            code = code_of(mi_behavior, mi_code)
            if code is not None:
                both = None if previous_code is None or last_talk is None else f"{previous_code}|{last_talk}"
                code_table.add([both, previous_code], code)
                n_codes, coded = n_codes + 1, True
            previous_code, last_talk = code, NO_TALK
        n_dialogs += coded
    fitted_on = {"dialogs": n_dialogs, "counselor_turns": n_codes, "client_turns": n_talks}
    return Planner(code_table, talk_table, fitted_on)


def _draw(outcomes: list[str], probabilities: np.ndarray, rng: np.random.Generator) -> str:
    return outcomes[int(rng.choice(len(outcomes), p=probabilities))]
