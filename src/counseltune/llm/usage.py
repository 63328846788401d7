"""Accounting: what a run sent and spent, the budget that stops it, and the usage file written at its end."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import atomic_write
from .config import Price
from .ledger import SpendLedger
from .types import ChatRequest, Usage

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators a chat format adds per message


def estimate_tokens(text: str) -> int:
    """A safe over-estimate of text's tokens without a tokenizer.

    ASCII text runs about 4 characters a token, so chars/2 is safe; a Han character is about one token, so each
    non-ASCII character counts as one.
    """
    ascii_chars = sum(c.isascii() for c in text)
    return (ascii_chars + 1) // 2 + len(text) - ascii_chars


def worst_case_prompt_tokens(request: ChatRequest) -> int:
    return sum(estimate_tokens(content) + MESSAGE_OVERHEAD_TOKENS for _, content in request.messages)


def worst_case_cost(request: ChatRequest, price: Price) -> float:
    return price.cost(worst_case_prompt_tokens(request), request.max_tokens)


class BudgetReached(Exception):
    """Internal: raised by a backend when the next request would break the budget (the client adds the results)."""

    def __init__(self, next_cost_usd: float) -> None:
        super().__init__(next_cost_usd)
        self.next_cost_usd = next_cost_usd


@dataclass
class Ticket:
    """One request's hold on the budget: its worst case until answered, then what it really cost."""
    worst_usd: float
    ledger_id: str | None = None
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    answered: bool = False  # an answer came back (and was paid for, whether or not it is kept)


class Budget:
    """Spent + the worst case of every request in flight may never exceed the limit: this client's own, and with
    a ledger (llm/ledger.py) every client's, stage's and job's of the run, past runs' spend included."""

    def __init__(self, limit_usd: float, usage: Usage, ledger: SpendLedger | None = None,
                 booked_as: tuple[str, str] = ("llm", "")) -> None:
        self.limit_usd, self.usage, self.reserved = limit_usd, usage, 0.0
        self.ledger, self.booked_as = ledger, booked_as
        self._lock = threading.Lock()  # reserve/release run in worker threads (the ledger file's I/O)

    def reserve(self, cost: float) -> Ticket | None:
        with self._lock:
            if self.usage.cost_usd + self.reserved + cost > self.limit_usd:
                return None
            ticket = Ticket(cost)
            if self.ledger is not None:
                ticket.ledger_id = self.ledger.reserve(cost)
                if ticket.ledger_id is None:
                    return None
            self.reserved += cost
            return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            self.reserved -= ticket.worst_usd
        if self.ledger is not None and ticket.ledger_id is not None:
            stage, model = self.booked_as
            self.ledger.settle(ticket.ledger_id, ticket.cost_usd, stage=stage, model=model,
                               tokens_in=ticket.tokens_in, tokens_out=ticket.tokens_out, answered=ticket.answered)


def add_counts(target: dict[str, int], counts: Counter | dict[str, int]) -> None:
    for key, n in counts.items():
        target[key] = target.get(key, 0) + n


def write_usage(path: Path, usage: Usage, *, stage: str, **context) -> str:
    """Write usage as JSON (with the stage and any context, e.g. model=...) and return a one-line summary."""
    atomic_write(Path(path), (json.dumps({"stage": stage, **context, **asdict(usage)}, indent=2, sort_keys=True)
                              + "\n").encode("utf-8"))
    return summary(usage, stage=stage)


def summary(usage: Usage, *, stage: str) -> str:
    retries = sum(usage.attempt_errors.values())
    failed = sum(usage.failures.values())
    failures = ", ".join(f"{k} {v}" for k, v in sorted(usage.failures.items()))
    rejected = sum(usage.cache_rejected.values())
    rejected_kinds = ", ".join(f"{k} {v}" for k, v in sorted(usage.cache_rejected.items()))
    return (f"llm [{stage}]: {usage.requests:,} requests sent ({retries:,} failed attempts), "
            f"{usage.cache_hits:,} cache hits, {usage.tokens_in:,} tokens in / {usage.tokens_out:,} out, "
            f"${usage.cost_usd:.4f}, {failed:,} failed{f' ({failures})' if failed else ''}, "
            f"{usage.redactions:,} redactions"
            + (f", {rejected:,} cache entries rejected ({rejected_kinds}; moved aside as *.bad)" if rejected else ""))


def run_summary(stats_files: list[Path]) -> str:
    """One line per stage stats JSON that carries a "usage" block, plus the total: shown at the end of a run."""
    lines, total = [], Usage()
    for path in sorted(Path(p) for p in stats_files):
        block = json.loads(path.read_text(encoding="utf-8")).get("usage")
        if not block:
            continue
        usage = Usage(**{k: v for k, v in block.items() if k in Usage.__dataclass_fields__})
        lines.append(summary(usage, stage=path.stem))
        for name in ("requests", "cache_hits", "tokens_in", "tokens_out", "cost_usd", "redactions"):
            setattr(total, name, getattr(total, name) + getattr(usage, name))
        add_counts(total.failures, usage.failures)
        add_counts(total.attempt_errors, usage.attempt_errors)
        add_counts(total.cache_rejected, usage.cache_rejected)
    return "\n".join(lines + ([summary(total, stage="all stages")] if len(lines) > 1 else []))
