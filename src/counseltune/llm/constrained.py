"""Schema-constrained decoding for the local backend, with llguidance (the grammar engine vLLM and SGLang also use).

A request's JSON Schema is compiled once into a grammar; each batch row gets its own matcher. Before every
decode step the logits processor feeds each row the token it just chose and masks the logits to the tokens the
grammar allows next, so a local reply is JSON of the schema by construction. Only max_new_tokens can still cut
it: that reply is a truncation and is rejected as one (client.rejection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llguidance
import llguidance.hf
import llguidance.numpy
import numpy as np
import torch
from transformers import LogitsProcessor

from .types import OutputSchema

# Compact JSON: a small model must not spend its token budget on newlines and indentation.
JSON_OPTIONS = {"whitespace_flexible": False}


class SchemaError(ValueError):
    """A schema the grammar engine cannot compile; the message names the schema and the engine's reason."""


class SchemaDecoding:
    """Everything constrained decoding needs for one tokenizer: its grammar view and the compiled schemas."""

    def __init__(self, tokenizer, stop_ids: Sequence[int], vocab_size: int) -> None:
        # ~1 s to build, so once per client. The model's stop tokens end a reply the grammar has closed.
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(stop_ids))
        self.stop_ids = frozenset(stop_ids)
        self._templates: dict[str, llguidance.LLMatcher] = {}

    def processors(self, schema: OutputSchema) -> Callable[[int], list[LogitsProcessor]]:
        """batch size -> that batch's logits processors (for predict.generate's logits_processors)."""
        template = self._template(schema)
        vocab = self.tokenizer.vocab_size
        return lambda rows: [SchemaLogitsProcessor([template.deep_copy() for _ in range(rows)], vocab, self.stop_ids)]

    def _template(self, schema: OutputSchema) -> llguidance.LLMatcher:
        if schema.text not in self._templates:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema.text, defaults=JSON_OPTIONS)
            matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
            if matcher.is_error():
                raise SchemaError(f"output schema {schema.name!r} cannot be decoded under: {matcher.get_error()}")
            self._templates[schema.text] = matcher
        return self._templates[schema.text]


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks each row's logits to the tokens its matcher allows next (stateful: one instance per batch)."""

    def __init__(self, matchers: list[llguidance.LLMatcher], vocab_size: int, stop_ids: frozenset[int]) -> None:
        self.matchers, self.stop_ids = matchers, stop_ids
        self.finished = [False] * len(matchers)
        self.started = False
        self.mask = llguidance.numpy.allocate_token_bitmask(len(matchers), vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        width = scores.shape[1]
        if self.started:  # every call after the first sees the token each row chose last step
            for row, token in enumerate(input_ids[:, -1].tolist()):
                if self.finished[row]:
                    continue
                if token in self.stop_ids:
                    self.finished[row] = True
                else:
                    self.matchers[row].consume_token(token)
        self.started = True
        for row, matcher in enumerate(self.matchers):
            if self.finished[row] or matcher.is_error():
                # A finished row only pads, and a broken one (never seen) is left free: an all-masked row
                # would turn into NaNs under sampling. A broken row's reply fails validation downstream.
                self.mask[row] = -1
            else:
                llguidance.numpy.fill_next_token_bitmask(matcher, self.mask, row)
        allowed = unpack_bitmask(self.mask, width)
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


_SHIFTS = torch.arange(32, dtype=torch.int32)


def unpack_bitmask(mask: np.ndarray, width: int) -> torch.Tensor:
    """(rows, words) int32 bitmask, bit j of word w = token 32*w + j -> (rows, width) bool (tokens past it: False)."""
    bits = torch.from_numpy(mask)
    allowed = ((bits.unsqueeze(-1) >> _SHIFTS) & 1).bool().reshape(bits.shape[0], -1)[:, :width]
    if allowed.shape[1] < width:
        allowed = torch.nn.functional.pad(allowed, (0, width - allowed.shape[1]), value=False)
    return allowed
