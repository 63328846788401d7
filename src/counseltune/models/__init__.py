"""The base-model step: a registry entry (PyPI-pinned GGUF wheels, a hub repo or a local folder) becomes a plain
safetensors model folder with the run's chat template. Entry point: counseltune.models.base.prepare_base_model."""

from __future__ import annotations

from counseltune.errors import CounseltuneError


class BaseModelError(CounseltuneError, RuntimeError):
    """A base model could not be fetched or converted; the message names the model, the file, what was expected
    and what to do."""
