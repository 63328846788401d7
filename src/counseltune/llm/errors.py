"""The errors the LLM client raises; a failed request is a Failure in the results, never one of these."""

from __future__ import annotations

from counseltune.errors import CounseltuneError

from .types import Failure, Reply


class LLMError(CounseltuneError):
    """Base of every error raised by counseltune.llm."""


class ConfigError(LLMError, ValueError):
    """The llm config is invalid; the message names the key and what is expected."""


class MissingAPIKey(ConfigError):
    """The environment variable named by llm.key_env is unset or empty."""


class BudgetExceeded(LLMError):
    """The next request could cost more than is left of llm.budget_usd: the run stopped before sending it.

    Every reply received so far is in the cache, so a re-run with a higher budget pays only for the rest.
    """

    def __init__(self, *, results: list[Reply | Failure | None], spent_usd: float, budget_usd: float,
                 next_cost_usd: float) -> None:
        self.results = results  # in request order; None for a request that was never answered
        self.done = sum(r is not None for r in results)
        self.total = len(results)
        self.spent_usd, self.budget_usd = spent_usd, budget_usd
        super().__init__(
            f"the LLM budget of ${budget_usd:.4f} (llm.remote.budget_usd in params.yaml) is reached: {self.done} of {self.total} requests answered, "
            f"${spent_usd:.4f} spent, the next request could cost up to ${next_cost_usd:.4f}. The answers are cached: "
            f"re-run with a higher budget to pay only for the remaining {self.total - self.done}.")
