"""A client of a model server that serves a base model as <model> and its LoRA adapter as <model>-finetuned.

`counseltune serve` (serve.py), vLLM with --enable-lora, SGLang or llama.cpp: the engine a stage chooses with
`engine: served` (predict.engine, fidelity.counselor.engine) instead of transformers in its own process. The
client is the OpenAI-compatible one (cached: a re-run asks nothing; `concurrency` requests in flight; retried;
accounted), asking for one served model by name; its cache key also holds the weights' fingerprint and the
repetition penalty the chat API has no field for (a vLLM/SGLang extension, sent in the body).

served.start true: the client starts `counseltune serve` for the model on its first cache miss (serve_process.py),
waits for its health, and stops it on close(). false: served.base_url (or COUNSELTUNE_SERVED_URL, which
`counseltune serve --then` sets) names a running server (waited for up to health_timeout_s), which must serve the
weights of the stage's base/adapter folders: their fingerprint is in the cache key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from counseltune.config import ParamsError

from .config import parse_config
from .local import weights_fingerprint
from .remote import OpenAIClient
from .types import ChatRequest

ADAPTER_SUFFIX = "-finetuned"   # the adapter's served name: <model>-finetuned (vLLM: --lora-modules <that>=<folder>)
URL_ENV = "COUNSELTUNE_SERVED_URL"
NO_KEY = "EMPTY"                # what vLLM and llama.cpp expect when they run without --api-key


def served_name(model: str, finetuned: bool) -> str:
    return f"{model}{ADAPTER_SUFFIX}" if finetuned else model


class ServedClient(OpenAIClient):
    """The OpenAI-compatible client asking for one served model (a request's repetition_penalty goes in the body)."""

    backend = "served"

    def __init__(self, config, api_key: str, name: str, identity: str, extra_body: dict[str, Any], *,
                 start=None, health_timeout_s: float = 600.0) -> None:
        super().__init__(config, None, api_key)
        self.model = identity  # cache key and accounting
        self.served_name, self.extra_body, self._start = name, extra_body, start
        self.health_timeout_s = health_timeout_s
        self._server: ExitStack | None = None

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        penalty = request.repetition_penalty  # in the cache key too (cache.key_fields)
        return {**super()._params(request), "model": self.served_name, **self.extra_body,
                **({"repetition_penalty": float(penalty)} if penalty != 1.0 else {})}

    def _answer(self, pending, record) -> None:
        if not pending:
            return
        if self._start is None:  # a running server, maybe still loading (a SLURM server job started alongside)
            from .serve_process import wait_for_health

            wait_for_health(self.config.base_url, self.health_timeout_s)
        elif self._server is None:  # a server only once the cache could not answer everything; kept until close()
            self._server = ExitStack()
            url = self._server.enter_context(self._start())
            self.config = replace(self.config, base_url=url)
        super()._answer(pending, record)

    def close(self) -> None:
        """Stop the server this client started (if any)."""
        if self._server is not None:
            self._server.close()
            self._server = None


def served_client(cfg: Mapping[str, Any], where: str, model: str, entry: Mapping[str, Any], base_dir: Path,
                  adapter_dir: Path | None, *, serves_adapters: Mapping[str, Path] | None = None,
                  extra_body: Mapping[str, Any] | None = None, identity_suffix: str = "") -> ServedClient:
    """The client for `model` (adapter_dir: its fine-tuned variant) from a `served:` params block at `where` (e.g.
    predict.served); a started server serves serves_adapters (default: adapter_dir's as <model>-finetuned)."""
    name = served_name(model, adapter_dir is not None)
    start = None
    if cfg["start"]:
        adapters = dict(serves_adapters) if serves_adapters is not None else (
            {name: adapter_dir} if adapter_dir is not None else {})
        start = partial(started_server, base_dir, model, adapters, entry, cfg["health_timeout_s"])
        base_url = "http://127.0.0.1/v1"  # replaced by the started server's own
    else:
        base_url = cfg["base_url"] or os.environ.get(URL_ENV)
        if not base_url:
            raise ParamsError(f"{where}.start false needs {where}.base_url (or ${URL_ENV}, which `counseltune serve "
                              "--then` sets): the running server's http://host:port/v1")
    config = parse_config({
        "backend": "openai", "model": name, "base_url": base_url, "concurrency": cfg["concurrency"],
        "timeout_s": cfg["timeout_s"], "max_retries": cfg["max_retries"], "redact": "off",  # as in-process: no redaction
        "budget_usd": 0.0, "prices": {name: {"input_per_m": 0.0, "output_per_m": 0.0}},
        "cache_dir": cfg["cache_dir"]})
    key_env = cfg.get("key_env")
    api_key = (os.environ.get(key_env) or NO_KEY) if key_env else NO_KEY
    identity = f"{name}@{weights_fingerprint(base_dir, adapter_dir)}{identity_suffix}"
    return ServedClient(config, api_key, name, identity, dict(extra_body or {}), start=start,
                        health_timeout_s=cfg["health_timeout_s"])


@contextmanager
def started_server(base_dir: Path, model: str, adapters: dict[str, Path], entry: Mapping[str, Any],
                   health_timeout_s: float) -> Iterator[str]:
    """`counseltune serve` for this model on a free loopback port, healthy; yields its base URL, stops it after."""
    from .serve_process import free_port, running_server, serve_command

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = serve_command(base_dir, model, adapters, port=port, dtype=entry["dtype"],
                            quantization=entry["quantization"], batch_size=entry["decode"]["batch_size"],
                            entry=dict(entry))  # the keys the loader may read
    with running_server(command, url, health_timeout_s=health_timeout_s):
        yield url
