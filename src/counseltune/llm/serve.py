"""`counseltune serve`: a small OpenAI-compatible HTTP server around the project's local transformers backend.

    counseltune serve --base models/base/<m> --name <m> --adapter <m>-finetuned=models/adapters/<m> --port 8000

serves the base model as <m> and each adapter by its name, as `vllm serve <base> --enable-lora --lora-modules
name=path` does, on GET /health, GET /v1/models and POST /v1/chat/completions. Replies are decoded by the
project's generation (models/generate.py, via serve_models.py): a greedy served prediction equals the in-process
one. Accepted request fields: model, messages, max_tokens (or max_completion_tokens), temperature, top_p, seed,
repetition_penalty (a vLLM extension), response_format text/json_object (json_schema is refused with HTTP 400, so
the LLM client falls back to json_object and validates). Streaming and n > 1 are refused.

With --then "<command>" it starts itself, waits for health, runs the command (COUNSELTUNE_SERVED_URL holds the
base URL) and stops: the exit status is the command's (serve_process.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from counseltune.errors import CounseltuneError
from counseltune.models.decode import DecodeSettings, DecodeSettingsError

from .serve_models import BadRequest, Decode, ServedModels, ServeError

log = logging.getLogger(__name__)


class ServeHTTP(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a client opens `concurrency` connections at once

    def __init__(self, address: tuple[str, int], models: ServedModels) -> None:
        super().__init__(address, _Handler)
        self.models = models
        self.ready = False  # /health answers 503 until the base model is loaded

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ServeHTTP
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections
    disable_nagle_algorithm = True  # else the body waits for the client's delayed ACK: ~40 ms a reply

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            if self.server.ready:
                self._send(200, {"status": "ok", "completions": self.server.models.completions})
            else:
                self._send(503, {"status": "loading"})
        elif path == "/v1/models":
            models = self.server.models
            data = [{"id": models.base_name, "object": "model", "owned_by": "counseltune", "root": str(models.base_dir),
                     "parent": None}]
            data += [{"id": name, "object": "model", "owned_by": "counseltune", "root": str(folder),
                      "parent": models.base_name} for name, folder in models.adapters.items()]
            self._send(200, {"object": "list", "data": data})
        else:
            self._error(BadRequest(404, "not_found", f"no route GET {path}"))

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if path != "/v1/chat/completions":
            self._error(BadRequest(404, "not_found", f"no route POST {path}"))
            return
        if not self.server.ready:
            self._error(BadRequest(503, "loading", "the model is still loading; wait for /health"))
            return
        self.server.models.count()
        try:
            self._send(200, chat_completion(self.server.models, _json(raw)))
        except BadRequest as bad:
            self._error(bad)
        except Exception as err:  # noqa: BLE001 - one bad generation is a 500 for that request, not a dead server
            log.exception("generation failed")
            self._error(BadRequest(500, "internal_error", f"{type(err).__name__}: {err}"))

    def _error(self, bad: BadRequest) -> None:
        kind = "invalid_request_error" if bad.status < 500 else "server_error"
        self._send(bad.status, {"error": {"message": bad.message, "type": kind, "code": bad.code, "param": None}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def chat_completion(models: ServedModels, body: dict) -> dict:
    """An OpenAI chat-completions request body -> the response body (BadRequest for what cannot be served)."""
    if body.get("stream"):
        raise BadRequest(400, "unsupported", "stream is not supported by counseltune serve")
    if body.get("n", 1) != 1:
        raise BadRequest(400, "unsupported", "n must be 1")
    fmt = body.get("response_format") or {}
    if fmt.get("type") not in (None, "text", "json_object"):
        raise BadRequest(400, "unsupported", f"response_format {fmt.get('type')!r} is not supported (text, json_object)")
    model = body.get("model")
    max_tokens = _field(body, "max_tokens", int, 256, minimum=1, alias="max_completion_tokens")
    decode = Decode(max_new_tokens=max_tokens, temperature=_field(body, "temperature", float, 1.0, minimum=0),
                    top_p=_field(body, "top_p", float, 1.0, minimum=0), seed=_field(body, "seed", int, 0),
                    repetition_penalty=_field(body, "repetition_penalty", float, 1.0, minimum=0))
    try:  # the settings generate() will take: refuse here what it would refuse (e.g. top_p 0), as a 400
        DecodeSettings(decode.max_new_tokens, decode.temperature, decode.top_p, decode.repetition_penalty)
    except DecodeSettingsError as err:
        raise BadRequest(400, "invalid_value", str(err).removeprefix("decode.")) from None
    ids = models.prompt_ids(str(model), _messages(body.get("messages")), max_tokens)
    text, new_tokens = models.complete(str(model), ids, decode)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     # predict's generate drops the stop token: a reply as long as the cap never reached one
                     "finish_reason": "length" if new_tokens >= max_tokens else "stop"}],
        "usage": {"prompt_tokens": len(ids), "completion_tokens": new_tokens, "total_tokens": len(ids) + new_tokens},
    }


def _json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest(400, "invalid_json", "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "invalid_json", "the request body is not a JSON object")
    return body


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "invalid_messages", "messages must be a non-empty list")
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: the text ones, joined
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(content, str):
            raise BadRequest(400, "invalid_messages", "each message must be {role: system|user|assistant, content: text}")
        out.append({"role": m["role"], "content": content})
    return out


def _field(body: dict, key: str, kind: type, default: Any, *, minimum: float | None = None,
           alias: str | None = None) -> Any:
    value = body.get(key, body.get(alias) if alias else None)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadRequest(400, "invalid_value", f"{key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadRequest(400, "invalid_value", f"{key} must be >= {minimum}, got {value!r}")
    return kind(value)


def start_server(models: ServedModels, host: str = "127.0.0.1", port: int = 0) -> ServeHTTP:
    """Bind, start answering in a background thread (/health says 503), load the base model, then report ready."""
    httpd = ServeHTTP((host, port), models)
    threading.Thread(target=httpd.serve_forever, name="serve-http", daemon=True).start()
    models.load()
    httpd.ready = True
    return httpd


def stop_server(httpd: ServeHTTP) -> None:
    httpd.shutdown()
    httpd.server_close()
    httpd.models.close()


def parse_adapters(specs: list[str]) -> dict[str, Path]:
    adapters = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ServeError(f"--adapter {spec!r}: expected NAME=PATH, e.g. mymodel-finetuned=models/adapters/mymodel")
        if name in adapters:
            raise ServeError(f"--adapter {name!r} is given twice")
        adapters[name] = Path(path)
    return adapters


def parse_entry(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or not {"dtype", "quantization"} <= set(entry):
        raise ServeError(f"--entry must be a registry entry as a JSON object with dtype and quantization, got {text!r}")
    return entry


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, or (--then) for the length of one command."""
    if args.then is not None:
        from .serve_process import serve_then

        return serve_then(args)
    models = ServedModels(args.base, args.name or Path(args.base).name, parse_adapters(args.adapter),
                          dtype=args.dtype, quantization=args.quantization, batch_size=args.batch_size,
                          entry=parse_entry(args.entry))
    try:
        httpd = ServeHTTP((args.host, args.port), models)
    except OSError as err:
        raise ServeError(f"cannot listen on {args.host}:{args.port}: {err.strerror}; pick another --port") from None
    threading.Thread(target=httpd.serve_forever, name="serve-http", daemon=True).start()
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    print(f"counseltune serve: loading {args.base} on {httpd.url} (/health answers 503 until ready)", flush=True)
    models.load()
    httpd.ready = True
    print(f"counseltune serve: ready on {httpd.url}: {', '.join(models.names)}", flush=True)
    while not stopped.wait(1.0):  # a timed wait: the signal handler gets to run promptly
        pass
    stop_server(httpd)
    print("counseltune serve: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from counseltune.serve_args import add_serve_arguments

    args = add_serve_arguments(argparse.ArgumentParser(prog="counseltune serve", description=__doc__.split("\n\n")[0])
                               ).parse_args(argv)
    try:
        return run(args)
    except (CounseltuneError, ValueError, OSError) as err:  # a bad --adapter, a missing folder, no health, ...
        print(f"counseltune serve: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
