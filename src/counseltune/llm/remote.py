"""Any OpenAI-compatible chat-completions endpoint, through the `openai` package's AsyncOpenAI.

The package's own retries are off (max_retries=0): every attempt goes through our policy, so it is counted,
priced and held to the budget. Requests go through the client's generic `post` (auth, base_url, timeouts and
status errors as usual) and the body is parsed here rather than by the package, so a malformed reply is a
counted, retried attempt instead of an exception from deep inside pydantic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from typing import Any

import openai

from .client import CachingClient, Pending, Record, rejection
from .config import LLMConfig
from .errors import MissingAPIKey
from .redact import Redactor
from .retry import AttemptFailed, RetryPolicy, parse_retry_after
from .scrub import clip, register_secret, scrub
from .types import ChatRequest, Failure, Reply
from .ledger import LEDGER_NAME, SpendLedger
from .usage import (
    Budget,
    BudgetReached,
    Ticket,
    add_counts,
    estimate_tokens,
    worst_case_cost,
    worst_case_prompt_tokens,
)

DETAIL_CHARS = 300  # how much of an error body a Failure keeps
SCHEMA_REFUSED = "json_schema_refused"  # an attempt refused for its response_format: asked again as json_object
log = logging.getLogger(__name__)


def read_api_key(key_env: str) -> str:
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise MissingAPIKey(
            f"llm.backend openai reads its API key from the environment variable {key_env}, which is not set. "
            f"Run `export {key_env}=<your key>` before the pipeline (never put the key in params.yaml or any other "
            f"file), or set llm.backend: local to use the embedded model, which needs no key.")
    return key


class OpenAIClient(CachingClient):
    backend = "openai"

    def __init__(self, config: LLMConfig, redactor: Redactor | None, api_key: str, stage: str = "") -> None:
        super().__init__(config, redactor)
        self._api_key = api_key
        register_secret(api_key)  # scrubbed from every error body, failure detail and quarantine row
        self.retry = RetryPolicy(config.max_retries, config.backoff_base_s, config.backoff_max_s)
        # One ledger for every client, stage and job of the run (llm/ledger.py): the budget caps the run.
        self.budget = Budget(config.budget_usd, self.usage, SpendLedger(config.cache_dir / LEDGER_NAME, config.budget_usd),
                             booked_as=(stage or "llm", self.model))
        self._rng = random.Random()
        self._stopped_at: float | None = None  # worst-case cost of the request the budget refused
        # Set when the endpoint refused response_format json_schema (HTTP 400 naming it): from then on schema
        # requests go out as json_object, and the caller's validation is the only check.
        self.json_schema_refused = False

    def __repr__(self) -> str:  # never the key
        return f"OpenAIClient(model={self.model!r}, base_url={self.config.base_url!r})"

    def _answer(self, pending: list[Pending], record: Record) -> None:
        if pending:
            asyncio.run(self._answer_all(pending, record))

    async def _answer_all(self, pending: list[Pending], record: Record) -> None:
        self._stopped_at = None
        slots = asyncio.Semaphore(self.config.concurrency)
        async with openai.AsyncOpenAI(api_key=self._api_key, base_url=self.config.base_url,
                                      timeout=self.config.timeout_s, max_retries=0) as api:
            async def answer(p: Pending) -> None:
                result = await self._ask(api, p.request, slots)
                if result is None:  # the budget stopped the run first
                    return
                if isinstance(result, Reply):
                    await asyncio.to_thread(self._store, p, result)  # fsync off the event loop
                record(p, result)

            await asyncio.gather(*(answer(p) for p in pending))
        if self._stopped_at is not None:
            raise BudgetReached(self._stopped_at)

    async def _ask(self, api: openai.AsyncOpenAI, request: ChatRequest,
                   slots: asyncio.Semaphore) -> Reply | Failure | None:
        worst = worst_case_cost(request, self.config.price)
        attempt = 0
        while True:
            attempt += 1
            async with slots:  # held for the attempt only, not while backing off: waiting costs no slot
                if self._stopped_at is not None:
                    return None
                ticket = await asyncio.to_thread(self.budget.reserve, worst)  # the ledger file: off the loop
                if ticket is None:
                    self._stopped_at = worst
                    return None
                try:
                    self.usage.requests += 1
                    return await self._attempt(api, request, ticket)
                except AttemptFailed as err:
                    failed = err
                finally:
                    await asyncio.to_thread(self.budget.release, ticket)
            add_counts(self.usage.attempt_errors, {failed.reason: 1})
            if failed.reason == SCHEMA_REFUSED:  # asked again at once as json_object, not counted as a retry
                attempt -= 1
                continue
            if not failed.retryable or attempt > self.retry.max_retries:
                log.warning("giving up on %s after %d attempt(s): %s", request.tag or "a request", attempt, failed)
                return Failure(failed.reason, failed.detail, attempt)
            delay = self.retry.delay(attempt, failed.retry_after, self._rng)
            log.debug("attempt %d failed (%s); retrying in %.2f s", attempt, failed, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, api: openai.AsyncOpenAI, request: ChatRequest, ticket: Ticket) -> Reply:
        params = self._params(request)
        try:
            async with asyncio.timeout(self.config.timeout_s):  # the whole request, not each socket read
                # The generic post: the typed create() re-validates the messages, ~10% of the client's CPU a request.
                body = await api.post("/chat/completions", cast_to=str, body=params)
        except (TimeoutError, openai.APITimeoutError):
            raise AttemptFailed("timeout", f"no reply within {self.config.timeout_s} s") from None
        except openai.APIConnectionError as err:
            cause = type(err.__cause__).__name__ if err.__cause__ else "no cause"
            raise AttemptFailed("connection", scrub(f"{err} ({cause})")) from None
        except openai.APIStatusError as err:
            # Only a refusal of what was sent: a refused json_object is an ordinary 4xx, not a loop.
            if params.get("response_format", {}).get("type") == "json_schema" and refuses_json_schema(err):
                self._fall_back_to_json_object(err)
                raise AttemptFailed(SCHEMA_REFUSED, "the endpoint refused response_format json_schema") from None
            raise self._status_failure(err) from None
        data = _json_body(body)
        text, finish_reason = _content(data)
        text = scrub(text)  # a proxy echoing the key must not get it into the cache or the data
        tokens_in, tokens_out = _tokens(data, request, text)
        self.usage.tokens_in += tokens_in
        self.usage.tokens_out += tokens_out
        ticket.cost_usd = self.config.price.cost(tokens_in, tokens_out)  # paid, whether or not the answer is kept
        ticket.tokens_in, ticket.tokens_out, ticket.answered = tokens_in, tokens_out, True
        self.usage.cost_usd += ticket.cost_usd
        refused = rejection(request, text, finish_reason)
        if refused is not None:
            raise refused
        return Reply(text, tokens_in, tokens_out, finish_reason, cached=False)

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model, "messages": [{"role": r, "content": c} for r, c in request.messages],
            "max_tokens": request.max_tokens, "temperature": request.temperature, "top_p": request.top_p,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        if request.schema is not None and not self.json_schema_refused:
            params["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema.name, "schema": request.schema.schema, "strict": True}}
        elif request.wants_json:
            params["response_format"] = {"type": "json_object"}
        return params

    def _fall_back_to_json_object(self, err: openai.APIStatusError) -> None:
        if not self.json_schema_refused:  # concurrent refusals: said once
            self.json_schema_refused = True
            log.warning("%s at %s refused response_format json_schema (HTTP %d: %s); its structured requests go "
                        "out as json_object from now on and are validated against their schema here",
                        self.model, self.config.base_url or "the default endpoint", err.status_code,
                        clip(err.response.text, DETAIL_CHARS))

    def _status_failure(self, err: openai.APIStatusError) -> AttemptFailed:
        status = err.status_code
        body = clip(err.response.text, DETAIL_CHARS)  # some APIs echo a bad key: scrubbed before the cut
        retry_after = parse_retry_after(err.response.headers.get("retry-after"))
        if status == 429:
            return AttemptFailed("http_429", f"rate limited: {body}", retry_after=retry_after)
        if status >= 500:
            return AttemptFailed("http_5xx", f"HTTP {status}: {body}", retry_after=retry_after)
        if status in (401, 403):
            return AttemptFailed("http_4xx", f"HTTP {status}: the endpoint refused the key in ${self.config.key_env}",
                                 retryable=False)
        return AttemptFailed("http_4xx", f"HTTP {status}: {body}", retryable=status in (408, 409))


def refuses_json_schema(err: openai.APIStatusError) -> bool:
    """An HTTP 400 whose body names response_format or json_schema: the endpoint has no structured outputs."""
    body = err.response.text.lower()
    return err.status_code == 400 and ("response_format" in body or "json_schema" in body)


def _json_body(body: str) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise AttemptFailed("malformed", f"response body is not JSON: {clip(body, 80)!r}") from None
    if not isinstance(data, dict):
        raise AttemptFailed("malformed", "response body is not a JSON object")
    return data


def _content(data: dict) -> tuple[str, str]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise AttemptFailed("malformed", "response has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return (content if isinstance(content, str) else ""), str(choices[0].get("finish_reason") or "stop")


def _tokens(data: dict, request: ChatRequest, text: str) -> tuple[int, int]:
    """The response's usage; estimated (over) when an endpoint leaves it out, so the budget still counts it."""
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (tokens_in if isinstance(tokens_in, int) else worst_case_prompt_tokens(request),
            tokens_out if isinstance(tokens_out, int) else estimate_tokens(text))
