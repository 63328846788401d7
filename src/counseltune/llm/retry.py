"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_AFTER_JITTER = 0.1  # wait up to 10% past a server's Retry-After, so waiting callers do not return in lockstep


class AttemptFailed(Exception):
    """One attempt that gave no usable reply: the reason (a Failure reason), and whether trying again can help."""

    def __init__(self, reason: str, detail: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.retryable, self.retry_after = reason, detail, retryable, retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_s: float
    max_s: float

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1-based).

        A server's Retry-After is honored as given (plus a little jitter), even past max_s: it knows its limits.
        Otherwise exponential backoff capped at max_s with "equal jitter": half fixed, half random, so waits grow
        but concurrent retries spread out.
        """
        if retry_after is not None:
            return retry_after * (1 + rng.uniform(0, RETRY_AFTER_JITTER))
        ceiling = min(self.max_s, self.base_s * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds -> float; absent, negative or an HTTP date -> None (use backoff)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
