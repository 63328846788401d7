"""Sampling with one random stream per request, inside batched generation.

transformers samples a batch from the one global torch generator, so a row's tokens depend on which rows share
its batch and in what order: a resumed run (fewer rows left) would not reproduce an uninterrupted one. RowSampler
draws each row's token from that row's own generator, seeded from its request's cache key, and hands generate()
scores in which only that token is possible; generate() runs greedy, so it keeps the token. The same request then
gets the same reply alone, in any batch and after any resume.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def request_generator(key: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from a request's cache key (64 bits of its sha256)."""
    return torch.Generator(device=device).manual_seed(int(key[:16], 16))


class RowSampler(LogitsProcessor):
    """Temperature, then top-p (as transformers' warpers do), then one draw per row from that row's generator.

    Must come last among the processors: it turns the scores into a choice.
    """

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError("RowSampler samples; temperature 0 is greedy decoding and needs no sampler")
        self.generators, self.temperature, self.top_p = generators, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.generators)} generators")
        probs = nucleus(scores.float() / self.temperature, self.top_p).softmax(dim=-1)
        choice = torch.full_like(scores, float("-inf"))
        for row, generator in enumerate(self.generators):
            token = torch.multinomial(probs[row], 1, generator=generator)
            choice[row, token] = 0.0
        return choice


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the smallest set of tokens holding top_p of the probability set to -inf (the top one kept)."""
    if top_p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)
    drop[..., -1:] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
