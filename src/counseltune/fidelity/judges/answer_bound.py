"""The longest answer a judge's JSON Schema allows, in tokens: what a token cap must hold so no valid answer is cut.

The schema bounds every part of an answer (enums, integer ranges, booleans, strings by maxLength, objects by their
properties), so the longest compact JSON it admits can be counted: the frame (braces, keys, quotes, commas) is
ASCII, counted at one token per 2 characters (English text runs ~4 a token, JSON punctuation ~1-3); every string
character at TOKENS_PER_TEXT_CHAR, since a justification may be Chinese and a Han character can take 2 tokens in a
GPT-4-class tokenizer. An over-estimate on purpose: a cap is only an upper bound, the answer is billed as written.
"""

from __future__ import annotations

import json

TOKENS_PER_TEXT_CHAR = 2
FRAME_CHARS_PER_TOKEN = 2


def max_answer_tokens(schema: dict) -> int:
    frame, text = _longest(schema)
    return -(-frame // FRAME_CHARS_PER_TOKEN) + text * TOKENS_PER_TEXT_CHAR


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
