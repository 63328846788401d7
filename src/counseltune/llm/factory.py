"""make_client: the one way to get a Client from the `llm:` config."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import parse_config
from .redact import Redactor
from .types import Client


def make_client(config: dict[str, Any], *, model_dir: Path | None = None, names: Iterable[str] = (),
                stage: str = "") -> Client:
    """A validated `llm:` config -> its backend's client (ConfigError / MissingAPIKey on a bad config).

    model_dir overrides llm.model_dir (the local backend's base model folder); names are personal names the
    privacy guard redacts wherever they occur, besides the ones it finds itself; stage is what a remote client's
    spend is booked to in the run's ledger (e.g. "fidelity[gemma3-270m]").
    """
    cfg = parse_config(config, model_dir=model_dir)
    redactor = Redactor(tuple(names)) if cfg.redact else None
    if cfg.backend == "local":
        from .local import (
            LocalClient,  # imports torch/transformers only when a local model is asked for
        )

        return LocalClient(cfg, redactor)
    from .remote import OpenAIClient, read_api_key

    return OpenAIClient(cfg, redactor, read_api_key(cfg.key_env), stage=stage)
