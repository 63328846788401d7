"""One spend ledger for a whole run: every stage, every job (local or concurrent SLURM jobs on one filesystem)
and every re-run draw on the same `llm.remote.budget_usd`.

A per-client budget let each fidelity job's judge and simulated client spend the whole budget again. The ledger
is a small JSON file beside the LLM cache (`<llm.cache_dir>/spend.ledger`, JSON), changed only under a file lock:
before a paid request a job reserves its worst-case cost (refused when spent + everyone's reservations + this
one would pass the limit), and after the answer it settles the reservation with the real cost, booked to its
stage and model. A reservation whose process died (same host) or that is older than `STALE_S` is dropped, so a
killed job never holds budget hostage.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from filelock import FileLock

from counseltune.processes import alive

from .errors import LLMError

STALE_S = 6 * 3600  # a reservation older than any request's timeout with all its retries
LEDGER_NAME = "spend.ledger"  # in llm.cache_dir
USAGE_FIELDS = ("requests", "tokens_in", "tokens_out", "usd")  # booked per stage and model


class SpendLedger:
    def __init__(self, path: Path, limit_usd: float) -> None:
        self.path, self.limit_usd = Path(path), float(limit_usd)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")

    def reserve(self, cost_usd: float) -> str | None:
        """Hold cost_usd of the budget for one request; None when that would pass the limit."""
        with self._lock:
            state = self._load()
            held = sum(r["usd"] for r in state["reserved"].values())
            if state["spent_usd"] + held + cost_usd > self.limit_usd + 1e-12:
                return None
            ticket = uuid.uuid4().hex
            state["reserved"][ticket] = {"usd": cost_usd, "host": socket.gethostname(), "pid": os.getpid(),
                                         "at": time.time()}
            self._save(state)
            return ticket

    def settle(self, ticket: str, cost_usd: float, *, stage: str, model: str, tokens_in: int = 0,
               tokens_out: int = 0, answered: bool | None = None) -> None:
        """Replace a reservation with what the request really cost (0 when it failed before an answer); an
        answered request (default: one that cost something) is counted with its tokens for the spend report."""
        with self._lock:
            state = self._load()
            state["reserved"].pop(ticket, None)
            key = f"{stage}|{model}"
            if cost_usd:
                state["spent_usd"] += cost_usd
                state["by_stage_model"][key] = state["by_stage_model"].get(key, 0.0) + cost_usd
            if answered if answered is not None else bool(cost_usd):
                row = state["usage_by_stage_model"].setdefault(key, dict.fromkeys(USAGE_FIELDS, 0))
                for name, value in zip(USAGE_FIELDS, (1, tokens_in, tokens_out, cost_usd)):
                    row[name] += value
            self._save(state)

    def spent(self) -> dict:
        """{"spent_usd": total, "by_stage_model": {"stage|model": usd}, "usage_by_stage_model": {"stage|model":
        {requests, tokens_in, tokens_out, usd}}, "limit_usd": ...}."""
        with self._lock:
            state = self._load()
        return {"spent_usd": state["spent_usd"], "by_stage_model": dict(state["by_stage_model"]),
                "usage_by_stage_model": dict(state["usage_by_stage_model"]), "limit_usd": self.limit_usd}

    def _load(self) -> dict:
        state = {"spent_usd": 0.0, "by_stage_model": {}, "usage_by_stage_model": {}, "reserved": {}}
        if self.path.exists():
            try:
                state.update(json.loads(self.path.read_text(encoding="utf-8")))
            except ValueError:
                raise LedgerError(f"{self.path} is not valid JSON: it holds the run's LLM spend, so nothing is sent "
                                  "until it is fixed (restore it, or delete it to start the count from zero)") from None
        host, now = socket.gethostname(), time.time()
        state["reserved"] = {t: r for t, r in state["reserved"].items()
                             if now - r["at"] < STALE_S and not (r["host"] == host and not alive(r["pid"]))}
        return state

    def _save(self, state: dict) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


class LedgerError(LLMError):
    """The ledger file cannot be read: nothing is sent until it is fixed."""
