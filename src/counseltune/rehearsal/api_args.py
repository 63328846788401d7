"""`counseltune rehearsal-api`'s arguments (argparse only: the server and its answers load when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

SUMMARY = "serve a loopback OpenAI-compatible stand-in for the study's API (the rehearsal's GPT-4)"
DETAILS = ("Answers POST /v1/chat/completions in the shape each request asks for, as a pure function of the request "
           "body: a schema-valid JSON instance for response_format json_schema, a JSON object for json_object, a whole "
           "MI dialog for synthesis' mi_plain prompt, one utterance for the simulated client (which now and then ends "
           "the session) and the turn-level synthesis prompts. GET /health and GET /v1/models too. Each reply carries "
           "usage (a GPT-4-like token estimate) and echoes the requested model. Binds 127.0.0.1 only, accepts any API "
           "key, serves until SIGTERM or Ctrl-C. Not a model: its dialogs are drawn from a bank of sentences, for "
           "rehearsing the pipeline, never for data.")


def add_rehearsal_api_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)")
    p.add_argument("--log", type=Path, default=None,
                   help="append one JSON line per chat-completions request (time, model, kind, prompt_hash, status, "
                        "tokens): how a rehearsal proves an unchanged re-run sends no request")
    p.add_argument("--ready-file", type=Path, default=None,
                   help="once listening, write the base URL (http://127.0.0.1:<port>/v1) to this file")
    p.add_argument("--fail-every", type=int, default=0, metavar="N",
                   help="answer every N-th chat-completions request with --fail-status instead (default 0: never), "
                        "to show that the client's retries are counted and priced")
    p.add_argument("--fail-status", type=int, default=429, choices=[429, 500, 503],
                   help="the injected failure's HTTP status (default 429, with Retry-After: 0)")
    return p
