"""What every backend shares: privacy guard, cache lookup, de-duplication, accounting and the progress bar.

A backend subclass only answers the requests the cache could not (`_answer`), reporting each result through
`record` as soon as it has it, after storing a Reply with `_store`, so a killed run keeps everything it got.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tqdm import tqdm

from .cache import ResponseCache, cache_key, key_fields
from .config import LLMConfig
from .errors import BudgetExceeded
from .redact import Redactor
from .retry import AttemptFailed
from .types import ChatRequest, Failure, Reply, Usage
from .usage import BudgetReached, add_counts


@dataclass
class Pending:
    """One distinct request to answer (as it will be sent) and the positions in the caller's list it fills."""

    key: str
    request: ChatRequest
    indices: list[int]
    redactions: int


Record = Callable[[Pending, "Reply | Failure"], None]


class CachingClient:
    backend: str

    def __init__(self, config: LLMConfig, redactor: Redactor | None) -> None:
        self.config, self.model, self.usage = config, config.model, Usage()
        self.cache = ResponseCache(config.cache_dir, rejected=self.usage.cache_rejected)
        self.redactor = redactor  # None: text goes out as it is (local models)

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[Reply | Failure]:
        results: list[Reply | Failure | None] = [None] * len(requests)
        pending: dict[str, Pending] = {}
        for i, request in enumerate(requests):
            sent, redactions = self._guard(request)
            key = cache_key(self.backend, self.model, sent)
            if key in pending:  # asked twice in one call: pay once
                pending[key].indices.append(i)
                continue
            cached = self.cache.get(key)
            if cached is not None and rejection(sent, cached.text, cached.finish_reason) is None:
                results[i] = replace(cached, redactions=redactions)
                self.usage.cache_hits += 1
            else:
                pending[key] = Pending(key, sent, [i], redactions)

        bar = tqdm(total=len(requests), initial=len(requests) - sum(len(p.indices) for p in pending.values()),
                   desc=desc or f"llm {self.model}", unit="req", dynamic_ncols=True)

        def record(p: Pending, result: Reply | Failure) -> None:
            if isinstance(result, Reply):
                result = replace(result, redactions=p.redactions)
                self.usage.cache_hits += len(p.indices) - 1
            else:
                add_counts(self.usage.failures, {result.reason: 1})
            for i in p.indices:
                results[i] = result
            bar.update(len(p.indices))

        try:
            self._answer(list(pending.values()), record)
        except BudgetReached as stop:
            raise BudgetExceeded(results=results, spent_usd=self.usage.cost_usd, budget_usd=self.config.budget_usd,
                                 next_cost_usd=stop.next_cost_usd) from None
        finally:
            bar.close()
        return results  # type: ignore[return-value]  # every slot is filled unless BudgetExceeded was raised

    def _answer(self, pending: list[Pending], record: Record) -> None:
        raise NotImplementedError

    def _store(self, p: Pending, reply: Reply) -> None:
        self.cache.put(p.key, key_fields(self.backend, self.model, p.request), reply)

    def _guard(self, request: ChatRequest) -> tuple[ChatRequest, int]:
        if self.redactor is None:
            return request, 0
        sent, counts = self.redactor.redact_request(request)
        self.usage.redactions += sum(counts.values())
        add_counts(self.usage.redactions_by_kind, counts)
        return sent, sum(counts.values())


def rejection(request: ChatRequest, text: str, finish_reason: str) -> AttemptFailed | None:
    """Why a reply may not be returned as data (None: it may).

    A reply cut by max_tokens is not a transport fault: the same request would be cut again, so it is never
    retried here (each retry would buy another full answer). It is a Failure, or, for a caller that validates
    and re-asks itself (caller_validates), a Reply with finish_reason "length" for it to count as a re-ask.
    """
    if not text.strip():
        return AttemptFailed("malformed", "empty content")
    if request.caller_validates:
        return None
    if finish_reason == "length" and (request.require_complete or request.wants_json):
        return AttemptFailed("truncated", f"cut at max_tokens={request.max_tokens}", retryable=False)
    if request.wants_json and not _is_json_object(text):
        return AttemptFailed("invalid_json", "json_mode reply is not a JSON object")
    return None


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
