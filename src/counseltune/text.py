"""Explicit text normalization: line endings, control characters, width, whitespace.

The raw text is kept beside the normalized one (turns.text_raw), so normalization never loses data.
"""

from __future__ import annotations

import re
import unicodedata

WIDTH_MODES = ("alnum", "all", "none")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_HAS_FULLWIDTH_ALNUM = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_HAS_FULLWIDTH = re.compile(r"[\uff01-\uff5e]")
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for c in range(r[0], r[1] + 1)}
_FULLWIDTH_ALL = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}


def normalize_text(raw: str, width: str = "alnum") -> str:
    """Return `raw` normalized; '' when nothing but whitespace/control characters remains.

    width: 'alnum' turns full-width letters and digits into ASCII but keeps CJK punctuation
    (，。：？ carry meaning for Chinese tokenizers and BLEU 'zh'); 'all' maps the whole full-width
    ASCII block; 'none' leaves width alone.
    """
    if width not in WIDTH_MODES:
        raise ValueError(f"width must be one of {WIDTH_MODES}, got {width!r}")
    text = unicodedata.normalize("NFC", raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    # str.translate with a dict is slow on CJK text; most utterances have nothing to translate
    if width == "alnum" and _HAS_FULLWIDTH_ALNUM.search(text):
        text = text.translate(_FULLWIDTH_ALNUM)
    elif width == "all" and _HAS_FULLWIDTH.search(text):
        text = text.translate(_FULLWIDTH_ALL)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)
