"""The `llm:` config section -> a validated LLMConfig; every mistake is a ConfigError naming the key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

BACKENDS = ("local", "openai")
REDACT_MODES = ("auto", "on", "off")
DEFAULTS: dict[str, Any] = {
    "base_url": None, "key_env": "OPENAI_API_KEY", "concurrency": 8, "timeout_s": 60.0, "max_retries": 5,
    "backoff_base_s": 0.5, "backoff_max_s": 30.0, "redact": "auto", "budget_usd": 5.0, "cache_dir": ".cache/llm",
    "prices": {}, "model_dir": None, "adapter_dir": None, "batch_size": 8, "dtype": None, "quantization": "none",
}
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "4bit", "8bit")


@dataclass(frozen=True)
class Price:
    input_per_m: float   # USD per 1M prompt tokens
    output_per_m: float  # USD per 1M completion tokens

    def cost(self, tokens_in: float, tokens_out: float) -> float:
        return (tokens_in * self.input_per_m + tokens_out * self.output_per_m) / 1e6


@dataclass(frozen=True)
class LLMConfig:
    backend: str
    model: str
    base_url: str | None
    key_env: str
    concurrency: int
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    redact: bool          # "auto" resolved: on for remote backends, off for local
    budget_usd: float
    cache_dir: Path
    price: Price          # this model's; zero for the local backend
    model_dir: Path | None
    adapter_dir: Path | None  # local: a peft LoRA adapter on top of model_dir (a fine-tuned counselor)
    batch_size: int
    # local: the registry's models.<model>.dtype / .quantization, loaded by models/loader.py (dtype None: the base
    # folder's provenance, else float32)
    dtype: str | None = None
    quantization: str = "none"


def parse_config(raw: dict[str, Any], *, model_dir: Path | None = None) -> LLMConfig:
    """Validate an `llm:` dict (defaults filled in); model_dir, when given, overrides the config's."""
    if not isinstance(raw, dict):
        raise ConfigError(f"llm config must be a mapping, got {type(raw).__name__}")
    if "api_key" in raw or "key" in raw:
        raise ConfigError("llm config must not hold the API key: put the key in the environment variable named by "
                          "llm.key_env (default OPENAI_API_KEY) and leave it out of every file")
    unknown = sorted(set(raw) - set(DEFAULTS) - {"backend", "model"})
    if unknown:
        raise ConfigError(f"unknown llm config key(s) {unknown}; known: {sorted([*DEFAULTS, 'backend', 'model'])}")
    cfg = {**DEFAULTS, **raw}
    backend = _choice(cfg, "backend", BACKENDS)
    model = cfg.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError("llm.model must be a non-empty model name")
    if cfg["base_url"] is not None:
        _text(cfg, "base_url")
    if not isinstance(cfg["prices"] or {}, dict):
        raise ConfigError(f"llm.prices must map model names to prices, got {cfg['prices']!r}")
    prices = {name: _price(name, p) for name, p in (cfg["prices"] or {}).items()}
    if backend == "local":
        price = Price(0.0, 0.0)
        model_dir = model_dir or cfg["model_dir"]
        if model_dir is None:
            raise ConfigError("llm.backend local needs llm.model_dir (or make_client(model_dir=...)): "
                              "the base model folder, e.g. models/base/<model>")
    elif model not in prices:
        raise ConfigError(f"llm.prices has no entry for model {model!r}: add "
                          f"prices: {{{model}: {{input_per_m: ..., output_per_m: ...}}}} (USD per 1M tokens) so the "
                          "budget can be enforced; use 0 for a free endpoint")
    else:
        price = prices[model]
    redact = _choice(cfg, "redact", REDACT_MODES)
    return LLMConfig(
        backend=backend, model=model, base_url=cfg["base_url"], key_env=_text(cfg, "key_env"),
        concurrency=_number(cfg, "concurrency", int, minimum=1), timeout_s=_number(cfg, "timeout_s", float, above=0),
        max_retries=_number(cfg, "max_retries", int, minimum=0),
        backoff_base_s=_number(cfg, "backoff_base_s", float, minimum=0),
        backoff_max_s=_number(cfg, "backoff_max_s", float, minimum=0),
        redact=redact == "on" or (redact == "auto" and backend != "local"),
        budget_usd=_number(cfg, "budget_usd", float, minimum=0), cache_dir=Path(_text(cfg, "cache_dir")),
        price=price, model_dir=Path(model_dir) if model_dir else None,
        adapter_dir=Path(cfg["adapter_dir"]) if cfg["adapter_dir"] else None,
        batch_size=_number(cfg, "batch_size", int, minimum=1),
        dtype=None if cfg["dtype"] is None else _choice(cfg, "dtype", DTYPES),
        quantization=_choice(cfg, "quantization", QUANTIZATIONS),
    )


def _choice(cfg: dict, key: str, allowed: tuple[str, ...]) -> str:
    if cfg.get(key) not in allowed:
        raise ConfigError(f"llm.{key} must be one of {list(allowed)}, got {cfg.get(key)!r}")
    return cfg[key]


def _text(cfg: dict, key: str) -> str:
    if not isinstance(cfg[key], str) or not cfg[key]:
        raise ConfigError(f"llm.{key} must be a non-empty string, got {cfg[key]!r}")
    return cfg[key]


def _number(cfg: dict, key: str, kind: type, *, minimum: float | None = None, above: float | None = None,
            where: str = "llm"):
    value = cfg[key]
    # bool is an int subclass, and an int is a fine float; a float is not a fine int.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{where}.{key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if (minimum is not None and value < minimum) or (above is not None and value <= above):
        bound = f">= {minimum}" if minimum is not None else f"> {above}"
        raise ConfigError(f"{where}.{key} must be {bound}, got {value!r}")
    return kind(value)


def _price(model: str, entry: Any) -> Price:
    if not isinstance(entry, dict) or set(entry) != {"input_per_m", "output_per_m"}:
        raise ConfigError(f"llm.prices.{model} must be {{input_per_m: <USD>, output_per_m: <USD>}}, got {entry!r}")
    values = {k: _number(entry, k, float, minimum=0, where=f"llm.prices.{model}") for k in entry}
    return Price(**values)
