"""Read a model-written transcript back into (role, text) turns, and tidy a single-utterance reply.

Models decorate speaker prefixes freely: '**Client:**', '1. 咨询师：', '[내담자]:', '来访者:' with a half-width
colon, a blank line between turns, a preamble ("Here is the dialog:") or a closing note. A line that
starts with a speaker prefix opens a turn; an unprefixed line continues the open turn; text before the
first prefix is preamble and is reported, never silently glued to a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SPEAKER_NAMES = {
    "client": ["来访者", "求助者", "访客", "客户", "client", "patient", "user", "내담자", "클라이언트"],
    "counselor": ["心理咨询师", "咨询师", "支持者", "治疗师", "counselor", "counsellor", "therapist", "assistant",
                  "상담자", "상담사", "치료자"],
}
_ROLE_OF = {name: role for role, names in SPEAKER_NAMES.items() for name in names}
_NAMES = "|".join(sorted((re.escape(n) for n in _ROLE_OF), key=len, reverse=True))
# optional list marker / markdown, the name (maybe bracketed or bold, maybe with a note like '(open question)'),
# then a colon (half or full width)
PREFIX = re.compile(
    rf"^\s*(?:[-*>•]\s*|\d+[.)、]\s*)?[*_\[【(（]*\s*(?P<name>{_NAMES})\s*(?:[(（][^)）\n]{{0,40}}[)）])?"
    rf"\s*[*_\]】)）]*\s*[:：]\s*[*_]*\s*",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^\s*[-=*_#~·.。…]*\s*$")  # '---', '***', '...' lines carry no text


@dataclass
class ParsedTranscript:
    turns: list[tuple[str, str]] = field(default_factory=list)   # (client | counselor, text)
    preamble: list[str] = field(default_factory=list)            # lines before the first speaker prefix


def speaker_prefix(line: str) -> tuple[str, int] | None:
    """(role, end of the prefix) when the line opens with a speaker prefix."""
    match = PREFIX.match(line)
    if not match:
        return None
    return _ROLE_OF[match.group("name").lower()], match.end()


def parse_transcript(text: str) -> ParsedTranscript:
    parsed = ParsedTranscript()
    current: list[str] | None = None
    role = ""
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        opened = speaker_prefix(line)
        if opened is not None:
            _close(parsed, role, current)
            role, current = opened[0], [line[opened[1]:].strip()]
        elif _SEPARATOR.match(line):
            continue
        elif current is None:
            parsed.preamble.append(line.strip())
        else:
            current.append(line.strip())
    _close(parsed, role, current)
    return parsed


def _close(parsed: ParsedTranscript, role: str, lines: list[str] | None) -> None:
    if lines is None:
        return
    text = "\n".join(line for line in lines if line).strip()
    if text:  # a bare prefix ("咨询师：" at the end of a cut-off reply) is not a turn
        parsed.turns.append((role, _unquote(text)))


def clean_reply(text: str, role: str) -> tuple[str, bool]:
    """The single utterance a turn request asked for, and whether the model wrote past it.

    Drops a leading own-speaker prefix and wrapping quotes; cuts at the first line where another speaker
    starts talking (a model that continues the dialog), which the caller records.
    """
    lines = text.strip().replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    cut = False
    for i, line in enumerate(lines):
        opened = speaker_prefix(line)
        if opened is not None:
            if opened[0] != role or i > 0 and kept:
                cut = True
                break
            line = line[opened[1]:]
        kept.append(line.strip())
    return _unquote("\n".join(kept).strip()), cut


_QUOTES = [('"', '"'), ("“", "”"), ("「", "」"), ("『", "』"), ("'", "'")]


def _unquote(text: str) -> str:
    """Drop one pair of quotes around the whole text (not quotes that open and close inner phrases)."""
    for left, right in _QUOTES:
        inner = text[1:-1]
        if len(text) >= 2 and text[0] == left and text[-1] == right and left not in inner and right not in inner:
            return inner.strip()
    return text


_SENTENCE_END = re.compile(r"[.!?。！？…](?:[\"'”’」』)\]]*)")


def last_complete_sentences(text: str) -> str | None:
    """text up to the end of its last complete sentence (for a reply cut off by max_tokens); None if none ends."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return None
    kept = text[: ends[-1]].strip()
    return kept or None
