"""Shared helpers for the training tests: the real SmolLM2 tokenizer, strict templates, loss-span decoding."""

from __future__ import annotations

from pathlib import Path

from counseltune.train.render import IGNORE

# A template in the style of Gemma/Mistral: user first, strict user/assistant alternation, no system role.
STRICT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def load_tokenizer(folder: Path, template: str | None = None):
    """The real tokenizer of a base model folder, optionally with another chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if template is not None:
        tok.chat_template = template
    return tok


def loss_runs(tokenizer, sample) -> list[str]:
    """Decoded maximal runs of consecutive loss tokens of one sample."""
    runs: list[list[int]] = [[]]
    for token, label in zip(sample.input_ids, sample.labels):
        if label != IGNORE:
            assert label == token, "a label must be the token at its own position"
            runs[-1].append(label)
        elif runs[-1]:
            runs.append([])
    return [tokenizer.decode(r, skip_special_tokens=False) for r in runs if r]


def turns(*pairs: tuple[str, str]) -> list[dict]:
    """(role, text) pairs -> the turn dicts render_dialog takes."""
    return [{"role": role, "text": text} for role, text in pairs]
