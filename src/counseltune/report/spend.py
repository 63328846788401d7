"""The run's LLM spend per stage and model, from the LLM stages' spend tables (metrics/spend/..., llm/spend.py).

Computed here, rendered by the reports: one row per stage label and API model (requests, tokens, USD, the run's
budget and the row's share of it), and the total, which equals the ledger's when every LLM job's table is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpendRow:
    stage: str
    model: str
    requests: int
    tokens_in: int
    tokens_out: int
    usd: float
    share: float | None  # of the budget; None without a budget (0)


@dataclass(frozen=True)
class SpendTable:
    rows: list[SpendRow]
    total: SpendRow
    budget_usd: float | None  # None: no job wrote a spend table


def read_spend(folder: Path) -> list[dict]:
    """Every job's spend table under folder (metrics/spend/**.json), in path order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).rglob("*.json"))]


def spend_table(jobs: list[dict], stage_prefix: str = "") -> SpendTable:
    """The rows of every job (only stage labels starting with stage_prefix, e.g. "fidelity[m]"), and their total."""
    budgets = {job["budget_usd"] for job in jobs}
    budget = max(budgets) if budgets else None  # one run, one budget: the jobs agree unless params changed between
    rows = []
    for job in jobs:
        for r in job["rows"]:
            if r["stage"].startswith(stage_prefix):
                rows.append(SpendRow(r["stage"], r["model"], r["requests"], r["tokens_in"], r["tokens_out"], r["usd"],
                                     _share(r["usd"], budget)))
    rows.sort(key=lambda r: (r.stage, r.model))
    usd = sum(r.usd for r in rows)
    total = SpendRow("total", "", sum(r.requests for r in rows), sum(r.tokens_in for r in rows),
                     sum(r.tokens_out for r in rows), usd, _share(usd, budget))
    return SpendTable(rows, total, budget)


def _share(usd: float, budget: float | None) -> float | None:
    return usd / budget if budget else None
