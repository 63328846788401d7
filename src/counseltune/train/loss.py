"""The causal-LM training loss with logits only where the loss is: the LM head on label positions, in chunks.

A model's own loss (`model(**batch, labels=...).loss`) projects every position of every row onto the whole
vocabulary and keeps those float32 logits (and, for Gemma, its soft-capping intermediates) plus their gradient:
for gemma3-270m's 262k-token vocabulary that is 1 GiB per tensor for one batch of 4 x 256 tokens, although
only the counselor tokens carry loss. Here the model runs with `output_hidden_states=True` and
`logits_to_keep` = no position (through the peft / DDP wrappers, so LoRA, autocast and gradient sync behave as
before), and the LM head (tied or not; Gemma's `final_logit_softcapping` applied) is computed only on the
positions whose shifted label is not -100, a chunk of at most CHUNK_ELEMENTS logits at a time. For a plain
`nn.Linear` head, `_FusedLinearCrossEntropy` computes each chunk's loss and its gradient together in forward
(the softmax minus the one-hot is the gradient of cross-entropy), keeping only the [positions x hidden]
gradient, so backward does no logits work at all (the approach of Liger Kernel's fused linear cross-entropy).
Other heads (a LoRA-wrapped or quantized lm_head) are run per chunk under torch.utils.checkpoint, so the chunk's
logits are recomputed in backward instead of stored. On CUDA with liger-kernel installed, Liger's kernel is
used for a plain head. The result equals the model's own mean cross-entropy over the same tokens (same loss
and gradients up to float rounding; tests/train/test_loss.py).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100
CHUNK_ELEMENTS = 1 << 24  # logits per chunk: 64 MiB of float32 (64 positions of Gemma 3's 262k vocabulary)
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def causal_lm_loss(net: Any, model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Mean cross-entropy over the batch's label tokens (labels shifted by one, -100 ignored), as the model's own
    loss computes it; `net` is what to call (peft model, possibly DDP-wrapped), `model` the unwrapped peft model."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    head, softcap = output_head(model)
    if head is None:  # a model this path does not know how to split: its own (full-logits) loss
        out = net(**batch)
        return out.loss if rows.numel() else out.logits.sum() * 0.0
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
    no_position = torch.zeros(0, dtype=torch.long, device=labels.device)
    out = net(**inputs, output_hidden_states=True, logits_to_keep=no_position, use_cache=False)
    hidden = out.hidden_states[-1]  # the final norm's output: what the LM head reads
    if rows.numel() == 0:
        return hidden.sum() * 0.0  # keeps every trainable parameter in the graph (DDP expects their grads)
    picked = hidden[rows, cols]
    return linear_cross_entropy(picked, head, targets[rows, cols], softcap) / rows.numel()


def output_head(model: Any) -> tuple[Any, float | None]:
    """(LM head module, final logit soft-cap) of a peft / plain causal LM; (None, None) when the model's forward
    cannot return hidden states without full logits (no `logits_to_keep`), so the caller uses its own loss."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None or "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return None, None
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    return head, getattr(config, "final_logit_softcapping", None)


def linear_cross_entropy(hidden: torch.Tensor, head: Any, targets: torch.Tensor, softcap: float | None = None,
                         chunk_elements: int | None = None) -> torch.Tensor:
    """Sum over rows of cross_entropy(softcap(head(hidden)), targets), never more than chunk_elements logits live
    (default CHUNK_ELEMENTS)."""
    vocab = head.weight.shape[0]
    chunk = max(1, (chunk_elements or CHUNK_ELEMENTS) // vocab)
    if type(head) is torch.nn.Linear:  # exactly a plain Linear: its weight (and bias) are the whole head
        liger = _liger_loss(hidden, softcap)
        if liger is not None:
            return liger(head.weight, hidden, targets, head.bias)
        grads = torch.is_grad_enabled()
        return _FusedLinearCrossEntropy.apply(
            hidden, head.weight, head.bias, targets, softcap, chunk,
            (grads and hidden.requires_grad, grads and head.weight.requires_grad,
             grads and head.bias is not None and head.bias.requires_grad))
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, h, head, t, softcap, use_reentrant=False)
        else:
            total = total + _chunk_loss(h, head, t, softcap)
    return total


def _chunk_loss(hidden: torch.Tensor, head: Any, targets: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = head(hidden)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits.float(), targets, reduction="sum")


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Loss sum of softcap(hidden @ weight.T + bias) against targets, chunk by chunk, its gradients made in
    forward: d loss / d logits = softmax - one_hot (times 1 - tanh^2 under the soft-cap), then one matmul per
    input that needs a gradient. Backward only scales the stored gradients."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, chunk, needs):
        need_h, need_w, need_b = needs
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = F.linear(h, weight, bias).float()
            capped = None
            if softcap is not None:
                capped = logits.div_(softcap).tanh_()  # in place: the raw logits are not needed again
                logits = capped * softcap
            picked = logits.gather(1, t[:, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            exp = logits.sub_(top).exp_()  # in place: a chunk never holds more than two [chunk x vocab] tensors
            norm = exp.sum(dim=-1, keepdim=True)
            total += (top + norm.log()).squeeze(1).sub(picked).sum()  # logsumexp - the target's logit
            if not (need_h or need_w or need_b):
                continue
            grad = exp.div_(norm)  # softmax
            grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            if capped is not None:
                grad.mul_(capped.square_().neg_().add_(1.0))  # d(cap * tanh(z / cap)) / dz = 1 - tanh^2
            if need_h:
                grad_h[start:start + chunk] = (grad.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w += grad.T @ h.float()
            if need_b:
                grad_b += grad.sum(0)
        ctx.save_for_backward(*(g if g is not None else torch.empty(0) for g in (grad_h, grad_w, grad_b)))
        ctx.needs = needs
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs
        return (grad_h * grad_out.to(grad_h.dtype) if need_h else None,
                (grad_w * grad_out).to(ctx.dtypes[0]) if need_w else None,
                (grad_b * grad_out).to(ctx.dtypes[1]) if need_b else None,
                None, None, None, None)


def _liger_loss(hidden: torch.Tensor, softcap: float | None) -> Any:
    """Liger Kernel's fused linear cross-entropy (sum) on CUDA when it is installed; None otherwise."""
    if not hidden.is_cuda:
        return None
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    loss = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum", softcap=softcap)

    def call(weight: torch.Tensor, h: torch.Tensor, t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = loss(weight, h, t, bias)
        out = getattr(out, "loss", out)
        return out[0] if isinstance(out, tuple) else out

    return call
