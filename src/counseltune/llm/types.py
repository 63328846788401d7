"""The LLM client's contract, shared by synthesis, judging and simulated clients.

A stage builds ChatRequests, hands a list of them to a Client's `complete` and gets one Reply or one Failure
per request back, in order. Everything about transport (async, retries, cache, accounting, budget, privacy
guard) stays behind that call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutputSchema:
    """A JSON Schema a reply must follow, declared once by the caller.

    Remote endpoints get it as response_format json_schema (strict), local models decode under it (constrained.py).
    Kept as canonical JSON text, so a request stays hashable and the cache key sees the schema byte for byte.
    """

    name: str                # ^[A-Za-z0-9_-]{1,64}$, as OpenAI's response_format asks
    text: str                # the schema as canonical JSON

    @staticmethod
    def of(name: str, schema: dict) -> OutputSchema:
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:64] or "answer"
        return OutputSchema(name, json.dumps(schema, ensure_ascii=False, sort_keys=True, separators=(",", ":")))

    @property
    def schema(self) -> dict:
        return json.loads(self.text)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. Every field but tag and require_complete is part of the cache key (with backend and model)."""

    messages: tuple[tuple[str, str], ...]   # (role, content) pairs; role in system | user | assistant
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    prompt_version: str = "v1"              # bump when a prompt template changes: old answers stop matching
    json_mode: bool = False                 # ask for a JSON object; a reply that is not one is a Failure
    schema: OutputSchema | None = None      # ask for JSON of this schema (implies json_mode; the caller validates)
    # HF's repetition penalty, for local models only (chat APIs have no such field; remote endpoints ignore it)
    repetition_penalty: float = 1.0
    tag: str = ""                           # caller's label for logs/accounting (not part of the cache key)
    require_complete: bool = False          # a reply cut by max_tokens is a Failure, not data (not in the key)
    # The caller validates the reply and re-asks itself (fidelity/structured.py): a reply cut by max_tokens or not
    # JSON comes back as a Reply (and is cached, so a re-run replays it) instead of being retried here. Not in the key.
    caller_validates: bool = False

    @staticmethod
    def of(messages: Sequence[dict[str, str]], **kwargs) -> ChatRequest:
        return ChatRequest(tuple((m["role"], m["content"]) for m in messages), **kwargs)

    @property
    def wants_json(self) -> bool:
        return self.json_mode or self.schema is not None


@dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str       # stop | length
    cached: bool
    redactions: int = 0      # personal identifiers the privacy guard replaced in this request


@dataclass(frozen=True)
class Failure:
    """A request that could not be answered after every retry; reported, never written as data."""

    reason: str              # http_429 | http_5xx | http_4xx | timeout | connection | malformed | truncated | invalid_json | ...
    detail: str
    attempts: int


@dataclass
class Usage:
    requests: int = 0        # paid requests sent (retries included)
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)         # requests given up, by reason
    attempt_errors: dict[str, int] = field(default_factory=dict)   # every failed attempt (retried or not), by reason
    redactions: int = 0
    redactions_by_kind: dict[str, int] = field(default_factory=dict)
    cache_rejected: dict[str, int] = field(default_factory=dict)   # cache entries not served: damaged | wrong_key


class Client(Protocol):
    backend: str
    model: str
    usage: Usage

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[Reply | Failure]:
        """Answer every request (concurrently where the backend can), in order; shows a progress bar."""
        ...
