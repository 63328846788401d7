"""The speaker-prefix grammar shared by every reader whose utterances start `<speaker word>：` (CPsyCounD, CPsyCounE).

A line is one of three things:
- a prefix: blanks, a known speaker word, an optional qualifier (`来访者（姚先生）：`, `来访者1：` — role-plays
  and couples in the real CPsyCounD), blanks, then a colon: ASCII `:`, full-width `：`, small `﹕`, vertical
  `︰` or ratio `∶`. It starts that speaker's utterance. A speaker word alone on its line is an empty one.
- a near miss: it looks like a prefix but does not parse — a speaker word followed by another separator
  (`来访者;`, `来访者 - `, `来访者 你好`), a misspelt or clipped speaker word before a colon (`来访着：`,
  `咨询师：`), or a prefix in the middle of a line after a sentence end (`好的。来访者：…`, a lost line break).
  The reader quarantines it: merging it into the current utterance would put one speaker's words in the
  other's turn (the counselor's turns are the training targets).
- text: anything else continues the current utterance (numbered lists, stage directions, quoted role-play
  lines such as `妈妈：…` whose speaker is no known word).

Lines end at CRLF, CR or LF (a CR-only file is not one long line).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

COLONS = ":：﹕︰∶"
_BLANK = "[ \t\u3000\u00a0]"
_QUALIFIER = r"(?:（[^（）\n]{1,20}）|\([^()\n]{1,20}\)|[0-9０-９]{1,2})"
# Where a lost line break shows: after a sentence end, a closing bracket or a separator Python does not split on.
_SENTENCE_END = "。！？!?…；;）)」』】\u2028\u2029\u0085\u000b\u000c"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines at CRLF, CR or LF; the line numbers of a file are the indexes + 1."""
    return _LINE_BREAK.split(text)


def line_endings(text: str) -> str:
    """'lf' | 'crlf' | 'cr' | 'mixed' | 'none': how the file ends its lines (kept in the dialog's meta)."""
    crlf = text.count("\r\n")
    kinds = {"crlf": crlf, "cr": text.count("\r") - crlf, "lf": text.count("\n") - crlf}
    used = [kind for kind, n in kinds.items() if n]
    return "mixed" if len(used) > 1 else used[0] if used else "none"


@dataclass(frozen=True)
class Line:
    kind: str  # "prefix" | "near_miss" | "text"
    role: str | None = None  # the speaker's role, for a prefix
    text: str = ""  # for a prefix: the line after the colon; for text: the whole line
    why: str = ""  # for a near miss: what looks like a prefix and why it does not parse


class SpeakerGrammar:
    """Classifies lines for one format's speaker words (word -> role)."""

    def __init__(self, roles: dict[str, str]):
        self.roles = dict(roles)
        names = "|".join(re.escape(n) for n in sorted(roles, key=len, reverse=True))
        colon = f"[{re.escape(COLONS)}]"
        self._prefix = re.compile(f"{_BLANK}*(?P<name>{names}){_QUALIFIER}?{_BLANK}*{colon}")
        self._bare = re.compile(f"{_BLANK}*(?P<name>{names}){_QUALIFIER}?{_BLANK}*")
        self._name_then = re.compile(f"{_BLANK}*(?P<name>{names}){_QUALIFIER}?(?P<rest>{_BLANK}*)(?P<next>.?)", re.S)
        self._token_colon = re.compile(f"{_BLANK}*(?P<token>[^\\s{re.escape(COLONS)}]{{1,8}}){_BLANK}*{colon}")
        self._inside = re.compile(f"(?<=[{re.escape(_SENTENCE_END)}]){_BLANK}*(?P<name>{names}){_QUALIFIER}?{_BLANK}*{colon}")
        self.expected = " or ".join(f"{n}：" for n in roles)

    def classify(self, line: str) -> Line:
        match = self._prefix.match(line)
        if match:
            inner = self._inside.search(line, match.end())
            if inner:
                return Line("near_miss", why=self._inside_why(inner))
            return Line("prefix", role=self.roles[match.group("name")], text=line[match.end():])
        bare = self._bare.fullmatch(line)
        if bare:  # a speaker word alone (real CPsyCounD case_1755 ends on `来访者`): an empty utterance, nothing to misplace
            return Line("prefix", role=self.roles[bare.group("name")], text="")
        why = self._near_miss(line)
        return Line("near_miss", why=why) if why else Line("text", text=line)

    def _near_miss(self, line: str) -> str:
        named = self._name_then.match(line)
        if named:
            nxt = named.group("next")
            if nxt and (named.group("rest") or _is_separator(nxt)):
                return f"{line[:named.end()].strip()!r}: speaker word followed by {nxt!r}, not a colon ({COLONS})"
        token = self._token_colon.match(line)
        if token and token.group("token") not in self.roles and any(_looks_like(token.group("token"), n) for n in self.roles):
            return f"{token.group(0).strip()!r}: not a known speaker word ({self.expected})"
        inner = self._inside.search(line)
        if inner:
            return self._inside_why(inner)
        return ""

    def _inside_why(self, inner: re.Match) -> str:
        return f"speaker prefix {inner.group(0).strip()!r} in the middle of a line (at character {inner.start() + 1}; a lost line break?)"


def _is_separator(char: str) -> bool:
    """Punctuation or a symbol that could stand where the colon belongs (not an opening bracket or quote)."""
    category = unicodedata.category(char)
    return category[0] in "PS" and category not in ("Ps", "Pi", "Pf")


def _looks_like(token: str, name: str) -> bool:
    """A misspelt (one edit) or clipped/doubled speaker word: 来访着, 来访, 咨询师, 来访者们, 来访者来访者."""
    if token.startswith(name) or (len(token) >= 2 and token in name):
        return True
    return _one_edit_apart(token, name)


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    i = next((k for k, (x, y) in enumerate(zip(short, long)) if x != y), len(short))
    return short[i:] == long[i + 1:]
