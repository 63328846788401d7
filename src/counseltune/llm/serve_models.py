"""The models one `counseltune serve` answers for: a base model folder and LoRA adapters on it, each by name.

Replies are decoded by the one generation path (models/generate.py: render, prompt_token_cap, generate,
hypothesis_text; weights from models/loader.py), as the predict stage decodes, so a served greedy reply is the
in-process one: same chat template, same decode settings, same
stop tokens, same context cap. An adapter is loaded as predict loads it (base + adapter, merged when unquantized),
on its first request, and kept: one merged copy of the base per adapter (fine for the small models this serves;
a big model with many adapters belongs on vLLM, see README "On a SLURM cluster").

One worker thread runs every generate() call; HTTP threads only queue jobs. Jobs that arrive together are
batched when they ask for the same model and decode settings (greedy decoding does not depend on the batch:
tests/test_predict.py); a sampled request is decoded alone from its own seed, so its reply does not depend on
what else was in flight.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError

from counseltune.errors import CounseltuneError
from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import generate, hypothesis_text, prompt_token_cap, render
from counseltune.models.loader import load_chat_model

GATHER_S = 0.02  # how long the worker waits for more jobs to join a batch once one arrived


class ServeError(CounseltuneError, ValueError):
    """The server cannot start: a folder that is no model or adapter, a bad --adapter, a port in use."""


class BadRequest(Exception):
    """A request the server refuses: the HTTP status, an OpenAI error code and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Decode:
    """The decode settings of one request (hashable: jobs with equal settings share a batch)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    seed: int


@dataclass
class _Job:
    model: str
    ids: list[int]
    decode: Decode
    done: threading.Event = field(default_factory=threading.Event)
    new: list[int] | None = None
    error: BaseException | None = None


class ServedModels:
    def __init__(self, base_dir: Path, base_name: str, adapters: dict[str, Path], *, dtype: str = "float32",
                 quantization: str = "none", batch_size: int = 8, entry: dict[str, Any] | None = None) -> None:
        """entry: the model's registry entry (models.<m>), handed to load_model as the predict stage hands it, so
        the weights load exactly alike; without it, a plain folder at dtype/quantization."""
        if not (Path(base_dir) / "config.json").is_file():
            raise ServeError(f"{base_dir}: not a model folder (no config.json); the base-model stage builds "
                             "models/base/<model>")
        if base_name in adapters:
            raise ServeError(f"adapter name {base_name!r} is the base model's name: give the adapter another name")
        for name, folder in adapters.items():
            if not (Path(folder) / "adapter_config.json").is_file():
                raise ServeError(f"adapter {name}={folder}: no adapter_config.json there (a peft LoRA adapter "
                                 "folder, e.g. models/adapters/<model>)")
        self.base_dir, self.base_name = Path(base_dir), base_name
        self.adapters = {name: Path(folder) for name, folder in adapters.items()}
        self.model_params = dict(entry) if entry else {"dtype": dtype, "quantization": quantization}
        self.batch_size = batch_size
        self.completions = 0  # chat completions answered or refused: what a test counts
        self._count_lock = threading.Lock()
        self._loaded: dict[str, Any] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lm, self.tokenizer = None, None

    @property
    def names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def load(self) -> None:
        """Load the base model (the adapters load on their first request) and start the worker."""
        self._lm, self.tokenizer = load_chat_model(self.base_dir.name, self.model_params, self.base_dir)
        self._loaded[self.base_name] = self._lm
        self._worker = threading.Thread(target=self._work, name="serve-generate", daemon=True)
        self._worker.start()

    def count(self) -> None:
        with self._count_lock:
            self.completions += 1

    def prompt_ids(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> list[int]:
        """A request's prompt token ids, exactly as predict renders them; BadRequest when it cannot be served."""
        if model not in self.names:
            raise BadRequest(404, "model_not_found", f"model {model!r} is not served here; served: {self.names}")
        try:
            _, ids = render(messages, self.tokenizer)
        except TemplateError as err:
            raise BadRequest(400, "template_error", f"the chat template refused these messages: {err}") from None
        try:
            cap = prompt_token_cap(self._lm, self.tokenizer, max_tokens)
        except ValueError as err:
            raise BadRequest(400, "context_length_exceeded", str(err)) from None
        if len(ids) > cap:
            raise BadRequest(400, "context_length_exceeded",
                             f"the prompt has {len(ids)} tokens; with max_tokens {max_tokens} at most {cap} fit")
        return ids

    def complete(self, model: str, ids: list[int], decode: Decode) -> tuple[str, int]:
        """Queue one prompt and wait for its reply: (text, new tokens)."""
        job = _Job(model, ids, decode)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.new is not None
        return hypothesis_text(self.tokenizer, job.new), len(job.new)

    def close(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join()
            self._worker = None

    def _work(self) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.batch_size:
                try:
                    job = self._jobs.get(timeout=GATHER_S)
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                # Greedy jobs batch by settings (the seed does not matter); a sampled job decodes alone, seeded.
                key = (job.model, replace(job.decode, seed=0)) if job.decode.temperature <= 0 else (id(job),)
                groups.setdefault(key, []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Job]) -> None:
        try:
            lm = self._model(group[0].model)
            d = group[0].decode
            decode = DecodeSettings(max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
                                    repetition_penalty=d.repetition_penalty, batch_size=self.batch_size)
            outputs, _ = generate(lm, self.tokenizer, [job.ids for job in group], decode, d.seed, progress=False)
            for job, new in zip(group, outputs):
                job.new = new
        except Exception as err:  # noqa: BLE001 - handed to each waiting request (an HTTP 500), the server lives on
            for job in group:
                job.error = err
        finally:
            for job in group:
                job.done.set()

    def _model(self, name: str):
        if name not in self._loaded:
            self._loaded[name], _ = load_chat_model(self.base_dir.name, self.model_params, self.base_dir,
                                                    self.adapters[name])
        return self._loaded[name]
