"""Chat generation with a loaded model: messages -> prompt ids, batched HF generate, new ids -> reply text.

The one generation path of the project: the predict stage, the local LLM client (synthesis, judge, simulated
client and the simulated counselor) and `counseltune serve` all decode here, with a DecodeSettings
(models/decode.py), so a model replies alike wherever it is asked. Batches are left-padded, longest prompts first
(similar lengths share a batch, and a memory limit shows at once); the output keeps the prompt order.
"""

from __future__ import annotations

import time
from typing import Any

from counseltune.models.decode import DecodeSettings

# End-of-turn markers of the chat formats in use; one stops generation when the template writes it.
END_OF_TURN_MARKERS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")


def render(messages: list[dict[str, str]], tokenizer) -> tuple[str, list[int]]:
    """Chat messages -> the template text with the generation prompt, and its token ids."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template writes its own special tokens (a Gemma template writes <bos>): add none twice.
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


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


def generate(model, tokenizer, prompts: list[list[int]], settings: DecodeSettings, seed: int, *,
             progress: bool = True, logits_processors=None) -> tuple[list[list[int]], dict[str, Any]]:
    """Prompt token ids -> each prompt's new token ids up to its stop token (in prompt order), and speed stats.

    logits_processors, when given, is called with each batch's size and returns that batch's (fresh, stateful)
    transformers logits processors: the LLM client's schema-constrained decoding.
    """
    import torch
    from tqdm.auto import tqdm

    if not isinstance(settings, DecodeSettings):  # a dict here would silently skip the registry's checks
        raise TypeError(f"generate() takes a DecodeSettings (models/decode.py), got {type(settings).__name__}")
    stops = stop_token_ids(model, tokenizer)
    config = generation_config(settings, stops, tokenizer.pad_token_id,
                               static_cache=model.device.type == "cpu" and not _remote_code(model))
    batch_size = settings.batch_size
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


def _remote_code(model) -> bool:
    """A trust_remote_code model (Baichuan2): its own attention code may not know transformers' static cache (the
    rehearsal's Baichuan2 stand-in sized its mask for the filled positions only), so it keeps the default cache."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_remote_code", lambda: False)())


def generation_config(settings: DecodeSettings, stops: list[int], pad_token_id: int, static_cache: bool = False):
    """DecodeSettings -> a GenerationConfig (temperature 0 = greedy), nothing taken from the model's defaults.

    static_cache preallocates the KV cache: on CPU the default cache's per-step concatenation cost a quarter of
    a batch-8 decode step at 1,000 cached positions (measured on the 2-core dev box: 240 -> 180 ms a step, same
    outputs). Not on GPUs, where a static cache makes transformers compile the forward pass for every batch shape.
    """
    from transformers import GenerationConfig

    sample = not settings.greedy
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=sample,
        temperature=settings.temperature if sample else None, top_p=settings.top_p if sample else None,
        top_k=None, repetition_penalty=settings.repetition_penalty, eos_token_id=stops, pad_token_id=pad_token_id,
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
