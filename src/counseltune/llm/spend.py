"""A job's part of the run's spend ledger, written as a small table beside its outputs (metrics/spend/...).

The ledger (ledger.py) lives outside the DAG and grows with every paid request anywhere, so no stage reads it as
an input: the report would re-run on every request of every job. Instead each LLM stage writes, when it ends,
what the ledger has booked to its own job (every answered attempt, re-runs and retries included), and the reports
add these tables up. Every booking belongs to exactly one job (its stage label: "synthesize[mi_plain]",
"judge_validation", "fidelity[<model>] judge", ...), so their total is the ledger's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache import atomic_write
from .ledger import LEDGER_NAME, USAGE_FIELDS, SpendLedger


def ledger_path(llm: Mapping[str, Any]) -> Path:
    return Path(llm["cache_dir"]) / LEDGER_NAME


def job_spend(llm: Mapping[str, Any], job: str) -> dict[str, Any]:
    """{job, backend, budget_usd, rows: [{stage, model, requests, tokens_in, tokens_out, usd}]} of one job: the
    ledger's bookings whose stage label is `job` or `job` plus a role ("fidelity[m]" has "fidelity[m] judge")."""
    budget = float(llm["remote"]["budget_usd"])
    rows = []
    path = ledger_path(llm)
    if path.exists():  # no ledger: nothing paid yet (or a local backend, which pays nothing)
        spent = SpendLedger(path, budget).spent()
        usage, usd = spent["usage_by_stage_model"], spent["by_stage_model"]
        for key in sorted(set(usage) | set(usd)):
            stage, _, model = key.partition("|")
            if stage == job or stage.startswith(job + " "):
                row = {**dict.fromkeys(USAGE_FIELDS, 0), **usage.get(key, {})}
                row["usd"] = usd.get(key, 0.0)  # the budget's own figure (also set for bookings made before usage)
                rows.append({"stage": stage, "model": model, **row})
    return {"job": job, "backend": llm["backend"], "budget_usd": budget, "rows": rows}


def write_job_spend(llm: Mapping[str, Any], job: str, path: Path) -> dict[str, Any]:
    spend = job_spend(llm, job)
    atomic_write(Path(path), (json.dumps(spend, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return spend
