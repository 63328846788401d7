"""The longest answer a judge's JSON Schema allows, in tokens: what a token cap must hold so no valid answer is cut.

The schema bounds every part of an answer (enums, integer ranges, booleans, strings by maxLength, objects by their
properties), so the longest compact JSON it admits can be counted: the frame (braces, keys, quotes, commas) is
ASCII; every string character may be non-ASCII, since a justification may be Chinese or Korean. How many tokens
those characters take depends on who decodes:
- a remote GPT-4-class judge (REMOTE): one token per 2 frame characters, 2 tokens a Han/Hangul character;
- a local model decoding under the schema (BYTE_LEVEL): grammar-constrained decoding may spell any text in any
  tokenization the vocabulary admits, down to single bytes (byte-level BPE and SentencePiece's byte fallback
  both have them), so the worst case is one token per frame character and 3 per character of the Basic
  Multilingual Plane (its UTF-8 length: SmolLM2 writes Korean at about that).
An over-estimate on purpose: a cap is only an upper bound, the answer is billed as written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenCost:
    frame_chars_per_token: int
    tokens_per_text_char: int


REMOTE = TokenCost(frame_chars_per_token=2, tokens_per_text_char=2)
BYTE_LEVEL = TokenCost(frame_chars_per_token=1, tokens_per_text_char=3)


def token_cost(client) -> TokenCost:
    """How `client`'s judge spends tokens: BYTE_LEVEL when the judge decodes locally under the schema."""
    config = getattr(client, "config", None)
    return BYTE_LEVEL if getattr(config, "backend", None) == "local" else REMOTE


def max_answer_tokens(schema: dict, cost: TokenCost = REMOTE) -> int:
    frame, text = _longest(schema)
    return -(-frame // cost.frame_chars_per_token) + text * cost.tokens_per_text_char


def answer_cap(schema: dict, cap: int, client) -> int:
    """The tokens to ask for: `cap`, or less when no valid answer to `schema` can be that long."""
    return min(cap, max_answer_tokens(schema, token_cost(client)))


def _longest(schema: dict) -> tuple[int, int]:
    """(frame characters, free-text characters) of the longest compact JSON value `schema` admits."""
    if "enum" in schema:
        return max(len(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]), 0
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False:
            raise ValueError("an object open to additional properties has no longest answer")
        parts = [(len(json.dumps(key, ensure_ascii=False)) + 1 + frame, text)
                 for key, sub in props.items() for frame, text in [_longest(sub)]]
        return 2 + max(len(parts) - 1, 0) + sum(f for f, _ in parts), sum(t for _, t in parts)
    if kind == "string":
        if "maxLength" not in schema:
            raise ValueError("a string without maxLength has no longest answer")
        return 2, int(schema["maxLength"])  # quotes; escapes are not counted (a judge's prose rarely has them)
    if kind == "integer":
        return max(len(str(schema["minimum"])), len(str(schema["maximum"]))), 0
    if kind == "boolean":
        return len("false"), 0
    raise ValueError(f"cannot bound a schema of type {kind!r}")
