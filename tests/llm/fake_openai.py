"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API, with injectable faults.

    with FakeOpenAI(latency_s=0.05, faults=["429", "ok"], rates={"500": 0.1}) as server:
        config = {"backend": "openai", "base_url": server.url, ...}
        ...
        server.paid()            # 200 responses sent
        server.log               # every request: body, Authorization header, fault served, status, times
        server.max_in_flight     # most requests it was handling at once

Each request takes the next fault from the queue (`faults`, or `script(...)` later); once the queue is empty a
fault is drawn at `rates` (seeded), else `default` is served. Faults:
  ok               a normal reply ("reply to: <last message>", a JSON object for response_format json_object;
                   for json_schema, an object of the schema when its properties are flat strings and enums)
  429              Retry-After: <retry_after>, at once (a rate limiter answers before doing any work)
  500, 503         a server error
  hang             no answer for hang_s, then the connection closes (past the client's timeout)
  drop             the connection closes without any answer
  malformed_json   200 with a body that is not JSON
  missing_choices  200 with JSON but no choices
  empty_content    200 with an empty message
  length           200 with finish_reason "length" (a truncated reply)
  not_json         200 whose content is not a JSON object (for json_mode requests)
  echo_key         500 whose error body echoes the request's bearer token, starting at character echo_at
  refuse_json_schema  400 naming response_format when the request asks for json_schema (an endpoint without
                   structured outputs), else a normal reply
Every fault but 429 answers after latency_s.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

FAULTS = ("ok", "429", "500", "503", "hang", "drop", "malformed_json", "missing_choices", "empty_content", "length",
          "not_json", "echo_key", "refuse_json_schema")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connect at once; the default backlog of 5 would drop their SYNs


@dataclass
class Logged:
    body: dict
    authorization: str
    fault: str
    status: int | None  # None: no HTTP answer (hang, drop)
    started: float
    ended: float


class FakeOpenAI:
    def __init__(self, *, latency_s: float = 0.0, faults: Iterable[str] = (), rates: dict[str, float] | None = None,
                 default: str = "ok", retry_after: float = 0.1, hang_s: float = 5.0, seed: int = 0,
                 echo_at: int = 290) -> None:
        self.latency_s, self.default, self.retry_after, self.hang_s = latency_s, default, retry_after, hang_s
        self.echo_at = echo_at
        self.rates = rates or {}
        for fault in [*faults, *self.rates, default]:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        self._queue = deque(faults)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.log: list[Logged] = []
        self.in_flight = self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)  # quick shutdown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # releases hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def script(self, *faults: str, default: str | None = None) -> None:
        """Queue faults for the next requests (and change the fault served after them)."""
        with self._lock:
            self._queue.extend(faults)
            self.default = default or self.default

    def paid(self) -> int:
        return sum(entry.status == 200 for entry in self.log)

    def bodies(self, status: int | None = 200) -> list[str]:
        """The canonical JSON of every logged request body answered with this status."""
        return [json.dumps(e.body, sort_keys=True) for e in self.log if e.status == status]

    def next_fault(self) -> str:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            draw = self._rng.random()
            for fault, rate in self.rates.items():
                if draw < rate:
                    return fault
                draw -= rate
            return self.default

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, entry: Logged) -> None:
        with self._lock:
            self.in_flight -= 1
            self.log.append(entry)


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
        # TCP_NODELAY, as real servers set: with Nagle, the body (a second small write after the headers) waits
        # for the client's delayed ACK, adding ~40 ms to every reply.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            started = time.perf_counter()
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(raw)
            fault = server.next_fault()
            server.enter()
            status = None
            try:
                status = self._serve(fault, body)
            finally:
                server.leave(Logged(body, self.headers.get("Authorization", ""), fault, status, started,
                                    time.perf_counter()))

        def _serve(self, fault: str, body: dict) -> int | None:
            if fault == "429":
                self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                           {"Retry-After": f"{server.retry_after:g}"})
                return 429
            server.wait(server.latency_s)
            if fault in ("hang", "drop"):
                if fault == "hang":
                    server.wait(server.hang_s)
                self.close_connection = True
                return None
            if fault in ("500", "503"):
                self._send(int(fault), {"error": {"message": "server error", "type": "server_error"}})
                return int(fault)
            if fault == "refuse_json_schema" and (body.get("response_format") or {}).get("type") == "json_schema":
                self._send(400, {"error": {"message": "Invalid parameter: 'response_format' of type 'json_schema' is "
                                                      "not supported with this model.",
                                           "type": "invalid_request_error", "param": "response_format"}})
                return 400
            if fault == "echo_key":  # as some APIs do with a bad key; here at a chosen offset of the body
                head = '{"error": {"message": "Incorrect API key provided: '
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                self._send_bytes(500, f'{head}{"." * (server.echo_at - len(head))}{token}"}}}}'.encode())
                return 500
            if fault == "malformed_json":
                self._send_bytes(200, b'{"id": "chatcmpl-1", "choices": [{"mess')
                return 200
            self._send(200, _completion(body, fault))
            return 200

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(payload).encode("utf-8"), headers)

        def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _flat_instance(schema: dict, text: str) -> dict | None:
    """An object of a flat schema (enum and string properties), as a strict endpoint would answer: each string is
    the text cut to its maxLength, or, if that breaks its pattern, the text's ASCII words (and a '?' or '.' if the
    pattern wants one at the end); None for any other schema (the plain {"reply": ...} answer)."""
    out = {}
    for name, spec in schema.get("properties", {}).items():
        if "enum" in spec:
            out[name] = spec["enum"][0]
        elif spec.get("type") == "string" and not set(spec) - {"type", "maxLength", "minLength", "pattern"}:
            value = text[: spec.get("maxLength", len(text))]
            if "pattern" in spec and not re.fullmatch(spec["pattern"], value):
                plain = re.sub(r"[^\w ]+", " ", text, flags=re.ASCII).strip()[: spec.get("maxLength", 80) - 1] or "reply"
                value = next((v for v in (plain, plain + "?", plain + ".") if re.fullmatch(spec["pattern"], v)), plain)
            out[name] = value
        else:
            return None
    return out


def _completion(body: dict, fault: str) -> dict:
    last = body["messages"][-1]["content"]
    response_format = body.get("response_format") or {}
    json_mode = response_format.get("type") in ("json_object", "json_schema")
    content = json.dumps({"reply": last}, ensure_ascii=False) if json_mode else f"reply to: {last}"
    if response_format.get("type") == "json_schema":
        instance = _flat_instance(response_format["json_schema"]["schema"], last)
        if instance is not None:
            content = json.dumps(instance, ensure_ascii=False)
    finish_reason = "stop"
    if fault == "empty_content":
        content = ""
    elif fault == "length":
        content, finish_reason = content[: len(content) // 2], "length"
    elif fault == "not_json":
        content = "Sure! Here is the JSON you asked for: {"
    prompt_tokens = sum(len(m["content"]) for m in body["messages"])
    payload = {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content),
                  "total_tokens": prompt_tokens + len(content)},
    }
    if fault == "missing_choices":
        del payload["choices"]
    return payload
