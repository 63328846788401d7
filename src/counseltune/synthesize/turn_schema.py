"""The JSON Schema of one synthesized turn, and reading a reply back through it.

A turn-by-turn generator asks for {"<label>": <the planned code / talk type / CBT stage>, "utterance": "..."}.
The label is fixed by the plan (a one-value enum), so the model states what it is about to do before it says
it; a planned question ends with a question mark and a planned reflection does not (their surface form in
MITI, which the plan-adherence filter also checks: by construction it then holds for a constrained decode,
so that filter only still catches endpoints that ignore the schema). The utterance is one line without a colon: it cannot open another speaker's turn ("Client: ...") or a
second paragraph, and its maxLength fits the request's max_tokens, so a constrained local decode closes the
JSON before the token cap instead of being cut mid-turn. Remote endpoints get the same schema (strict
json_schema); an endpoint without structured outputs answers json_object and the reply is validated here.
"""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from counseltune.llm.scrub import clip
from counseltune.llm.types import OutputSchema

UTTERANCE = "utterance"
# No line breaks (a second speaker would start on a new line) and no colon, ASCII or full width (a speaker
# label, even inline); at least one character that is not a space.
_LINE, _VISIBLE = r"[^\n\r:：]*", r"[^\s:：]"
UTTERANCE_PATTERN = rf"^{_LINE}{_VISIBLE}{_LINE}$"
ENDING_PATTERNS = {   # the last character of a planned question / statement (reflection)
    "question": rf"^{_LINE}[^\s:：?？]{_LINE}[?？]$",
    "statement": rf"^{_LINE}[^\s:：?？]$",
}
# Characters per token, conservatively low, so an utterance at maxLength still fits the token cap: SmolLM2's
# and Gemma's tokenizers average 4+ characters a token on English prose, about one (often two tokens a
# character) on Chinese and Korean. A small model's odd strings (hashes, markup) tokenize far worse than prose:
# at 2.5 for English 3 of 16 SmolLM2 sessions lost a turn to the token cap.
CHARS_PER_TOKEN = {"en": 1.5, "zh": 0.5, "ko": 0.5}
MIN_UTTERANCE_CHARS = 16


class TurnError(ValueError):
    """A reply that is not a turn of its schema (only possible from an endpoint that ignored the schema)."""


def turn_schema(name: str, language: str, max_tokens: int, label: tuple[str, str] | None = None,
                ending: str | None = None) -> OutputSchema:
    """The schema of one turn; `label` = (field, value) the plan fixes, e.g. ("code", "open_question"); `ending`
    (question | statement) the form the planned code takes."""
    pattern = ENDING_PATTERNS[ending] if ending else UTTERANCE_PATTERN
    properties: dict = {UTTERANCE: {"type": "string", "minLength": 1, "pattern": pattern,
                                    "maxLength": utterance_chars(language, max_tokens, label)}}
    if label is not None:
        properties[label[0]] = {"type": "string", "enum": [label[1]]}
    return OutputSchema.of(name, {"type": "object", "additionalProperties": False,
                                  "required": sorted(properties), "properties": properties})


def utterance_chars(language: str, max_tokens: int, label: tuple[str, str] | None = None) -> int:
    """The longest utterance whose JSON still fits max_tokens (the JSON around it counted at a token per 2 chars)."""
    scaffold = len(json.dumps({**({label[0]: label[1]} if label else {}), UTTERANCE: ""})) // 2 + 4  # + stop tokens
    return max(MIN_UTTERANCE_CHARS, int((max_tokens - scaffold) * CHARS_PER_TOKEN[language]))


def read_turn(text: str, schema: OutputSchema) -> dict[str, str]:
    """The reply's fields, validated against the schema it was asked for; TurnError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise TurnError(f"not JSON ({err.msg} at char {err.pos})") from None
    errors = sorted(Draft202012Validator(schema.schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "the reply"
        raise TurnError(f"{where} breaks {errors[0].validator}: {clip(errors[0].message, 160)}")
    return data
