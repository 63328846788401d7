"""Secrets out of server text, before it is cut short and stored (failure details, quarantine rows, logs, cache).

Scrubbing has to come first: a key that straddles a cut loses its tail, and the prefix left no longer matches the
key, so a scrub after the cut lets it through. `clip` is the one way to shorten server text for storage.

Two kinds of secret are replaced by `***`: values the process registered (the API key, by the OpenAI client
when it is made; matched in full) and anything shaped like a credential whoever it belongs to (`sk-...` keys,
Google `AIza...` keys, `Bearer <token>`).
"""

from __future__ import annotations

import re

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter "secrets" would mask ordinary words
KEY_SHAPED = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{16,}"            # OpenAI / Anthropic / most OpenAI-compatible proxies
    r"|\bAIza[0-9A-Za-z_\-]{35}"            # Google API keys
    r"|(?<=\bBearer )[A-Za-z0-9._~+/\-]{8,}=*",  # an echoed Authorization header
    re.IGNORECASE)

_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Scrub this value from all server text this process stores from now on (the API key in use)."""
    value = value.strip()
    if len(value) >= MIN_SECRET_CHARS:
        _registered.add(value)


def scrub(text: str) -> str:
    for secret in sorted(_registered, key=len, reverse=True):  # longest first: a key that contains another
        text = text.replace(secret, MASK)
    return KEY_SHAPED.sub(MASK, text)


def clip(text: str, limit: int, *, keep: str = "start") -> str:
    """text scrubbed, then cut to its first (keep="start") or last (keep="end") `limit` characters."""
    text = scrub(text)
    if len(text) <= limit:
        return text
    return text[:limit] if keep == "start" else text[-limit:]
