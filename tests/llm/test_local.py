"""The local backend with the real embedded SmolLM2 model: batched replies, tokenizer counts, the cache."""

from __future__ import annotations

import pytest

from counseltune.llm import ChatRequest, Reply, make_client
from counseltune.models.generate import render


def local_config(model_dir, cache_dir) -> dict:
    return {"backend": "local", "model": "smollm2-135m-instruct", "model_dir": str(model_dir),
            "cache_dir": str(cache_dir), "batch_size": 2}


@pytest.mark.slow
def test_local_replies_are_generated_counted_and_cached(base_model_dir, tmp_path):
    model_dir = base_model_dir("smollm2-135m-instruct")
    requests = [ChatRequest.of([{"role": "system", "content": "You are a supportive counselor."},
                                {"role": "user", "content": text}], max_tokens=12)
                for text in ("I feel anxious before exams.", "我最近睡不好。", "My number is 13812345678, call me.")]
    client = make_client(local_config(model_dir, tmp_path / "cache"))
    replies = client.complete(requests, desc="local")

    assert all(isinstance(r, Reply) and r.text and not r.cached for r in replies), replies
    prompt_tokens = [len(render([{"role": r, "content": c} for r, c in q.messages], client._tokenizer)[1])
                     for q in requests]
    assert [r.tokens_in for r in replies] == prompt_tokens
    assert all(0 < r.tokens_out <= 12 for r in replies)
    assert client.usage.requests == 3 and client.usage.cost_usd == 0
    assert client.usage.tokens_in == sum(prompt_tokens)
    # Nothing leaves the machine, so nothing is redacted by default.
    assert client.usage.redactions == 0
    assert any("13812345678" in p.read_text(encoding="utf-8") for p in (tmp_path / "cache").rglob("*.json"))

    again = make_client(local_config(model_dir, tmp_path / "cache"))
    cached = again.complete(requests)
    assert [r.text for r in cached] == [r.text for r in replies] and all(r.cached for r in cached)
    assert again.usage.cache_hits == 3 and again.usage.requests == 0
    assert again._lm is None  # a fully cached run never loads the model


@pytest.mark.slow
def test_local_greedy_replies_do_not_depend_on_the_batch(base_model_dir, tmp_path):
    model_dir = base_model_dir("smollm2-135m-instruct")
    request = ChatRequest.of([{"role": "user", "content": "Say hello."}], max_tokens=8)
    other = ChatRequest.of([{"role": "user", "content": "Describe a calm evening by the sea in detail."}],
                           max_tokens=8)
    alone = make_client(local_config(model_dir, tmp_path / "a")).complete([request])
    batched = make_client(local_config(model_dir, tmp_path / "b")).complete([other, request])
    assert batched[1].text == alone[0].text


@pytest.mark.slow
def test_a_sampled_reply_does_not_depend_on_its_batch_or_on_resuming(base_model_dir, tmp_path):
    model_dir = base_model_dir("smollm2-135m-instruct")

    def ask(text: str, seed: int = 7) -> ChatRequest:
        return ChatRequest.of([{"role": "user", "content": text}], max_tokens=8, temperature=1.0, top_p=0.95,
                              seed=seed)

    # One prompt shorter and one longer than the target, so the target's row in the batch moves with the order.
    target, short, long = ask("Tell me about your day."), ask("Hi."), ask("Describe a calm evening by the sea.")
    reseeded = ask("Tell me about your day.", seed=8)

    def run(folder: str, requests: list[ChatRequest]) -> list[str]:
        config = {**local_config(model_dir, tmp_path / folder), "batch_size": len(requests)}
        replies = make_client(config).complete(requests)
        assert all(isinstance(r, Reply) and not r.cached for r in replies), replies
        return [r.text for r in replies]

    [alone] = run("alone", [target])                      # e.g. the one request left when a killed run resumes
    batched = run("batched", [short, target, long])
    reordered = run("reordered", [long, reseeded, short, target])
    assert batched[1] == reordered[3] == alone
    assert (batched[0], batched[2]) == (reordered[2], reordered[0])
    assert reordered[1] != alone  # ...and it samples: another seed, another reply


def test_a_base_and_a_finetuned_local_client_share_one_copy_of_the_base_weights(tmp_path):
    """Fidelity's two counselors of one model: one resident base copy; the base one computes as the base alone."""
    import torch
    from peft import LoraConfig, get_peft_model

    from counseltune.models import loader, resident
    from tests.models import tiny_study_base

    name = "llama-3.1-8b-instruct"
    entry, base = tiny_study_base(name, tmp_path)
    lora = LoraConfig(r=4, target_modules=list(entry["lora"]["target_modules"]), init_lora_weights=False,
                      task_type="CAUSAL_LM")
    torch.manual_seed(0)  # random (non-zero) LoRA weights: the adapter changes the replies
    get_peft_model(loader.load_model(name, entry, base), lora).save_pretrained(tmp_path / "adapter")
    request = ChatRequest.of([{"role": "user", "content": "I feel low."}], max_tokens=8)
    config = {**local_config(base, tmp_path / "cache"), "model": name}
    resident._HELD.clear()
    try:
        tuned = make_client({**config, "adapter_dir": str(tmp_path / "adapter")})
        plain = make_client(config)
        tuned_reply, plain_reply = tuned.complete([request])[0], plain.complete([request])[0]
        assert tuned._held is plain._held and resident.resident_count() == 1
        resident._HELD.clear()  # the base alone, loaded afresh
        alone = make_client({**config, "cache_dir": str(tmp_path / "other")}).complete([request])[0]
    finally:
        resident._HELD.clear()
    assert isinstance(plain_reply, Reply) and plain_reply.text == alone.text
    assert isinstance(tuned_reply, Reply) and tuned_reply.text != plain_reply.text
