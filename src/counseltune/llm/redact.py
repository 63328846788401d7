"""Privacy guard: replace personal identifiers with placeholders before text leaves the machine.

Conservative, offline, and fast enough to run on every remote request; not a full NER. It catches:
  * names the caller lists (e.g. the client names of a dataset), wherever they occur;
  * Chinese personal names: after 我叫/我的名字是/叫我 (compound surnames such as 欧阳 included), and any name
    jieba's tagger marks as a person (nr) that starts with a known surname, or that follows a kinship or role word
    (我妈妈王秀英, 朋友赵敏, 我是李娜) or precedes a title (陈晓红女士); a surname with a title alone (李老师) is kept;
  * English names after "my name is / call me" and, unless a stop word follows, "I'm / I am / this is", one or two
    tokens, any case; a capitalized name after Mr/Mrs/Ms/Dr;
  * Korean names after (제) 이름은 … / 저는 …입니다|이에요|이라고 and before 씨, if they start with a Korean surname
    and are no common word (저는 주부입니다);
  * e-mail addresses;
  * Chinese resident ID numbers (17 digits + a check character that must verify);
  * Korean resident registration numbers (YYMMDD-GNNNNNN with a real date; without the dash the check digit must
    verify too: numbers issued since October 2020 have none, but their dash makes them unambiguous);
  * bank card numbers (13-19 digits, plain or in groups of four, that pass the Luhn check);
  * phone numbers: Chinese mobiles and landlines, +86, Korean mobiles (010-…, +82 10 …) and landlines (02-…, 031-…),
    other +<country> numbers, US (xxx) xxx-xxxx / xxx-xxx-xxxx;
  * street addresses: Chinese [省][市][区/县]…路/街/道/巷/弄 + number 号 (+ building/room), English
    "<number> <Capitalized words> Street/Ave/Rd/...".
Matching runs on a length-preserving NFKC form of the text (full-width １３８… reads as 138…), and the original span
is replaced, so nothing else in the text changes. Where two findings overlap, one of the same kind merge and of
two kinds the longer wins (an e-mail is never also a name), so one identifier is counted once. A year, a price, a date, a time or a short number never matches: every
numeric pattern needs 7+ digits in a phone layout, a real date, or a valid check digit.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from .redact_words import (
    EN_NOT_NAMES,
    KO_COMPOUND_SURNAMES,
    KO_NOT_NAMES,
    KO_SURNAMES,
    ZH_BEFORE_NAME,
    ZH_INTRO_WORDS,
    ZH_COMPOUND_SURNAMES,
    ZH_NOT_NAMES,
    ZH_SURNAMES,
    ZH_TITLES,
)
from .types import ChatRequest

Span = tuple[int, int]
Finder = Callable[[str], Iterable[Span]]

HAN = "\u4e00-\u9fff"
HANGUL = "\uac00-\ud7a3"
# Words that often precede a place or follow a name in running text; never taken as part of either.
_NOT_PLACE = "在住是从到去于的了和与我你他她们家"
_NOT_NAME = "今是的在和"
_NOT_SURNAME = "不也都就还"  # "我叫不出…", "叫我也…": a verb phrase, not a name
_PLACE_CHAR = f"(?:(?![{_NOT_PLACE}])[{HAN}])"
_ZH_NUMBER = "[0-9一二三四五六七八九十百零]+"
_ZH_GIVEN = f"(?:(?![{_NOT_NAME}])[{HAN}])"
_ZH_NAME = (f"(?:{'|'.join(ZH_COMPOUND_SURNAMES)}){_ZH_GIVEN}{{1,2}}"
            f"|(?![{_NOT_SURNAME}])[{HAN}]{_ZH_GIVEN}{{1,2}}")
_KO_NAME = (f"(?:{'|'.join(KO_COMPOUND_SURNAMES)})[{HANGUL}]{{1,2}}"
            f"|[{''.join(sorted(KO_SURNAMES))}][{HANGUL}]{{1,2}}")
_EN_TOKEN = r"[A-Za-z]+(?:-[A-Za-z]+)*"

_ZH_INTRO = re.compile(rf"(?:我叫|我的名字是|我的名字叫|名字叫|叫我|姓名是|姓名[:：]\s*)\s*(?P<id>{_ZH_NAME})")
_KO_INTROS = [
    re.compile(rf"이름은\s*(?P<id>{_KO_NAME})(?=입니다|이에요|예요|이야|야|이고|고|이라고|라고|이며|며|\s*[.,!?]|\s*$)"),
    re.compile(rf"(?:저는|전|나는|난)\s+(?P<id>{_KO_NAME})(?=입니다|이에요|예요|이라고|라고|이고|이야|야)"),
    re.compile(rf"(?<![{HANGUL}])(?P<id>(?:{'|'.join(KO_COMPOUND_SURNAMES)})[{HANGUL}]{{1,2}}"
               rf"|[{''.join(sorted(KO_SURNAMES))}][{HANGUL}]{{2}})\s?씨(?=[는가를의도에께와랑]|\s|$|[.,!?])"),
]
_EN_STRONG = re.compile(rf"(?i:\b(?:my name is|my name's|my name’s|call me|calls me|i am called|i'm called)\s+)"
                        rf"(?P<id>{_EN_TOKEN}(?:\s+{_EN_TOKEN})?)")
_EN_WEAK = re.compile(rf"(?i:\b(?:i'm|i’m|i am|im|this is)\s+)(?P<id>{_EN_TOKEN}(?:\s+{_EN_TOKEN})?)")
_EN_TITLED = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+(?P<id>[A-Z][a-z]+(?:[ -][A-Z][a-z]+)?)")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_KR_RRN = re.compile(r"(?<![0-9])[0-9]{6}-?[1-8][0-9]{6}(?![0-9])")
_BANK_CARD = re.compile(r"(?<![0-9])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,4})?)(?![0-9])")
_PHONES = [
    re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"),           # CN mobile
    re.compile(r"(?<![0-9])(?:\+86[ -]?[1-9][0-9]{1,2}|\(?0[1-9][0-9]{1,2}\)?)[ -]?[0-9]{7,8}(?![0-9])"),  # CN landline
    re.compile(r"(?<![0-9])(?:\+82[ -]?(?:\(0\)[ -]?)?|0)1[016789][ .-]?[0-9]{3,4}[ .-]?[0-9]{4}(?![0-9])"),  # KR mobile
    re.compile(r"(?<![0-9])(?:\+82[ -]?|0)(?:2|[3-6][1-5])[ )-][0-9]{3,4}[ -][0-9]{4}(?![0-9])"),  # KR landline
    re.compile(r"(?<![0-9\w])\+[1-9][0-9]{0,2}(?:[ -]?(?:\(0\)[ -]?)?[0-9]){6,13}(?![0-9])"),  # +<country> ...
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
        if not text:
            return text, Counter()
        clean, counts = _redact(self.names, text)
        return clean, Counter(counts)  # a copy: the cached one stays as it is

    def redact_request(self, request: ChatRequest) -> tuple[ChatRequest, Counter]:
        counts: Counter = Counter()
        messages = []
        for role, content in request.messages:
            clean, found = self.redact(content)
            messages.append((role, clean))
            counts += found
        return replace(request, messages=tuple(messages)), counts


# A conversation is sent again with every new turn: earlier messages are looked up, not tagged again.
@functools.lru_cache(maxsize=4096)
def _redact(names: tuple[str, ...], text: str) -> tuple[str, Counter]:
    matched = text.translate(_nfkc_table())
    chosen: list[tuple[int, int, str]] = []
    for kind, finder in _finders(names):
        for start, end in finder(matched):
            _choose(chosen, start, end, kind)
    counts: Counter = Counter()
    parts, last = [], 0
    for start, end, kind in sorted(chosen):
        parts += [text[last:start], PLACEHOLDERS[kind]]
        counts[kind] += 1
        last = end
    parts.append(text[last:])
    return "".join(parts), counts


def _choose(chosen: list[tuple[int, int, str]], start: int, end: int, kind: str) -> None:
    """Add a span: spans of one kind merge; of two kinds that overlap, the longer wins (the earlier on a tie), so
    "call me sarah.connor@example.org" loses the whole e-mail, not just "sarah"."""
    overlapping = [c for c in chosen if c[0] < end and start < c[1]]
    if any(k != kind and c_end - c_start >= end - start for c_start, c_end, k in overlapping):
        return
    for c in overlapping:
        chosen.remove(c)
        if c[2] == kind:
            start, end = min(start, c[0]), max(end, c[1])
    chosen.append((start, end, kind))


def _finders(names: tuple[str, ...]) -> Iterator[tuple[str, Finder]]:
    """The checks, most certain first: on a tie between overlapping spans of two kinds, the earlier one wins."""
    if names:
        yield "name", _listed_names(names)
    yield "email", _groups(_EMAIL)
    yield "id_number", _groups(_CN_ID, _valid_cn_id)
    yield "id_number", _groups(_KR_RRN, _valid_kr_rrn)
    yield "bank_card", _groups(_BANK_CARD, _valid_card)
    for pattern in _PHONES:
        yield "phone", _groups(pattern)
    yield "name", _zh_introduced_names
    for pattern in _KO_INTROS:
        yield "name", _groups(pattern, _plausible_ko_name)
    yield "name", _english_names(_EN_STRONG, strong=True)
    yield "name", _english_names(_EN_WEAK, strong=False)
    yield "name", _groups(_EN_TITLED)
    for pattern in _ADDRESSES:
        yield "address", _groups(pattern)
    yield "name", _chinese_names  # last and slowest: jieba's guesses


@functools.lru_cache(maxsize=64)
def _listed_names(names: tuple[str, ...]) -> Finder:
    listed = "|".join(re.escape(n.translate(_nfkc_table()))  # longest first: "王小明" before "王小"
                      for n in sorted(set(names), key=len, reverse=True) if n)
    return _groups(re.compile(listed)) if listed else lambda _: ()


def _groups(pattern: re.Pattern, valid: Callable[[str], bool] = lambda _: True) -> Finder:
    group = "id" if "id" in pattern.groupindex else 0

    def find(text: str) -> Iterator[Span]:
        for match in pattern.finditer(text):
            if valid(match.group(group)):
                yield match.span(group)

    return find


def _english_names(pattern: re.Pattern, strong: bool) -> Finder:
    """One or two name tokens after an introduction; stop at the first word that describes rather than names."""
    def find(text: str) -> Iterator[Span]:
        for match in pattern.finditer(text):
            tokens = list(re.finditer(_EN_TOKEN, match.group("id")))
            first = tokens[0].group()
            if not _looks_like_name(first):
                continue
            # "I'm more anxious", "I'm around friends": a lower-case word that goes on is no name ("i'm sarah, 24")
            if not strong and first.islower() and not _CLAUSE_END.match(text, match.start("id") + tokens[0].end()):
                continue
            end = tokens[0].end()
            if len(tokens) == 2:
                first, second = tokens[0].group(), tokens[1].group()
                same_case = second[0].isupper() or (strong and first.islower())
                if same_case and _looks_like_name(second):
                    end = tokens[1].end()
            yield match.start("id"), match.start("id") + end

    return find


def _looks_like_name(word: str) -> bool:
    low = word.lower()
    if len(low) < 2 or any(part in EN_NOT_NAMES for part in low.split("-")):  # "Chinese-American"
        return False
    # "I'm struggling", "I'm exhausted", "this is doable": participles and adjectives; names ending so (Ming, Jared,
    # Mable) are short or capitalized.
    return not (len(low) >= 6 and low.endswith("ing")) and not (word.islower() and _ADJECTIVE_ENDING.search(low))


_ADJECTIVE_ENDING = re.compile(r"(?:.{4}ed|able|ible|ful|ous|ive|less|ish|ical)$")
_CLAUSE_END = re.compile(r"\s*(?:[,.;:!?)]|$|(?:and|but|from|here|btw|speaking)\b)")


def _zh_introduced_names(text: str) -> Iterator[Span]:
    """我叫X, 我的名字是X, 叫我X: X a surname and a given name along jieba's word boundaries.

    叫 also means "order, tell": 我叫外卖了, 叫我回家 have no surname; 我叫车去机场 ends inside a word (机场) and
    its "given name" holds a verb (去); 我叫王者 is one frequent word.
    """
    for match in _ZH_INTRO.finditer(text):
        tokens = _tagged(text)
        first, last = match.span("id")
        if first not in {start for start, _, _ in tokens}:  # the "name" would start inside a word
            continue
        inside = [(start, word, flag) for start, word, flag in tokens if first <= start and start + len(word) <= last]
        while inside and not _plausible_zh_name(text[first:inside[-1][0] + len(inside[-1][1])]):
            inside.pop()
        # A given name's characters come tagged as morphemes (婉/dg) or content words, not as function words (去/v).
        if not inside or any(flag[:1] in _FUNCTION_TAGS and not flag.endswith("g") for _, _, flag in inside[1:]):
            continue
        name = text[first:inside[-1][0] + len(inside[-1][1])]
        if len(inside) == 1 and not inside[0][2].startswith("nr") and _word_freq(name) >= 100:
            continue
        yield first, first + len(name)


_FUNCTION_TAGS = frozenset("vpdcuryqmf")  # verb, preposition, adverb, conjunction, particle, pronoun, …


@functools.lru_cache(maxsize=64)
def _tagged(text: str) -> tuple[tuple[int, str, str], ...]:
    """jieba's (start, word, part of speech) for each word of text."""
    tokens, pos = [], 0
    for word, flag in _posseg().lcut(text):
        tokens.append((pos, word, flag))
        pos += len(word)
    return tuple(tokens)


def _chinese_names(text: str) -> Iterator[Span]:
    """Person names by jieba's part-of-speech tagger, kept only where they start with a Chinese surname."""
    if not re.search(f"[{HAN}]", text):
        return
    tokens = _tagged(text)
    for i, (start, word, flag) in enumerate(tokens):
        surname = _surname(word)
        if not surname:
            continue
        name, flags, j = word, {flag}, i + 1
        # "王|秀英", "诸葛|建华", "李子|轩": jieba splits some names in two.
        while j < len(tokens) and len(name) < len(surname) + 2 and _is_han(tokens[j][1]) \
                and len(name) + len(tokens[j][1]) <= len(surname) + 2 \
                and (len(name) == len(surname) and tokens[j][2] in _NAMEISH or tokens[j][2].startswith("nr")
                     or text.startswith(ZH_TITLES, tokens[j][0] + len(tokens[j][1]))):  # "欧阳修|远|先生"
            name += tokens[j][1]
            flags.add(tokens[j][2])
            j += 1
        title = next((t for t in ZH_TITLES if name.endswith(t)), "")
        name = name[: len(name) - len(title)]
        if not _plausible_zh_name(name):
            continue
        end = start + len(name)
        before = text[max(0, start - 4):start]
        # Someone's: 我妈妈王秀英, 陈晓红女士. An introduction (我是…) is weaker: 我是白羊座 is no name.
        related = before.endswith(ZH_BEFORE_NAME) or bool(title) or text.startswith(ZH_TITLES, end)
        introduced = before.endswith(ZH_INTRO_WORDS)
        tagged = any(f.startswith("nr") for f in flags)
        common = _word_freq(name) >= 100  # a dictionary word (明白, 沙龙) more often than a name
        # 文科生, 白羊座, 王者…: surname + given that opens with a word jieba knows; real names hardly ever do.
        word_like = len(surname) == 1 and len(name) == 3 and _word_freq(name[:2]) >= 50
        if word_like and not related:
            continue
        if (tagged and (related or introduced or not common)) or (related and not _word_freq(name) and len(name) <= 3):
            yield start, end


def _plausible_ko_name(name: str) -> bool:
    """저는 주부입니다, 저는 공대생이에요: a word for what one is, not who."""
    return name not in KO_NOT_NAMES and not name.endswith(("생", "님"))


def _plausible_zh_name(name: str) -> bool:
    """Surname + a 1-2 character given name that is no pronoun, particle, numeral or frequent word."""
    surname = _surname(name)
    return bool(surname) and 1 <= len(name) - len(surname) <= 2 and _plausible_given(name[len(surname):]) \
        and name not in ZH_NOT_NAMES and not _starts_with_common_word(name, surname)


_NAMEISH = ("nr", "nrt", "nrfg", "nz", "ns")
_NOT_GIVEN = "您你我他她它们的地得了是在和有就都也很吗呢吧啊"
_NUMERALS = "一二三四五六七八九十百千零两"


def _surname(word: str) -> str:
    for compound in ZH_COMPOUND_SURNAMES:
        if word.startswith(compound):
            return compound
    return word[0] if word[:1] in ZH_SURNAMES else ""


def _plausible_given(given: str) -> bool:
    """A given name of Han characters, none a pronoun or particle (谢谢您, 祝您, 支持的) and not a numeral (高二)."""
    return _is_han(given) and not re.search(f"[{_NOT_GIVEN}]", given) and not re.fullmatch(f"[{_NUMERALS}]+", given)


def _starts_with_common_word(name: str, surname: str) -> bool:
    """谢谢曹(博士), 满足感, 高层次: the name would begin with a frequent dictionary word (jieba's counts)."""
    return any(_word_freq(name[:k]) >= 1000 for k in range(max(2, len(surname) + 1), len(name)))


def _is_han(word: str) -> bool:
    return bool(re.fullmatch(f"[{HAN}]+", word))


@functools.cache
def _posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg.dt


def _word_freq(word: str) -> int:
    return _posseg().tokenizer.FREQ.get(word) or 0


@functools.cache
def _nfkc_table() -> dict[int, str]:
    """Characters whose NFKC form is one other character (full-width ０-９, Ａ-Ｚ, ＠, －, ideographic space …)."""
    table = {}
    for code in [*range(0xA0, 0x2500), *range(0x3000, 0x3400), *range(0xF900, 0x10000), *range(0x1D400, 0x1D800)]:
        char = chr(code)
        folded = unicodedata.normalize("NFKC", char)
        if len(folded) == 1 and folded != char:
            table[code] = folded
    return table


def _valid_cn_id(number: str) -> bool:
    """GB 11643: the 18th character is the ISO 7064 MOD 11-2 check of the first 17 digits."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(number[:17], weights))
    return "10X98765432"[total % 11] == number[17].upper()


def _valid_kr_rrn(number: str) -> bool:
    """YYMMDD-GNNNNNN: a real birth date (G gives the century); without the dash, also the check digit."""
    digits = number.replace("-", "")
    century = 1900 if digits[6] in "1256" else 2000
    try:
        datetime.date(century + int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return False
    if "-" in number:
        return True
    check = sum(int(d) * w for d, w in zip(digits, [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]))
    return (11 - check % 11) % 10 == int(digits[12])


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
