"""Secrets are scrubbed from server text before it is cut short and stored: no key prefix survives a cut."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import counseltune
from counseltune.llm import Failure, make_client
from counseltune.llm.remote import DETAIL_CHARS
from counseltune.llm.scrub import MASK, clip, register_secret, scrub
from counseltune.synthesize import records
from counseltune.synthesize.generate import Settings, generate, make_generator
from counseltune.synthesize.seeds import Seed
from tests.synthesize.helpers import ScriptedClient

from .conftest import SECRET, remote_config, user_requests

# A key the process registered (not key-shaped: only the registration can catch it) and one that is only shaped
# like a key (nobody registered it: the pattern must catch it).
REGISTERED = "tok_4f1d9c2b7a6e5f3c0d8b"
KEY_SHAPED = "sk-proj-Zq81vLx0PwRt5YmN2c7Kd4"


def leaked(secret: str, text: str, shortest: int = 6) -> bool:
    """Whether any piece of secret of `shortest` characters or more is in text (a cut leaves a prefix or a suffix)."""
    return any(secret[i:i + shortest] in text for i in range(len(secret) - shortest + 1))


@pytest.mark.parametrize("secret", [REGISTERED, KEY_SHAPED, f"Bearer {REGISTERED}"])
@pytest.mark.parametrize("cut", [3, 10, 20])
def test_clip_scrubs_before_it_cuts_wherever_the_cut_lands(secret, cut):
    register_secret(REGISTERED)
    text = "." * 100 + secret + " and more text after it"
    start, end = clip(text, 100 + cut), clip(text, len(text) - 100 - cut, keep="end")
    for kept in (start, end):
        assert not leaked(REGISTERED if REGISTERED in secret else secret, kept), kept
    assert len(start) <= 100 + cut and start.startswith("." * 100)


def test_scrub_keeps_ordinary_text():
    text = "I felt at risk-free-of-judgement-today, ask-me-anything, 'sk-' alone, and a Bearer of bad news."
    assert scrub(text) == text
    assert scrub(f"key {KEY_SHAPED}.") == f"key {MASK}."


@pytest.mark.parametrize("echo_at", [DETAIL_CHARS - 20, DETAIL_CHARS - 10, DETAIL_CHARS - 3])
def test_an_error_body_echoing_the_key_at_the_cut_keeps_no_part_of_it(echo_at, fake_server, api_key, tmp_path,
                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    server = fake_server(default="echo_key", echo_at=echo_at)
    client = make_client(remote_config(server, tmp_path, max_retries=1))
    [result] = client.complete(user_requests(1))

    assert isinstance(result, Failure) and result.reason == "http_5xx"
    assert "Incorrect API key provided" in result.detail and MASK in result.detail
    for text in (result.detail, caplog.text):
        assert not leaked(SECRET, text), text


def test_synthesis_quarantine_keeps_no_part_of_a_key_in_a_reply():
    register_secret(REGISTERED)
    # A reply with no speaker line fails the session, quoting the reply's start (200 characters): the key sits at
    # the cut.
    client = ScriptedClient(text=lambda request: "." * 190 + f" {REGISTERED} then {KEY_SHAPED}")
    seed = Seed("toy:train-1", "zh", "工作压力", ("我最近工作压力很大。",), None, "我最近工作压力很大。")
    [session] = generate(make_generator("mi_plain", Settings(language="zh"), None), [seed], client, 1).sessions
    assert session.failure[0] == "unparseable_transcript"
    row = records.quarantine_row(session, *session.failure)
    for secret in (REGISTERED, KEY_SHAPED):
        assert not leaked(secret, row["detail"]) and not leaked(secret, row["raw"]), row


SERVER_TEXT_PACKAGES = ("llm", "synthesize", "fidelity")  # where replies, error bodies and their details live
# A slice with a fixed bound of something holding text: `reply.text[:200]`, `body[-80:]`, `message[:LIMIT]`.
CUT = re.compile(r"\b(text|body|message|detail|content|raw|line)\)?\[\s*-?\s*(\d+|[A-Z_]+)?\s*:\s*(\d+|[A-Z_]+)?\s*\]")


def test_server_text_is_cut_only_by_clip():
    src = Path(counseltune.__file__).parent
    cuts = [f"{path.relative_to(src)}:{n}: {line.strip()}"
            for package in SERVER_TEXT_PACKAGES for path in sorted((src / package).rglob("*.py"))
            if path.name != "scrub.py"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if CUT.search(line)]
    assert cuts == [], "cut server text with counseltune.llm.scrub.clip (it scrubs secrets first):\n" + "\n".join(cuts)
