"""A local transformers model (a plain safetensors base-model folder): batched, left-padded generation on CPU/GPU.

Generation is models/generate.py's (render, generate, hypothesis_text), as every stage decodes, with the request's
DecodeSettings; the weights are the shared loader's, in the config's dtype and quantization (the registry's), held
once per base folder (models/resident.py): a base client and a fine-tuned one (its adapter on top) in one process
share one copy. Costs nothing; token counts come from the tokenizer. The model loads on the first cache miss, so
a fully cached run never loads it. One attempt per request: decoded greedily, or sampled from the request's own
generator (row_sampling.py), a retry would repeat the same reply, so a rejected reply (empty, truncated, not JSON)
is a Failure at once. A request with an output schema decodes under it (constrained.py): its reply is JSON of the
schema unless max_tokens cut it; json_mode without a schema only validates.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError

from counseltune.models import resident
from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import generate, hypothesis_text, prompt_token_cap, render, stop_token_ids

from .client import CachingClient, Pending, Record, rejection
from .types import Failure, Reply
from .usage import add_counts

BATCHES_PER_CHUNK = 4  # replies are cached after each chunk: a killed run loses at most this many batches


class LocalClient(CachingClient):
    backend = "local"
    _tokenizer: Any = None
    _held: Any = None      # models/resident.py: one base copy per process, shared with other clients of this base
    _schemas: Any = None   # constrained.SchemaDecoding, built on the first request with an output schema

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The weights are part of the cache key: a retrained adapter (or a rebuilt base) must not be answered
        # from replies of the old one.
        self.model = f"{self.config.model}@{weights_fingerprint(self.config.model_dir, self.config.adapter_dir)}"
        if self.config.quantization != "none":  # 4-/8-bit weights answer otherwise: never from the full weights' replies
            self.model += f"+{self.config.quantization}"

    @property
    def _lm(self) -> Any:
        """The resident model, for its config, device and vocabulary; generation goes through resident.serving (a
        kept reference could compute with another client's adapter). None until the first cache miss."""
        return self._held.model if self._held is not None else None

    def _answer(self, pending: list[Pending], record: Record) -> None:
        if not pending:
            return
        if self._held is None:
            self._held = resident.acquire(self.config.model, model_entry(self.config), self.config.model_dir,
                                          self.config.adapter_dir)
            self._tokenizer = self._held.tokenizer
        # Requests batch together when they decode alike; each samples from its own generator (see _generate).
        groups: dict[tuple, list[tuple[Pending, list[int]]]] = defaultdict(list)
        for p in pending:
            ids = self._prompt_ids(p, record)
            if ids is not None:
                r = p.request
                groups[(r.max_tokens, r.temperature, r.top_p, r.repetition_penalty, r.schema)].append((p, ids))
        chunk = self.config.batch_size * BATCHES_PER_CHUNK
        for (max_tokens, temperature, top_p, repetition_penalty, schema), items in groups.items():
            processors = self._schema_processors(schema, [p for p, _ in items], record)
            if processors is False:
                continue
            decode = DecodeSettings(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                    repetition_penalty=repetition_penalty, batch_size=self.config.batch_size)
            items.sort(key=lambda item: (-len(item[1]), item[1]))  # similar lengths share a chunk, and so a batch
            for start in range(0, len(items), chunk):
                part = items[start:start + chunk]
                outputs = self._generate(part, decode, processors)
                for (p, ids), new in zip(part, outputs):
                    self._finish(p, ids, new, record)

    def _generate(self, part: list[tuple[Pending, list[int]]], decode: DecodeSettings,
                  processors) -> list[list[int]]:
        """Each request's new token ids. Sampling draws from each request's own generator (row_sampling.py), so a
        reply does not depend on its batch: one generate() call per batch, so the sampler knows every row's request
        (part is sorted longest first, the order generate() keeps)."""
        if decode.greedy:
            with resident.serving(self._held, self.config.adapter_dir) as lm:
                outputs, _ = generate(lm, self._tokenizer, [ids for _, ids in part], decode, 0, progress=False,
                                      logits_processors=processors)
            return outputs
        from .row_sampling import RowSampler, request_generator

        greedy = replace(decode, temperature=0.0)  # the sampler picks each token; greedy decoding then keeps it
        outputs = []
        for start in range(0, len(part), decode.batch_size):
            batch = part[start:start + decode.batch_size]
            sampler = RowSampler([request_generator(p.key, self._lm.device) for p, _ in batch], decode.temperature,
                                 decode.top_p)
            with resident.serving(self._held, self.config.adapter_dir) as lm:
                out, _ = generate(lm, self._tokenizer, [ids for _, ids in batch], greedy, 0, progress=False,
                                  logits_processors=lambda n, last=sampler: [*(processors(n) if processors else []),
                                                                             last])
            outputs += out
        return outputs

    def _schema_processors(self, schema, pending: list[Pending], record: Record):
        """The constrained-decoding processors for a schema (None: no schema; False: it cannot compile)."""
        if schema is None:
            return None
        from .constrained import SchemaDecoding, SchemaError  # llguidance only when a schema is asked for

        if self._schemas is None:
            self._schemas = SchemaDecoding(self._tokenizer, stop_token_ids(self._lm, self._tokenizer),
                                           self._lm.get_output_embeddings().weight.shape[0])
        try:
            return self._schemas.processors(schema)
        except SchemaError as err:
            for p in pending:
                record(p, Failure("schema_error", str(err), 0))
            return False

    def _prompt_ids(self, p: Pending, record: Record) -> list[int] | None:
        messages = [{"role": role, "content": content} for role, content in p.request.messages]
        try:
            _, ids = render(messages, self._tokenizer)
            cap = prompt_token_cap(self._lm, self._tokenizer, p.request.max_tokens)
        except (TemplateError, ValueError) as err:  # a template refusing a role order; max_tokens >= context
            record(p, Failure("template_error" if isinstance(err, TemplateError) else "prompt_too_long", str(err), 0))
            return None
        if len(ids) > cap:
            record(p, Failure("prompt_too_long", f"{len(ids)} prompt tokens, at most {cap} fit", 0))
            return None
        return ids

    def _finish(self, p: Pending, ids: list[int], new: list[int], record: Record) -> None:
        self.usage.requests += 1
        self.usage.tokens_in += len(ids)
        self.usage.tokens_out += len(new)
        text = hypothesis_text(self._tokenizer, new)
        # generate() strips the stop token: a reply as long as the cap never reached one.
        finish_reason = "length" if len(new) >= p.request.max_tokens else "stop"
        refused = rejection(p.request, text, finish_reason)
        if refused is not None:
            add_counts(self.usage.attempt_errors, {refused.reason: 1})
            record(p, Failure(refused.reason, refused.detail, 1))
            return
        reply = Reply(text, len(ids), len(new), finish_reason, cached=False)
        self._store(p, reply)
        record(p, reply)


def model_entry(config) -> dict:
    """The registry keys the loader reads for this client: quantization, and dtype when the config gives it (else the
    base folder's provenance, the registry entry it was built from)."""
    return {"quantization": config.quantization, **({"dtype": config.dtype} if config.dtype else {})}


def weights_fingerprint(*folders: Path | None) -> str:
    """sha256 (12 hex digits) over the weight and config files of the given model/adapter folders."""
    digest = hashlib.sha256()
    for folder in filter(None, folders):
        for path in sorted(Path(folder).glob("*")):
            if path.suffix in (".safetensors", ".json", ".bin") and path.is_file():
                digest.update(path.name.encode())
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):
                        digest.update(block)
    return digest.hexdigest()[:12]
