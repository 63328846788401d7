"""One cache entry on disk -> the Reply it holds, or the reason it may not be served.

An entry carries its key and the request fields the key is the sha256 of (the request's fingerprint). It is
served only if both say it belongs to the key asked for: a file copied or renamed into the wrong place, or a
cache written by a different key recipe, is refused rather than answering someone else's request. A reply of the
wrong shape (say text that is a number, from a hand edit or another tool) is refused before anything uses it.
"""

from __future__ import annotations

import hashlib
import json

from .scrub import clip
from .types import Reply


class BadEntry(Exception):
    """kind: damaged (unreadable or the wrong shape) | wrong_key (belongs to another request)."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind, self.why = kind, why


def encode_entry(key: str, fields: dict, reply: Reply) -> bytes:
    entry = {"key": key, "request": fields, "reply": {
        "text": reply.text, "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
        "finish_reason": reply.finish_reason}}
    return canonical(entry).encode("utf-8")


def decode_entry(raw: bytes, key: str) -> Reply:
    """The cached Reply of an entry filed under key; BadEntry if it is not one."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError included
        raise BadEntry("damaged", f"is not valid JSON ({err})") from None
    if not isinstance(entry, dict):
        raise BadEntry("damaged", f"holds a JSON {type(entry).__name__}, not an entry object")
    if entry.get("key") != key:
        raise BadEntry("wrong_key", f"is filed under key {key[:12]}... but says it holds key "
                                    f"{clip(str(entry.get('key')), 12)}...")
    if not isinstance(entry.get("request"), dict) or fingerprint(entry["request"]) != key:
        raise BadEntry("wrong_key", "holds a request that does not hash to its key")
    reply = entry.get("reply")
    if not isinstance(reply, dict):
        raise BadEntry("damaged", "has no reply object")
    for name, kind in (("text", str), ("finish_reason", str), ("tokens_in", int), ("tokens_out", int)):
        value = reply.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BadEntry("damaged", f"has reply.{name} = {clip(repr(value), 40)}, "
                                      f"not a{'n integer' if kind is int else ' string'}")
    return Reply(reply["text"], reply["tokens_in"], reply["tokens_out"], reply["finish_reason"], cached=True)


def fingerprint(fields: dict) -> str:
    """The cache key of a request's key fields."""
    return hashlib.sha256(canonical(fields).encode("utf-8")).hexdigest()


def canonical(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
