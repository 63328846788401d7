"""The predict stage through a model server (predict.engine: served) instead of transformers in this process.

Items, prompts and the prompt cap are predict's own (select_items, render_prompts with the base folder's
tokenizer, prompt_token_cap with its config): only the generation moves to an OpenAI-compatible server that
serves the base model as <model> and the LoRA adapter as <model>-finetuned (`counseltune serve`, or vLLM with
--enable-lora, SGLang, llama.cpp). Each item's kept history goes out as chat messages, through the LLM client:
cached (a re-run asks nothing), `concurrency` requests in flight, retried, accounted. A greedy served prediction
equals the in-process one (tests/test_predict_served.py).

predict.served.start true: the stage starts `counseltune serve` for its model (serve_process.py), waits for its
health, and stops it after; only when the cache cannot answer everything. false: predict.served.base_url (or the
COUNSELTUNE_SERVED_URL that `counseltune serve --then` sets) names a running server (waited for up to
health_timeout_s), which must serve the weights of this stage's --base/--adapter folders: their fingerprint is in
the cache key.

Differences from in-process, all counted in the stats: an empty reply is retried by the client and then written
as an empty hypothesis (empty_replies); a failed request is skipped as served_<reason>; sampled decoding
(temperature > 0) draws from each request's seed, so it does not reproduce the in-process samples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl

from counseltune.config import model_params
from counseltune.errors import CounseltuneError
from counseltune.llm.served import ServedClient
from counseltune.llm.served import served_client as served_client_for
from counseltune.llm.types import ChatRequest, Failure, Reply
from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import prompt_token_cap, render
from counseltune.predict import CHAT_ROLES, Prompt, render_prompts, select_items
from counseltune.schemas.tables import VARIANTS, Predictions
from counseltune.tables.io import write_table

PROMPT_VERSION = "predict-v1"   # in the cache key: bump when the prompt rendering changes
log = logging.getLogger(__name__)


def predict_served(params: dict, model: str, variant: str, base_dir: Path, adapter_dir: Path | None,
                   processed_dir: Path, out_path: Path) -> dict[str, Any]:
    """predict() with the generation on a server; writes the same predictions parquet, returns stats."""
    started = time.perf_counter()
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "finetuned" and (adapter_dir is None or not (Path(adapter_dir) / "adapter_config.json").exists()):
        raise FileNotFoundError(f"variant 'finetuned' needs a peft adapter folder, got {adapter_dir} "
                                "(run the train stage first)")
    decode = DecodeSettings.from_registry(model, model_params(params, model)["decode"])
    items, skipped = select_items(params, Path(processed_dir))
    tokenizer, context_cap = prompt_tokenizer(Path(base_dir), decode.max_new_tokens)
    cap = min(context_cap, params["predict"].get("max_prompt_tokens") or context_cap)
    prompts, render_skipped = render_prompts(items, tokenizer, cap)
    if items and not prompts:
        raise ValueError(f"none of the {len(items)} prompts could be rendered with {base_dir}'s chat template "
                         f"within {cap} tokens: {dict(render_skipped)}")
    skipped.update(render_skipped)
    requests = [ChatRequest.of(prompt_messages(p, tokenizer), max_tokens=decode.max_new_tokens,
                               temperature=decode.temperature, top_p=decode.top_p,
                               repetition_penalty=decode.repetition_penalty, seed=params["predict"]["seed"],
                               prompt_version=PROMPT_VERSION, tag=f"predict {p.item.dialog_id}#{p.item.turn_index}")
                for p in prompts]
    client = served_client(params, model, variant, Path(base_dir), Path(adapter_dir) if adapter_dir else None)
    try:
        results = client.complete(requests, desc=f"predict {model} {variant} (served)") if requests else []
    finally:
        client.close()  # a server the client started is stopped

    rows, written, empty, mismatched = [], [], 0, 0
    for p, result in zip(prompts, results):
        if isinstance(result, Failure) and not is_empty_reply(result):
            skipped[f"served_{result.reason}"] += 1
            log.warning("predict %s#%d: no reply (%s: %s)", p.item.dialog_id, p.item.turn_index, result.reason,
                        result.detail)
            continue
        text, new_tokens = ("", 0) if isinstance(result, Failure) else (result.text, result.tokens_out)
        empty += isinstance(result, Failure)
        mismatched += isinstance(result, Reply) and result.tokens_in != len(p.ids)
        written.append(p)
        rows.append({"model": model, "variant": variant, "dialog_id": p.item.dialog_id,
                     "turn_index": p.item.turn_index, "source": p.item.source, "language": p.item.language,
                     "reference": p.item.reference, "hypothesis": text.rstrip("\ufffd").strip(),
                     "prompt_tokens": len(p.ids), "new_tokens": new_tokens})
    if prompts and not rows:
        reasons = {k: v for k, v in skipped.items() if k.startswith("served_")}
        raise ServedPredictError(f"predict {model} ({variant}): the server at {client.config.base_url} answered none "
                                 f"of {len(prompts)} requests ({reasons}); check the server's log and that it serves "
                                 f"{client.served_name!r}")
    if mismatched:
        log.warning("predict %s (%s): %d replies were generated from a prompt of another length than the one "
                    "rendered here: the server uses another tokenizer or chat template", model, variant, mismatched)
    columns = {name: col.dtype.type for name, col in Predictions.to_schema().columns.items()}
    write_table(pl.DataFrame(rows, schema=columns), Path(out_path), Predictions)
    wall = time.perf_counter() - started
    generated = sum(r["new_tokens"] for r in rows)
    return {
        "model": model, "variant": variant, "engine": "served", "served_model": client.served_name,
        "base_url": client.config.base_url, "items": len(rows), "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(sorted(skipped.items())), "truncated_prompts": sum(p.truncated for p in written),
        "prompt_token_cap": cap, "prompt_tokens": sum(len(p.ids) for p in written), "tokens_generated": generated,
        "tokens_per_s": generated / wall if wall else 0.0, "empty_replies": empty,
        "prompt_token_mismatches": mismatched, "usage": asdict(client.usage), "wall_s": wall,
    }


class ServedPredictError(CounseltuneError):
    """The server answered none of the stage's requests."""


def is_empty_reply(failure: Failure) -> bool:
    """The LLM client refuses an empty reply as data; predict keeps it (the model ended its turn at once)."""
    return failure.reason == "malformed" and failure.detail == "empty content"


def served_client(params: dict, model: str, variant: str, base_dir: Path, adapter_dir: Path | None) -> ServedClient:
    """The LLM client for this stage's served model, from predict.served (and the server starter when start)."""
    mp = model_params(params, model)
    return served_client_for(params["predict"]["served"], "predict.served", model, mp, base_dir,
                             adapter_dir if variant == "finetuned" else None)


def prompt_tokenizer(base_dir: Path, max_new_tokens: int) -> tuple[Any, int]:
    """The base folder's tokenizer (predict renders with it for both variants) and the model's prompt cap, without
    loading any weights."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"{base_dir}: the tokenizer has no chat template (the base-model stage always sets one)")
    config = AutoConfig.from_pretrained(base_dir)
    return tokenizer, prompt_token_cap(SimpleNamespace(config=config), tokenizer, max_new_tokens)


def prompt_messages(prompt: Prompt, tokenizer) -> list[dict[str, str]]:
    """The chat messages whose rendering is the prompt predict chose: its whole history, or (truncated) the leading
    system turns plus the newest turns that fit. Checked against the prompt's text, so they cannot drift apart."""
    messages = [{"role": CHAT_ROLES[role], "content": text} for role, text in prompt.item.history]
    if prompt.truncated:
        lead = 0
        while lead < len(messages) - 1 and messages[lead]["role"] == "system":
            lead += 1
        # predict kept the oldest first turn whose prompt fit its cap; no older start gives a prompt this short
        lo, hi = lead + 1, len(messages) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if len(render(messages[:lead] + messages[mid:], tokenizer)[1]) <= len(prompt.ids):
                hi = mid
            else:
                lo = mid + 1
        messages = messages[:lead] + messages[lo:]
    if render(messages, tokenizer)[0] != prompt.text:
        raise RuntimeError(f"{prompt.item.dialog_id}#{prompt.item.turn_index}: the served prompt's messages do not "
                           "render to the prompt predict chose (predict's truncation rule changed?)")
    return messages
