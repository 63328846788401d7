"""A client wrapper that turns the budget's stop into per-request Failures, so a synthesis run ends cleanly.

The LLM client raises BudgetExceeded when the next paid request would pass llm.remote.budget_usd. Synthesis keeps
what it has: the requests that were answered stay answers, the rest become Failure("budget_stop"), and every later
call fails the same way without sending anything. The session loop then finishes its round, the sessions cut short
are reported as unfinished, and the stage writes the accepted ones with the stop reason in its stats.
"""

from __future__ import annotations

from collections.abc import Sequence

from counseltune.llm.errors import BudgetExceeded
from counseltune.llm.types import ChatRequest, Client, Failure, Reply

BUDGET_STOP = "budget_stop"


class StopOnBudget:
    """types.Client around another client; `stopped` holds the budget's message once it stopped the run."""

    def __init__(self, client: Client) -> None:
        self.inner = client
        self.stopped: str | None = None

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def usage(self):
        return self.inner.usage

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[Reply | Failure]:
        if self.stopped is not None:
            return [self._not_sent() for _ in requests]
        try:
            return self.inner.complete(requests, desc=desc)
        except BudgetExceeded as stop:
            self.stopped = str(stop)
            return [self._not_sent() if r is None else r for r in stop.results]

    def _not_sent(self) -> Failure:
        return Failure(BUDGET_STOP, f"not sent: {self.stopped}", attempts=0)
