"""Held-out dialogs -> one generated counselor reply per counselor turn, conditioned on the dialog history.

An item is one counselor turn i of a dialog of the predict split: its prompt is turns[0:i] rendered with the
model's chat template (client -> user, counselor -> assistant, system -> system) plus the generation prompt;
its reference is turns[i].text. Nothing from turn i on ever enters the prompt.

Assistant-first rule: a counselor turn is predicted only when its history holds at least one client turn. A
counselor turn that opens the dialog (AnnoMI and KMI therapists speak first) has nothing to reply to, and
transformers refuses to render an empty conversation, so it is skipped and counted (skipped_by_reason
"no_history"); it does not count against predict.max_turns_per_dialog. Later histories that start with the
counselor are rendered as they are: the ChatML template accepts an assistant-first conversation. A template
that raise_exception()s on a conversation skips that item under "template_error" (the run fails only when no
prompt at all can be rendered). A history longer than the prompt cap (predict.max_prompt_tokens, at most the
model's context minus max_new_tokens) loses its oldest turns, whole turns at a time, a leading system turn kept ("truncated_prompts");
when even the most recent turn alone is too long the item is skipped as "prompt_too_long".

Generation is models/generate.py's (batched, left-padded, with the registry's DecodeSettings); the output keeps the
item order (source, dialog_id, turn_index).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from jinja2.exceptions import TemplateError

from counseltune.config import model_params
from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import generate, hypothesis_text, prompt_token_cap, render
from counseltune.models.loader import load_chat_model
from counseltune.schemas.tables import VARIANTS, CuratedDialogs, Predictions, Turns
from counseltune.tables.io import read_table, write_table

CHAT_ROLES = {"client": "user", "counselor": "assistant", "system": "system"}


@dataclass(frozen=True)
class Item:
    """One counselor turn to predict: its dialog's history before it and the reference reply."""

    dialog_id: str
    turn_index: int
    source: str
    language: str
    history: tuple[tuple[str, str], ...]  # (role, text) of turns[0:turn_index], curated roles
    reference: str


@dataclass(frozen=True)
class Prompt:
    """An item's rendered prompt: the template text, its token ids, and whether old turns were dropped."""

    item: Item
    text: str
    ids: list[int]
    truncated: bool


def predict(params: dict, model: str, variant: str, base_dir: Path, adapter_dir: Path | None, processed_dir: Path,
            out_path: Path, *, max_prompt_tokens: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Held-out dialogs -> one generated counselor reply per counselor turn, from the history; writes predictions parquet, returns stats.

    The prompt cap is max_prompt_tokens if given, else predict.max_prompt_tokens, else the model's context;
    never more than the context minus max_new_tokens. (A long AnnoMI history would otherwise make every
    prompt thousands of tokens: far beyond the windows the adapter was trained on, and ~10x slower.)
    """
    started = time.perf_counter()
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    mp = model_params(params, model)
    decode = DecodeSettings.from_registry(model, mp["decode"])
    seed = params["predict"]["seed"]
    items, skipped = select_items(params, Path(processed_dir))
    lm, tokenizer = load_model(Path(base_dir), variant, Path(adapter_dir) if adapter_dir else None, mp)
    context_cap = prompt_token_cap(lm, tokenizer, decode.max_new_tokens)
    cap = min(context_cap, max_prompt_tokens or params["predict"].get("max_prompt_tokens") or context_cap)
    prompts, render_skipped = render_prompts(items, tokenizer, cap)
    if items and not prompts:
        raise ValueError(f"none of the {len(items)} prompts could be rendered with {base_dir}'s chat template "
                         f"within {cap} tokens: {dict(render_skipped)}")
    skipped.update(render_skipped)
    outputs, gen_stats = generate(lm, tokenizer, [p.ids for p in prompts], decode, seed, progress=progress)
    rows = [
        {"model": model, "variant": variant, "dialog_id": p.item.dialog_id, "turn_index": p.item.turn_index,
         "source": p.item.source, "language": p.item.language, "reference": p.item.reference,
         "hypothesis": hypothesis_text(tokenizer, new), "prompt_tokens": len(p.ids),
         "new_tokens": len(new)}
        for p, new in zip(prompts, outputs)
    ]
    columns = {name: col.dtype.type for name, col in Predictions.to_schema().columns.items()}
    write_table(pl.DataFrame(rows, schema=columns), Path(out_path), Predictions)
    return {
        "model": model, "variant": variant, "items": len(prompts), "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(sorted(skipped.items())), "truncated_prompts": sum(p.truncated for p in prompts),
        "prompt_token_cap": cap, "prompt_tokens": sum(len(p.ids) for p in prompts), **gen_stats,
        "wall_s": time.perf_counter() - started,
    }


def select_items(params: dict, processed_dir: Path) -> tuple[list[Item], Counter]:
    """Curated tables -> the counselor turns to predict (in source, dialog_id, turn_index order) and skip counts."""
    cfg, seed = params["predict"], params["predict"]["seed"]
    dialogs = read_table(processed_dir / "dialogs.parquet", CuratedDialogs).filter(pl.col("split") == cfg["split"])
    chosen = []
    for source in sorted(dialogs["source"].unique()):
        ids = sorted(dialogs.filter(pl.col("source") == source)["dialog_id"], key=lambda d: seeded_hash(d, seed))
        chosen += ids[: cfg["max_dialogs_per_source"]] if cfg["max_dialogs_per_source"] else ids
    dialogs = dialogs.filter(pl.col("dialog_id").is_in(chosen)).sort("source", "dialog_id")
    turns = read_table(processed_dir / "turns.parquet", Turns).filter(pl.col("dialog_id").is_in(chosen))
    by_dialog = {key[0]: df.sort("turn_index") for key, df in turns.group_by("dialog_id")}
    items, skipped = [], Counter()
    limit = cfg["max_turns_per_dialog"]
    for d in dialogs.iter_rows(named=True):
        df = by_dialog.get(d["dialog_id"])
        if df is None:
            continue
        history = list(zip(df["role"], df["text"]))
        taken = 0
        for i, (role, text) in enumerate(history):
            if role != "counselor" or (limit and taken >= limit):
                continue
            if not any(r == "client" for r, _ in history[:i]):
                skipped["no_history"] += 1
                continue
            items.append(Item(d["dialog_id"], i, d["source"], d["language"], tuple(history[:i]), text))
            taken += 1
    return items, skipped


def seeded_hash(dialog_id: str, seed: int) -> str:
    """A stable pseudo-random sort key for a dialog (same seed, same choice, on any machine)."""
    return hashlib.sha256(f"{seed}\x00{dialog_id}".encode()).hexdigest()


def render_prompts(items: list[Item], tokenizer, max_tokens: int) -> tuple[list[Prompt], Counter]:
    """Items -> chat-template prompts of at most max_tokens tokens (oldest turns dropped first) and skip counts."""
    prompts, skipped = [], Counter()
    for item in items:
        try:
            prompt = _fit_prompt(item, tokenizer, max_tokens)
        except TemplateError:  # a template may raise_exception() on a role order it refuses
            skipped["template_error"] += 1
            continue
        if prompt is None:
            skipped["prompt_too_long"] += 1
            continue
        prompts.append(prompt)
    return prompts, skipped


def _fit_prompt(item: Item, tokenizer, max_tokens: int) -> Prompt | None:
    messages = [{"role": CHAT_ROLES[role], "content": text} for role, text in item.history]
    lead = 0  # a leading system prompt is the instruction: it stays, the oldest dialog turns go first
    while lead < len(messages) - 1 and messages[lead]["role"] == "system":
        lead += 1
    text, ids = render(messages, tokenizer)
    if len(ids) <= max_tokens:
        return Prompt(item, text, ids, truncated=False)
    # Fewer kept turns never make a longer prompt: binary-search the first kept turn.
    lo, hi, best = lead + 1, len(messages) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        text, ids = render(messages[:lead] + messages[mid:], tokenizer)
        if len(ids) <= max_tokens:
            best, hi = (text, ids), mid - 1
        else:
            lo = mid + 1
    return Prompt(item, best[0], best[1], truncated=True) if best else None


def load_model(base_dir: Path, variant: str, adapter_dir: Path | None, mp: dict) -> tuple[Any, Any]:
    """A base model folder (+ the peft adapter for 'finetuned') -> (model in eval mode, left-padding tokenizer)."""
    if variant == "finetuned" and (adapter_dir is None or not (adapter_dir / "adapter_config.json").exists()):
        raise FileNotFoundError(f"variant 'finetuned' needs a peft adapter folder, got {adapter_dir} "
                                "(run the train stage first)")
    # The base folder's tokenizer for both variants: the two are scored on byte-identical prompts.
    # The shared loader: registry dtype, quantization, trust_remote_code (Baichuan2) as every stage loads them.
    return load_chat_model(Path(base_dir).name, mp, base_dir, adapter_dir if variant == "finetuned" else None)
