"""Privacy guard: replace personal identifiers with placeholders before text leaves the machine.

Deliberately simple and conservative, not a full PII detector. It catches:
  * names the caller lists (e.g. the client names of a dataset), and names a speaker gives in "我叫X",
    "我的名字是X", "my name is X", "call me X" (X: 2-3 Han characters, or 1-2 capitalized words);
  * e-mail addresses;
  * Chinese resident ID numbers (17 digits + a check character that must verify);
  * bank card numbers (13-19 digits, plain or in groups of four, that pass the Luhn check);
  * phone numbers: Chinese mobiles 1[3-9]xxxxxxxxx, landlines 0xx(x)-xxxxxxx(x), +86 and other +<country>
    numbers, US (xxx) xxx-xxxx / xxx-xxx-xxxx;
  * street addresses: Chinese [省][市][区/县]…路/街/道/巷/弄 + number 号 (+ building/room), English
    "<number> <Capitalized words> Street/Ave/Rd/...".
Checks run in that order, and the placeholders hold no digits, so one identifier is never counted twice. A year,
a price, a date, a time or a short number never matches: every numeric pattern needs 7+ digits in a phone
layout, or a valid check digit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from .types import ChatRequest

HAN = "\u4e00-\u9fff"
# Words that often precede a place or follow a name in running text; never taken as part of either.
_NOT_PLACE = "在住是从到去于的了和与我你他她们家"
_NOT_NAME = "今是的在和"
_NOT_SURNAME = "不也都就还"  # "我叫不出…", "叫我也…": a verb phrase, not a name
_PLACE_CHAR = f"(?:(?![{_NOT_PLACE}])[{HAN}])"
_ZH_NUMBER = "[0-9０-９一二三四五六七八九十百零]+"

_NAME_PATTERNS = [
    re.compile(rf"(?:我叫|我的名字是|我的名字叫|名字叫|叫我)\s*(?P<id>(?![{_NOT_SURNAME}])[{HAN}](?:(?![{_NOT_NAME}])[{HAN}]){{1,2}})"),
    re.compile(r"(?i:\b(?:my name is|my name's|call me|i am called)\s+)(?P<id>[A-Z][a-z]+(?: [A-Z][a-z]+)?)"),
]
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_BANK_CARD = re.compile(r"(?<![0-9])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,4})?)(?![0-9])")
_PHONES = [
    re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"),           # CN mobile
    re.compile(r"(?<![0-9])(?:\+86[ -]?[1-9][0-9]{1,2}|\(?0[1-9][0-9]{1,2}\)?)[ -]?[0-9]{7,8}(?![0-9])"),  # CN landline
    re.compile(r"(?<![0-9\w])\+[1-9][0-9]{0,2}(?:[ -]?[0-9]){6,13}(?![0-9])"),                # +<country> ...
    re.compile(r"(?<![0-9])(?:\([0-9]{3}\) ?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?![0-9])"),   # US
]
_ADDRESSES = [
    re.compile(rf"(?:{_PLACE_CHAR}{{2,3}}(?:省|自治区))?(?:{_PLACE_CHAR}{{2,3}}市)?(?:{_PLACE_CHAR}{{1,4}}(?:区|县))?"
               rf"{_PLACE_CHAR}{{1,8}}(?:路|街|大道|道|巷|弄){_ZH_NUMBER}号"
               rf"(?:{_ZH_NUMBER}(?:号楼|栋|幢|座|单元|层|楼|室))*"),
    re.compile(r"\b[0-9]{1,5} (?:[A-Z][a-z]+ ){1,3}"
               r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl)\b\.?"
               r"(?:,? (?:Apt|Apartment|Suite|Unit) ?#?[0-9A-Za-z]+)?"),
]

PLACEHOLDERS = {"name": "[NAME]", "email": "[EMAIL]", "id_number": "[ID]", "bank_card": "[BANK_CARD]",
                "phone": "[PHONE]", "address": "[ADDRESS]"}


@dataclass(frozen=True)
class Redactor:
    names: tuple[str, ...] = ()   # names known to the caller, redacted wherever they occur

    def redact(self, text: str) -> tuple[str, Counter]:
        """text -> (text with identifiers replaced by placeholders, count per kind)."""
        counts: Counter = Counter()
        for kind, pattern, valid in self._checks():
            text = _substitute(text, kind, pattern, valid, counts)
        return text, counts

    def redact_request(self, request: ChatRequest) -> tuple[ChatRequest, Counter]:
        counts: Counter = Counter()
        messages = []
        for role, content in request.messages:
            clean, found = self.redact(content)
            messages.append((role, clean))
            counts += found
        return replace(request, messages=tuple(messages)), counts

    def _checks(self) -> Iterable[tuple[str, re.Pattern, Callable[[str], bool]]]:
        if self.names:  # longest first: "王小明" before "王小"
            listed = "|".join(re.escape(n) for n in sorted(set(self.names), key=len, reverse=True) if n)
            yield "name", re.compile(rf"(?P<id>{listed})"), _always
        for pattern in _NAME_PATTERNS:
            yield "name", pattern, _always
        yield "email", _EMAIL, _always
        yield "id_number", _CN_ID, _valid_cn_id
        yield "bank_card", _BANK_CARD, _valid_card
        for pattern in _PHONES:
            yield "phone", pattern, _always
        for pattern in _ADDRESSES:
            yield "address", pattern, _always


def _substitute(text: str, kind: str, pattern: re.Pattern, valid: Callable[[str], bool], counts: Counter) -> str:
    def swap(match: re.Match) -> str:
        group = "id" if "id" in pattern.groupindex else 0
        if not valid(match.group(group)):
            return match.group(0)
        counts[kind] += 1
        start, end = match.span(group)
        whole = match.group(0)
        offset = match.start()
        return whole[: start - offset] + PLACEHOLDERS[kind] + whole[end - offset:]

    return pattern.sub(swap, text)


def _always(_: str) -> bool:
    return True


def _valid_cn_id(number: str) -> bool:
    """GB 11643: the 18th character is the ISO 7064 MOD 11-2 check of the first 17 digits."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(number[:17], weights))
    return "10X98765432"[total % 11] == number[17].upper()


def _valid_card(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):  # Luhn: double every second digit from the right
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
