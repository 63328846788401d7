"""The rehearsal's study API: a loopback OpenAI-compatible server that answers every request in the shape it asks for.

    counseltune rehearsal-api --port 0 --log api.jsonl --ready-file api.url

Speaks the chat-completions wire format the project's remote client uses (llm/remote.py): POST
/v1/chat/completions, GET /v1/models, GET /health. What it answers is answers.py's business (a pure function of
the body); this module is the HTTP side: the request log (one JSON line per chat-completions request, so a
rehearsal can show that an unchanged re-run sends none), injected faults (every N-th request fails, so retries
show in the accounting) and the serve-until-SIGTERM command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from counseltune.errors import CounseltuneError

from .answers import answer, body_hash, prompt_tokens
from .schema_instance import UnsupportedSchema

HOST = "127.0.0.1"
SERVED_AS = "rehearsal"   # the /v1/models entry before any model was asked for


class RehearsalAPIError(CounseltuneError, RuntimeError):
    """The rehearsal API cannot start (port taken, say)."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class RehearsalAPI(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the client opens `concurrency` connections at once

    def __init__(self, port: int = 0, log_path: Path | None = None, fail_every: int = 0,
                 fail_status: int = 429) -> None:
        if fail_every < 0:
            raise RehearsalAPIError(f"--fail-every must be >= 0, got {fail_every}")
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as err:
            raise RehearsalAPIError(f"cannot listen on {HOST}:{port}: {err.strerror}; pick another --port "
                                    f"(or --port 0 for any free one)") from None
        self.log_path, self.fail_every, self.fail_status = log_path, fail_every, fail_status
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.posts = 0                               # chat-completions requests received
        self.models: list[str] = []                  # models asked for, in order of first request

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/v1"

    def next_fault(self) -> int | None:
        with self._lock:
            self.posts += 1
            return self.fail_status if self.fail_every and self.posts % self.fail_every == 0 else None

    def saw_model(self, model: str) -> None:
        with self._lock:
            if model not in self.models:
                self.models.append(model)

    def record(self, entry: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}, ensure_ascii=False)
        with self._lock, self.log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


class _Handler(BaseHTTPRequestHandler):
    server: RehearsalAPI
    protocol_version = "HTTP/1.1"    # keep-alive, as real endpoints: the client reuses its connections
    disable_nagle_algorithm = True   # else the body waits for the client's delayed ACK: ~40 ms a reply

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet; the request log is the record
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            names = self.server.models or [SERVED_AS]
            self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "counseltune-rehearsal"}
                                                        for n in names]})
        else:
            self._error(_BadRequest(404, f"no route GET {path}"))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path != "/v1/chat/completions":
            self._error(_BadRequest(404, f"no route POST {path}"))
            return
        entry: dict[str, Any] = {"model": None, "kind": "bad_request", "prompt_hash": None}
        headers: dict[str, str] = {}
        try:
            body = _body(raw)
            entry.update(model=body["model"], prompt_hash=body_hash(body))
            self.server.saw_model(body["model"])
            fault = self.server.next_fault()
            if fault is not None:
                entry["kind"] = "injected_fault"
                headers["Retry-After"] = "0"
                raise _BadRequest(fault, "injected fault (--fail-every)")
            reply = answer(body)
            tokens_in = prompt_tokens(body)
            entry.update(kind=reply.kind, prompt_tokens=tokens_in, completion_tokens=reply.completion_tokens,
                         finish_reason=reply.finish_reason)
            status, payload = 200, _completion(body, reply, tokens_in)
        except _BadRequest as bad:
            status, payload = bad.status, _error_body(bad)
        except UnsupportedSchema as err:
            entry["detail"] = str(err)
            status, payload = 422, _error_body(_BadRequest(422, str(err), "response_format"))
        except Exception as err:  # noqa: BLE001 - one unanswerable request is a 500 for it, not a dead server
            entry["detail"] = f"{type(err).__name__}: {err}"
            status, payload = 500, _error_body(_BadRequest(500, entry["detail"]))
        self.server.record({**entry, "status": status})  # before the reply: a client that got it finds it logged
        self._send(status, payload, headers)

    def _error(self, bad: _BadRequest) -> None:
        self._send(bad.status, _error_body(bad))

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error_body(bad: _BadRequest) -> dict:
    kind = ("rate_limit_error" if bad.status == 429 else "server_error" if bad.status >= 500 else
            "invalid_request_error")
    return {"error": {"message": bad.message, "type": kind, "param": bad.param, "code": None}}


def _body(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, "the request body is not a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest(400, "model must be a non-empty string", "model")
    if body.get("stream"):
        raise _BadRequest(400, "stream is not supported by the rehearsal API", "stream")
    if body.get("n", 1) != 1:
        raise _BadRequest(400, "n must be 1", "n")
    cap = body.get("max_tokens", body.get("max_completion_tokens"))
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise _BadRequest(400, f"max_tokens must be a positive integer, got {cap!r}", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest(400, "messages must be a non-empty list", "messages")
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: the text ones, joined
            m["content"] = content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(content, str):
            raise _BadRequest(400, "each message must be {role: system|user|assistant, content: text}", "messages")
    return body


def _completion(body: dict, reply, tokens_in: int) -> dict:
    return {
        "id": f"chatcmpl-{body_hash(body)[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"], "system_fingerprint": "counseltune-rehearsal",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                     "finish_reason": reply.finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": reply.completion_tokens,
                  "total_tokens": tokens_in + reply.completion_tokens},
    }


def start(port: int = 0, log_path: Path | None = None, fail_every: int = 0, fail_status: int = 429) -> RehearsalAPI:
    """Bind and answer in a background thread; stop with stop()."""
    httpd = RehearsalAPI(port, log_path, fail_every, fail_status)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), name="rehearsal-api", daemon=True).start()
    return httpd


def stop(httpd: RehearsalAPI) -> None:
    httpd.shutdown()
    httpd.server_close()


@contextmanager
def serving(**kwargs: Any) -> Iterator[RehearsalAPI]:
    httpd = start(**kwargs)
    try:
        yield httpd
    finally:
        stop(httpd)


def write_ready_file(path: Path, url: str) -> None:
    """The URL, written whole or not at all (a watcher never reads half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(url, encoding="utf-8")
    os.replace(partial, path)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    httpd = start(args.port, args.log, args.fail_every, args.fail_status)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        if args.ready_file is not None:
            write_ready_file(args.ready_file, httpd.url)
        faults = f", every {args.fail_every}th request fails with HTTP {args.fail_status}" if args.fail_every else ""
        print(f"counseltune rehearsal-api: serving on {httpd.url}"
              f"{f', logging requests to {args.log}' if args.log else ''}{faults}", flush=True)
        while not stopped.wait(0.5):  # a timed wait: the signal handler gets to run promptly
            pass
    finally:
        stop(httpd)
    print(f"counseltune rehearsal-api: stopped after {httpd.posts} chat-completions request(s)", flush=True)
    return 0
