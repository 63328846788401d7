"""Tokenizers for the text metrics: sacrebleu's per language for BLEU, language-aware ones for ROUGE.

rouge-score's default tokenizer lowercases and then deletes every character outside [a-z0-9], so Chinese
and Korean text becomes empty and scores 0 even against itself. The ROUGE tokenizers here are objects with
a `tokenize(text) -> list[str]` method, the interface RougeScorer(tokenizer=...) expects.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import cache, lru_cache

from rouge_score.tokenizers import DefaultTokenizer
from sacrebleu.metrics.bleu import BLEU

LANGUAGES = ("zh", "en", "ko")
ROUGE_TOKENIZERS = ("char", "jieba", "whitespace")

# sacrebleu tokenizer per language. Korean would want 'ko-mecab', which needs MeCab and a Korean dictionary
# (not installed here); Korean words are long agglutinated units (stem + particles/endings), so word-level
# n-grams rarely match, and character level is the common fallback.
BLEU_TOKENIZERS: dict[str, str] = {"zh": "zh", "en": "13a", "ko": "char"}

# English always uses rouge-score's own tokenizer with Porter stemming, whatever rouge_tokenizer says
ENGLISH_ROUGE_TOKENIZER = "rouge-score default (lowercase, [a-z0-9] words, Porter stemmer)"

_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, extension A, compatibility
    "\U00020000-\U0003134f"  # CJK extensions B-G
    "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff"  # Hangul jamo and syllables
)
# one token per CJK/Hangul character; any other run of letters/digits is one word; the rest is dropped
_CHAR_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


def bleu_tokenizer_name(language: str) -> str:
    """Language code -> the sacrebleu tokenizer name BLEU uses for it."""
    _check_language(language)
    return BLEU_TOKENIZERS[language]


def bleu_tokens(text: str, language: str) -> list[str]:
    """One text -> the tokens sacrebleu's BLEU counts n-grams over (same preprocessing: rstrip, tokenizer)."""
    return _sacrebleu_tokenizer(bleu_tokenizer_name(language))(text.rstrip()).split()


def rouge_tokenizer(language: str, name: str = "char") -> Tokenizer:
    """Language code and option (char | jieba | whitespace) -> a cached tokenizer for RougeScorer."""
    _check_language(language)
    if name not in ROUGE_TOKENIZERS:
        raise ValueError(f"rouge_tokenizer must be one of {ROUGE_TOKENIZERS}, got {name!r}")
    return _tokenizer("english" if language == "en" else name)


def llamafactory_tokenizer() -> Tokenizer:
    """The LLaMA-Factory ROUGE tokens: jieba.lcut, joined by spaces, split on whitespace (punctuation kept)."""
    return _tokenizer("llamafactory")


def rouge_tokenizer_label(language: str, name: str = "char") -> str:
    """Language code and option -> a description of the ROUGE tokenizer actually used."""
    _check_language(language)
    return ENGLISH_ROUGE_TOKENIZER if language == "en" else name


class Tokenizer:
    """A rouge-score tokenizer with a memo, since each text is tokenized for ROUGE, distinct-n and length."""

    def __init__(self, name: str, split) -> None:
        self.name = name
        self._split = lru_cache(maxsize=2**16)(split)

    def tokenize(self, text: str) -> list[str]:
        """Text -> tokens (a fresh list; callers may not mutate the memo)."""
        return list(self._split(text))


def char_tokens(text: str) -> tuple[str, ...]:
    """Text -> each CJK/Hangul character, each other letter/digit run (casefolded); punctuation dropped."""
    return tuple(_CHAR_TOKEN.findall(text.casefold()))


def jieba_tokens(text: str) -> tuple[str, ...]:
    """Text -> jieba words (casefolded) without whitespace or punctuation-only tokens.

    jieba segments Han text; text outside Han/ASCII runs (Hangul, for one) comes out one character at a time.
    """
    return tuple(w for w in jieba_cut(text.casefold()) if any(c.isalnum() for c in w))


def whitespace_tokens(text: str) -> tuple[str, ...]:
    """Text -> str.split(), nothing else (no case folding, punctuation stays attached)."""
    return tuple(text.split())


def jieba_cut(text: str) -> list[str]:
    """Text -> jieba.lcut(text), with jieba's dictionary loaded once and its log quiet."""
    return _jieba().lcut(text)


_jieba_lock = threading.Lock()
_jieba_module = None


def _jieba():
    global _jieba_module
    with _jieba_lock:
        if _jieba_module is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba_module = jieba
    return _jieba_module


@cache
def _tokenizer(name: str) -> Tokenizer:
    if name == "english":
        default = DefaultTokenizer(use_stemmer=True)
        return Tokenizer(name, lambda text: tuple(default.tokenize(text)))
    if name == "llamafactory":
        return Tokenizer(name, lambda text: tuple(" ".join(jieba_cut(text)).split()))
    split = {"char": char_tokens, "jieba": jieba_tokens, "whitespace": whitespace_tokens}[name]
    return Tokenizer(name, split)


@cache
def _sacrebleu_tokenizer(name: str):
    return BLEU(tokenize=name).tokenizer


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
