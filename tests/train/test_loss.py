"""The chunked loss-only-logits path gives the model's own full-logits loss and the same LoRA gradients.

Tiny random models with a small hidden size and a large vocabulary (Llama untied and tied; Gemma 3 with tied
embeddings and final logit soft-capping), LoRA through peft, packed and unpacked batches of the real collator;
the reference is the model's own `model(**batch).loss` (full logits, transformers' cross-entropy), the path
finetune used before. Chunks are made small so every batch spans several of them.
"""

from __future__ import annotations

import pytest
import torch

from counseltune.train import loss as chunked
from counseltune.train.packing import collator_for, pack

VOCAB = 8192
CHUNK_ELEMENTS = VOCAB * 7  # 7 positions per chunk: every test batch spans several chunks


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(kind: str, target_modules=("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    small = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "initializer_range": 0.2}
    torch.manual_seed(0)
    if kind == "gemma":  # tied embeddings; soft-cap 5 so the tanh bends the logits noticeably
        config = Gemma3TextConfig(**small, sliding_window=4, layer_types=["sliding_attention", "full_attention"],
                                  final_logit_softcapping=5.0)
        base = Gemma3ForCausalLM(config)
        assert base.lm_head.weight is base.model.embed_tokens.weight
    else:
        base = LlamaForCausalLM(LlamaConfig(**small, tie_word_embeddings=kind == "llama-tied"))
    base.config.use_cache = False
    net = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(target_modules),
                                          bias="none", task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    for name, p in net.named_parameters():  # LoRA B starts at zero; random B makes every gradient non-trivial
        if "lora_" in name:
            torch.nn.init.normal_(p, std=0.5)
    net.train()
    return net


def batch_for(net, packed: bool) -> dict:
    """3-4 random samples, the prompt part of each labelled -100 (loss on the reply only), collated."""
    gen = torch.Generator().manual_seed(2)
    samples = []
    for n in (19, 11, 25, 8):
        ids = torch.randint(0, VOCAB, (n,), generator=gen).tolist()
        prompt = n // 3
        samples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    rows = pack(samples, 40) if packed else samples
    return collator_for(net.get_base_model())(rows, 0, packed)


def loss_and_grads(net, compute) -> tuple[float, dict[str, torch.Tensor]]:
    net.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    return loss.item(), grads


def assert_same(net, batch) -> None:
    ref_loss, ref_grads = loss_and_grads(net, lambda: net(**batch).loss)
    new_loss, new_grads = loss_and_grads(net, lambda: chunked.causal_lm_loss(net, net, batch))
    assert new_loss == pytest.approx(ref_loss, rel=1e-5)
    assert new_grads.keys() == ref_grads.keys()
    for name, ref in ref_grads.items():
        assert ref.abs().max() > 0, name
        gap = (new_grads[name] - ref).abs().max() / ref.abs().max()
        assert gap < 1e-5, f"{name}: relative gap {gap:.1e}"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", CHUNK_ELEMENTS)


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("kind", ["llama", "llama-tied", "gemma"])
def test_loss_and_lora_gradients_equal_the_full_logits_path(kind, packed):
    net = tiny_model(kind)
    batch = batch_for(net, packed)
    assert int((batch["labels"][:, 1:] != -100).sum()) > 3 * CHUNK_ELEMENTS // VOCAB
    assert_same(net, batch)


@pytest.mark.parametrize("kind", ["llama", "gemma"])
def test_a_trainable_head_gets_the_same_weight_gradient(kind):
    # a head whose weight trains (tied: the embedding too): the fused function's weight gradient is exact
    net = tiny_model(kind)
    net.get_base_model().lm_head.weight.requires_grad_(True)
    assert_same(net, batch_for(net, packed=True))


def test_a_lora_wrapped_head_takes_the_checkpointed_chunks_and_matches():
    net = tiny_model("llama", target_modules=("q_proj", "v_proj", "lm_head"))
    head, _ = chunked.output_head(net)
    assert type(head) is not torch.nn.Linear  # peft's LoRA layer: the per-chunk checkpoint path
    assert_same(net, batch_for(net, packed=False))


def test_no_full_logits_are_materialized():
    net = tiny_model("gemma")
    batch = batch_for(net, packed=True)
    widest = []
    handle = net.get_base_model().lm_head.register_forward_hook(lambda m, i, o: widest.append(o.shape[:-1].numel()))
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        if w.shape[0] == VOCAB:
            widest.append(x.shape[:-1].numel())
        return real_linear(x, w, b)

    torch.nn.functional.linear = spy
    try:
        chunked.causal_lm_loss(net, net, batch).backward()
    finally:
        torch.nn.functional.linear = real_linear
        handle.remove()
    # the model's forward projects no position; the head then sees at most one chunk of label positions
    assert widest and max(widest) <= CHUNK_ELEMENTS // VOCAB < batch["input_ids"].numel()


def test_a_batch_without_label_tokens_gives_zero_loss_and_zero_gradients():
    net = tiny_model("llama")
    batch = batch_for(net, packed=False)
    batch["labels"][:] = -100
    value, grads = loss_and_grads(net, lambda: chunked.causal_lm_loss(net, net, batch))
    assert value == 0.0 and all(float(g.abs().max()) == 0.0 for g in grads.values())


def test_under_no_grad_it_gives_the_loss_without_gradients():
    net = tiny_model("gemma")
    batch = batch_for(net, packed=False)
    with torch.no_grad():
        ref = net(**batch).loss.item()
        new = chunked.causal_lm_loss(net, net, batch)
    assert not new.requires_grad and new.item() == pytest.approx(ref, rel=1e-5)
