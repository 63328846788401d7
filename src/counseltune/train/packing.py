"""Pack SFT samples into rows of at most max_len tokens without cross-sample attention, and collate batches.

A packed row concatenates samples; position_ids restart at 0 for each sample and seq_lens lists their lengths,
from which `block_causal_mask` builds a block-diagonal causal mask: a token attends only to earlier tokens of
its own sample. transformers (5.x) uses a 4D mask as given, for every layer, with the "eager" and "sdpa"
attention implementations, so a model with sliding-window layers needs the window inside the mask:
hybrid models (Gemma 3: sliding and full layers) get one mask per layer type ({"full_attention": ...,
"sliding_attention": ...}, which their forward accepts); `mask_spec(config)` says which. Other
implementations (flash_attention_2, flex_attention, ...) do not take this mask: `assert_packing_supported`
refuses them, and checks on a real forward that a packed row reproduces the samples run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from counseltune.errors import CounseltuneError
from counseltune.train.render import IGNORE, TokenCounts

MASKED_IMPLEMENTATIONS = ("eager", "sdpa")


class PackingError(CounseltuneError, ValueError):
    """Packing cannot be used as asked (a sample longer than a row, a model that ignores the block mask)."""


@dataclass
class Packed(TokenCounts):
    """One packed row: samples concatenated; position_ids restart per sample; seq_lens are their lengths."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lens: list[int]
    dialog_ids: list[str]



@dataclass(frozen=True)
class MaskSpec:
    """How a model wants its packed mask: a sliding window to apply, and whether per layer type (a dict)."""

    sliding_window: int | None = None
    per_layer_type: bool = False


def pack(samples: Sequence[Any], max_len: int) -> list[Packed]:
    """Samples (with input_ids, labels, optional dialog_id) -> rows by first-fit decreasing; deterministic."""
    lengths = [len(_get(s, "input_ids")) for s in samples]
    too_long = [n for n in lengths if n > max_len]
    if too_long:
        raise PackingError(f"{len(too_long)} samples are longer than max_len={max_len} (longest {max(too_long)})")
    rows = []
    for members in first_fit_decreasing(lengths, max_len):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            sample_labels = list(_get(samples[i], "labels"))
            sample_labels[0] = IGNORE  # its first token must not be "predicted" from the previous sample
            ids += list(_get(samples[i], "input_ids"))
            labels += sample_labels
            positions += list(range(lengths[i]))
        rows.append(Packed(ids, labels, positions, [lengths[i] for i in members],
                           [str(_get(samples[i], "dialog_id", "")) for i in members]))
    return rows


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Item lengths -> bins (lists of item indices): longest first, each into the first bin with room."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    size = 1
    while size < max(len(lengths), 1):
        size *= 2
    # a max-tree over bins' free room: finds the first bin with room in O(log n); unopened bins are empty
    room = [capacity] * (2 * size)
    bins: list[list[int]] = []
    for i in order:
        need = lengths[i]
        node = 1
        while node < size:
            node = 2 * node if room[2 * node] >= need else 2 * node + 1
        b = node - size
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        room[node] -= need
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return bins


def block_causal_mask(seq_lens: Sequence[int], max_len: int, sliding_window: int | None = None) -> torch.Tensor:
    """seq_lens of one row -> bool [max_len, max_len], True where a query may attend a key (own sample only).

    Padding after the samples attends only to itself, so no softmax row is empty.
    """
    mask = torch.zeros(max_len, max_len, dtype=torch.bool)
    offset = 0
    for n in seq_lens:
        idx = torch.arange(n)
        block = idx[:, None] >= idx[None, :]
        if sliding_window is not None:
            block &= (idx[:, None] - idx[None, :]) < sliding_window
        mask[offset: offset + n, offset: offset + n] = block
        offset += n
    if offset > max_len:
        raise PackingError(f"seq_lens sum to {offset} > max_len={max_len}")
    pad = torch.arange(offset, max_len)
    mask[pad, pad] = True
    return mask


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask [L, L] or [B, L, L] (True = attend) -> additive float mask [B, 1, L, L] (0 or dtype's min)."""
    if mask.dim() == 2:
        mask = mask[None]
    return torch.where(mask, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]


def collate(rows: Sequence[Any], pad_id: int, packed: bool, spec: MaskSpec | None = None,
            dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Rows (dicts or Sample/Packed) -> model inputs, right-padded to the longest row of the batch.

    dtype must be the model's compute dtype (sdpa wants the mask in the query's dtype).

    Unpacked: attention_mask is 2D (1 real, 0 padding). Packed: a 4D additive block-diagonal mask
    [B, 1, L, L] (or, for spec.per_layer_type, a dict of them per layer type) and position_ids per sample.
    labels are -100 on padding.
    """
    spec = spec or MaskSpec()
    width = max(len(_get(r, "input_ids")) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        n = len(_get(row, "input_ids"))
        ids[b, :n] = torch.tensor(_get(row, "input_ids"))
        labels[b, :n] = torch.tensor(_get(row, "labels"))
        row_positions = _get(row, "position_ids", None) if packed else None
        positions[b, :n] = torch.tensor(row_positions) if row_positions is not None else torch.arange(n)
        positions[b, n:] = torch.arange(width - n)
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "position_ids": positions}
    if not packed:
        batch["attention_mask"] = (torch.arange(width)[None] < torch.tensor([len(_get(r, "input_ids")) for r in rows])[:, None]).long()
        return batch
    lens = [list(_get(r, "seq_lens", None) or [len(_get(r, "input_ids"))]) for r in rows]
    full = additive_mask(torch.stack([block_causal_mask(s, width) for s in lens]), dtype)
    if spec.sliding_window is None:
        batch["attention_mask"] = full
        return batch
    sliding = additive_mask(torch.stack([block_causal_mask(s, width, spec.sliding_window) for s in lens]), dtype)
    batch["attention_mask"] = {"full_attention": full, "sliding_attention": sliding} if spec.per_layer_type else sliding
    return batch


def collator_for(model) -> Callable[..., dict[str, Any]]:
    """collate(rows, pad_id, packed) with the mask layout and dtype this model needs."""
    return partial(collate, spec=mask_spec(model.config), dtype=_dtype(model))


def mask_spec(config) -> MaskSpec:
    """A model config -> the mask layout its layers need (sliding window, per layer type)."""
    window = getattr(config, "sliding_window", None)
    types = set(getattr(config, "layer_types", None) or [])
    if not window or (types and "sliding_attention" not in types):
        return MaskSpec()
    if getattr(config, "use_sliding_window", True) is False:
        return MaskSpec()
    return MaskSpec(int(window), per_layer_type="full_attention" in types)


def assert_packing_supported(model, lengths: Sequence[int] = (9, 6), rtol: float | None = None) -> float:
    """Refuse packing for a model whose attention ignores the block mask; returns the probe's relative gap.

    The gap is max |packed - alone| over the largest |logit| of the sample run alone: float32 kernels differ
    by ~1e-6 of the logit scale between the packed and the single layout (Gemma's logits reach ~50, so an
    absolute bound flags rounding), while a leak moves logits by a sizeable share of it. rtol defaults to
    1e-5 for float32 weights and 1e-2 for half precision.
    """
    if rtol is None:
        rtol = 1e-5 if _dtype(model) == torch.float32 else 1e-2
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in MASKED_IMPLEMENTATIONS:
        raise PackingError(
            f"packing needs a 4D block-diagonal attention mask, which transformers honors only with "
            f"attn_implementation in {MASKED_IMPLEMENTATIONS}; this model uses {impl!r}: set packing: false")
    gap, scale = packing_gap(model, lengths, with_scale=True)
    relative = gap / max(scale, 1.0)
    if relative > rtol:
        raise PackingError(
            f"{type(model).__name__} does not honor the packed attention mask (a packed sample's logits differ "
            f"from the sample run alone by {gap:.2e}, {relative:.1e} of the logit scale > {rtol}): "
            f"set models.<name>.train.packing: false")
    return relative


def packing_gap(model, lengths: Sequence[int] = (9, 6), spec: MaskSpec | None = None, seed: int = 0,
                with_scale: bool = False):
    """Max |logit difference| between random samples packed in one row (mask laid out by spec, default the
    model's own mask_spec) and the same samples run alone; with_scale also returns max |logit| alone."""
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") else model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    samples = [{"input_ids": torch.randint(0, vocab, (n,), generator=gen).tolist(), "labels": [IGNORE] * n,
                "dialog_id": str(i)} for i, n in enumerate(lengths)]
    row = pack(samples, sum(lengths))
    spec = spec if spec is not None else mask_spec(model.config)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = collate(row, pad_id=0, packed=True, spec=spec, dtype=_dtype(model))
            packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           position_ids=batch["position_ids"], use_cache=False).logits[0]
            gap, scale, offset = 0.0, 0.0, 0
            for i, n in zip(row[0].dialog_ids, row[0].seq_lens):
                alone = model(input_ids=torch.tensor([samples[int(i)]["input_ids"]]), use_cache=False).logits[0]
                gap = max(gap, (packed[offset: offset + n] - alone).abs().max().item())
                scale = max(scale, alone.abs().max().item())
                offset += n
    finally:
        model.train(was_training)
    return (gap, scale) if with_scale else gap


def packing_efficiency(lengths: Sequence[int], n_rows: int, max_len: int) -> float:
    """Real tokens / processed tokens for fixed-length rows (rows x max_len)."""
    return sum(lengths) / (n_rows * max_len) if n_rows else 0.0


def padded_batch_efficiency(lengths: Sequence[int], batch_size: int) -> float:
    """Real tokens / processed tokens when batches (in order) are padded to their longest row."""
    processed = sum(max(lengths[i: i + batch_size]) * len(lengths[i: i + batch_size])
                    for i in range(0, len(lengths), batch_size))
    return sum(lengths) / processed if processed else 0.0


def _dtype(model) -> torch.dtype:
    floating = [p.dtype for p in model.parameters() if p.dtype.is_floating_point]
    return floating[0] if floating else torch.float32


def _get(row: Any, name: str, default: Any = ...) -> Any:
    if isinstance(row, Mapping):
        return row[name] if default is ... else row.get(name, default)
    return getattr(row, name) if default is ... else getattr(row, name, default)
