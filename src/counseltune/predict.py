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

Generation is batched with left padding and a KV cache; items are sorted by prompt length so a batch holds
similar lengths, and the output keeps the item order (source, dialog_id, turn_index).
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
from counseltune.schemas.tables import VARIANTS, CuratedDialogs, Predictions, Turns
from counseltune.tables.io import read_table, write_table

CHAT_ROLES = {"client": "user", "counselor": "assistant", "system": "system"}
# End-of-turn markers of the chat formats in use; one stops generation when the template writes it.
END_OF_TURN_MARKERS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")


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
    decode = mp["decode"]
    seed = params["predict"]["seed"]
    items, skipped = select_items(params, Path(processed_dir))
    lm, tokenizer = load_model(Path(base_dir), variant, Path(adapter_dir) if adapter_dir else None, mp)
    context_cap = prompt_token_cap(lm, tokenizer, decode["max_new_tokens"])
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


def render(messages: list[dict[str, str]], tokenizer) -> tuple[str, list[int]]:
    """Chat messages -> the template text with the generation prompt, and its token ids."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template writes its own special tokens (a Gemma template writes <bos>): add none twice.
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


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
    from counseltune.models.loader import load_model as load_registry_model
    from counseltune.models.loader import load_tokenizer

    if variant == "finetuned" and (adapter_dir is None or not (adapter_dir / "adapter_config.json").exists()):
        raise FileNotFoundError(f"variant 'finetuned' needs a peft adapter folder, got {adapter_dir} "
                                "(run the train stage first)")
    # The base folder's tokenizer for both variants: the two are scored on byte-identical prompts.
    # The shared loader: registry dtype, quantization, trust_remote_code (Baichuan2) as every stage loads them.
    name = Path(base_dir).name
    tokenizer = load_tokenizer(name, mp, base_dir, padding_side="left")
    if not tokenizer.chat_template:
        raise ValueError(f"{base_dir}: the tokenizer has no chat template (the base-model stage always sets one)")
    # merged: plain weights again, no LoRA matmuls per step (kept unmerged on quantized weights)
    model = load_registry_model(name, mp, base_dir, adapter_dir if variant == "finetuned" else None,
                                merge_adapter=True)
    return model, tokenizer


def prompt_token_cap(model, tokenizer, max_new_tokens: int) -> int:
    """The longest prompt that leaves room for max_new_tokens within the model's context."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(config, "max_position_embeddings", None)]
    if 0 < tokenizer.model_max_length < 10**7:  # unset tokenizers report a huge sentinel
        limits.append(tokenizer.model_max_length)
    limit = min(x for x in limits if x) if any(limits) else 2048
    if limit <= max_new_tokens:
        raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in a {limit}-token context")
    return limit - max_new_tokens


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a reply: the generation config's and tokenizer's eos, and the template's end-of-turn."""
    ids: set[int] = set()
    eos = model.generation_config.eos_token_id
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    template = tokenizer.chat_template or ""
    for marker in END_OF_TURN_MARKERS:
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if marker in template and token_id is not None and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(ids)


def generate(model, tokenizer, prompts: list[list[int]], decode: dict, seed: int, *,
             progress: bool = True, logits_processors=None) -> tuple[list[list[int]], dict[str, Any]]:
    """Prompt token ids -> each prompt's new token ids up to its stop token (in prompt order), and speed stats.

    logits_processors, when given, is called with each batch's size and returns that batch's (fresh, stateful)
    transformers logits processors: the LLM client's schema-constrained decoding.
    """
    import torch
    from tqdm.auto import tqdm

    stops = stop_token_ids(model, tokenizer)
    config = generation_config(decode, stops, tokenizer.pad_token_id, static_cache=model.device.type == "cpu")
    batch_size = decode["batch_size"]
    # Longest first: similar lengths share a batch (little padding), and a memory limit shows at once.
    order = sorted(range(len(prompts)), key=lambda j: -len(prompts[j]))
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    outputs: list[list[int]] = [[] for _ in prompts]
    generated = padded = real = 0
    torch.manual_seed(seed)
    started = time.perf_counter()
    bar = tqdm(batches, desc="generate", unit="batch", disable=not progress)
    with torch.inference_mode():
        for batch in bar:
            enc = tokenizer.pad({"input_ids": [prompts[j] for j in batch]}, padding=True, return_tensors="pt")
            enc = {k: v.to(model.device) for k, v in enc.items()}
            extra = {"logits_processor": logits_processors(len(batch))} if logits_processors else {}
            out = model.generate(**enc, generation_config=config, **extra)
            width = enc["input_ids"].shape[1]
            padded += enc["input_ids"].numel()
            real += int(enc["attention_mask"].sum())
            for row, j in zip(out[:, width:].tolist(), batch):
                outputs[j] = _until_stop(row, stops)
                generated += len(outputs[j])
            bar.set_postfix(tok_s=f"{generated / (time.perf_counter() - started):.1f}")
    elapsed = time.perf_counter() - started
    return outputs, {
        "tokens_generated": generated, "generate_s": elapsed, "tokens_per_s": generated / elapsed if elapsed else 0.0,
        "batches": len(batches), "batch_size": batch_size,
        "prompt_padding_share": 1 - real / padded if padded else 0.0, "threads": torch.get_num_threads(),
    }


def generation_config(decode: dict, stops: list[int], pad_token_id: int, static_cache: bool = False):
    """models.<name>.decode -> a GenerationConfig (temperature 0 = greedy), nothing taken from the model's defaults.

    static_cache preallocates the KV cache: on CPU the default cache's per-step concatenation cost a quarter of
    a batch-8 decode step at 1,000 cached positions (measured on the 2-core dev box: 240 -> 180 ms a step, same
    outputs). Not on GPUs, where a static cache makes transformers compile the forward pass for every batch shape.
    """
    from transformers import GenerationConfig

    sample = decode["temperature"] > 0
    return GenerationConfig(
        max_new_tokens=decode["max_new_tokens"], do_sample=sample,
        temperature=decode["temperature"] if sample else None, top_p=decode["top_p"] if sample else None,
        top_k=None, repetition_penalty=decode["repetition_penalty"], eos_token_id=stops, pad_token_id=pad_token_id,
        use_cache=True, cache_implementation="static" if static_cache else None,
    )


def hypothesis_text(tokenizer, new_ids: list[int]) -> str:
    """New token ids -> the reply text: special tokens stripped, whitespace trimmed."""
    # A reply cut by max_new_tokens can end inside a multi-byte character: drop that half character.
    return tokenizer.decode(new_ids, skip_special_tokens=True).rstrip("\ufffd").strip()


def _until_stop(row: list[int], stops: list[int]) -> list[int]:
    for k, token in enumerate(row):
        if token in stops:
            return row[:k]
    return row
