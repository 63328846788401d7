"""How a registry model decodes (models.<name>.decode), as one typed, validated value.

Every generate call takes a DecodeSettings: the predict stage's, the local LLM client's (synthesis, judge,
simulated client), the simulated counselor's and the model server's. A caller that decodes differently on purpose
(a request's own max_tokens, temperature or top_p) says so with `with_request(...)`; what the request cannot say
(repetition_penalty, the batch size) stays the registry's, so one model decodes alike everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from counseltune.errors import CounseltuneError


class DecodeSettingsError(CounseltuneError, ValueError):
    """A decode setting out of range; the message names the key (models.<name>.decode.<key>) and what is allowed."""


@dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0        # 0: greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # 1.0: none
    batch_size: int = 8

    def __post_init__(self) -> None:
        self._check("decode", "")

    @classmethod
    def from_registry(cls, model: str, decode: Mapping[str, Any]) -> DecodeSettings:
        """models.<model>.decode -> DecodeSettings; a missing, unknown or out-of-range key names its key path."""
        where = f"models.{model}.decode"
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(decode) - names), sorted(names - set(decode))
        if unknown or missing:
            raise DecodeSettingsError(f"{where}: {'unknown keys ' + str(unknown) if unknown else ''}"
                                      f"{'; ' if unknown and missing else ''}"
                                      f"{'missing keys ' + str(missing) if missing else ''}: fix params.yaml")
        settings = object.__new__(cls)  # checked with the registry's key path, not the generic one
        for name in names:
            object.__setattr__(settings, name, decode[name])
        settings._check(where, ": fix params.yaml")
        return settings

    def with_request(self, *, max_new_tokens: int | None = None, temperature: float | None = None,
                     top_p: float | None = None, batch_size: int | None = None) -> DecodeSettings:
        """These settings with a request's own values where it gives them (None: keep the registry's)."""
        given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                 "batch_size": batch_size}
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def _check(self, where: str, fix: str) -> None:
        def bad(key: str, want: str) -> DecodeSettingsError:
            return DecodeSettingsError(f"{where}.{key}: {getattr(self, key)!r} is not {want}{fix}")

        for key in ("max_new_tokens", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(key, "an integer >= 1")
        for key in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise bad(key, "a number")
        if self.temperature < 0:
            raise bad("temperature", ">= 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]")
        if self.repetition_penalty <= 0:
            raise bad("repetition_penalty", "> 0")
