"""finetune(): exact resume (in-process, SIGTERM, SIGKILL), a real learning signal, outputs, errors.

Fast tests use a tiny random Llama (hidden 64, 2 layers, a 1024-token vocabulary; a tiny Gemma 3 for the
sliding-window packed masks) on a handful of dialog turns rendered with the real SmolLM2 chat template and
folded into that vocabulary (the output head of the full 49k vocabulary would dominate the step time); one
slow test trains the real SmolLM2-135M for two steps.
Torch runs single-threaded here: tiny ops on two contended threads are ~15x slower, and every run compared
for exactness must use the same thread count anyway.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from counseltune.train import checkpoint as ckpt
from counseltune.train.finetune import PREEMPTED_EXIT_CODE, FinetuneError, Preempted, finetune
from counseltune.train.model_card import CLINICAL_CAVEAT, INTENDED_USE
from counseltune.train.packing import pack

TINY_VOCAB = 1024
DIALOGS = [
    ("I can't sleep before exams.", "It sounds like the exams weigh on you at night. What goes through your mind?"),
    ("My friend stopped talking to me.", "That silence seems to hurt. When did you notice the change?"),
    ("我最近总是很焦虑。", "听起来焦虑让你很辛苦。什么时候感觉最明显？"),
    ("I want to drink less.", "You have a goal in mind. What would drinking less give you?"),
    ("工作压力太大了。", "压力好像一直压着你。能多说说工作里的情况吗？"),
    ("I argue with my mom a lot.", "The arguments take a toll. What usually starts them?"),
]
TINY = {
    "source": {"path": "tiny"}, "template": "native", "dtype": "float32", "quantization": "none",
    "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    "train": {"lr": 2e-3, "max_steps": 6, "batch_size": 2, "grad_accum": 2, "max_len": 64, "warmup_steps": 1,
              "seed": 7, "save_every": 2, "gradient_checkpointing": False, "packing": False},
}


def params_for(name: str, entry: dict, **train) -> dict:
    entry = copy.deepcopy(entry)
    entry["train"].update(train)
    return {"models": {name: entry}}


def sft_rows(tokenizer, dialogs, max_len: int, vocab: int | None = None) -> list[dict]:
    """Contract-format SFT rows: the counselor reply carries the loss, the prompt is -100; ids folded into `vocab`."""
    rows = []
    for client, counselor in dialogs:
        messages = [{"role": "user", "content": client}, {"role": "assistant", "content": counselor}]
        prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_len]
        labels = ([-100] * len(p_ids) + ids[len(p_ids):])[:len(ids)]
        if vocab:
            ids, labels = [i % vocab for i in ids], [i if i < 0 else i % vocab for i in labels]
        rows.append({"input_ids": ids, "labels": labels, "n_tokens": len(ids),
                     "n_loss_tokens": sum(x != -100 for x in labels)})
    return rows


def save_sft(tokenizer, path: Path, train_dialogs, val_dialogs, max_len: int = 64, vocab: int | None = None,
             packed_len: int | None = None) -> Path:
    """A DatasetDict train/val in the contract's columns; packed into rows of packed_len tokens when given."""
    from datasets import Dataset, DatasetDict

    splits = {}
    for name, dialogs in (("train", train_dialogs), ("val", val_dialogs)):
        rows = sft_rows(tokenizer, dialogs, max_len, vocab)
        if packed_len:
            rows = [{"input_ids": r.input_ids, "labels": r.labels, "position_ids": r.position_ids,
                     "seq_lens": r.seq_lens, "n_tokens": r.n_tokens, "n_loss_tokens": r.n_loss_tokens}
                    for r in pack(rows, packed_len)]
        if rows:  # an empty split cannot be saved and loaded back by datasets: no val split at all
            splits[name] = Dataset.from_list(rows)
    DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_base(base_model_dir, tmp_path_factory) -> Path:
    """A tiny random Llama from the SmolLM2 config, with the real tokenizer and chat template beside it."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    real = base_model_dir("smollm2-135m-instruct")
    out = tmp_path_factory.mktemp("tiny-base")
    config = LlamaConfig.from_pretrained(real)
    # initializer_range 0.2: with the default 0.02 the frozen tied head caps the logits near uniform
    config.update({"vocab_size": TINY_VOCAB, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "initializer_range": 0.2})
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(real).save_pretrained(out)
    (out / "counseltune_base.json").write_text(json.dumps({"model": "tiny", "note": "random test weights"}))
    return out


@pytest.fixture(scope="session")
def tiny_gemma(tiny_base, tmp_path_factory) -> Path:
    """A tiny random Gemma 3 text model: one sliding-window layer (window 8) and one full-attention layer."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    out = tmp_path_factory.mktemp("tiny-gemma")
    config = Gemma3TextConfig(vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"], initializer_range=0.2)
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_data(tiny_base, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    return save_sft(tokenizer, tmp_path_factory.mktemp("sft") / "tiny", DIALOGS[:5], DIALOGS[5:], vocab=TINY_VOCAB)


def paths(root: Path) -> dict:
    return {"out_dir": root / "adapter", "metrics_path": root / "metrics.json", "live_dir": root / "live",
            "checkpoint_dir": root / "checkpoints"}


def run(params, base, data, root: Path, **kw) -> dict:
    return finetune(params, "tiny", base, data, **paths(root), **kw)


def adapter_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out_dir / "adapter_model.safetensors"))


def loss_curve(live_dir: Path) -> list[tuple[int, float]]:
    with open(live_dir / "plots" / "metrics" / "train" / "loss.tsv") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh, delimiter="\t")]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = adapter_weights(a / "adapter"), adapter_weights(b / "adapter")
    assert wa.keys() == wb.keys() and wa
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-6, rtol=0)
    ca, cb = loss_curve(a / "live"), loss_curve(b / "live")
    assert [s for s, _ in ca] == [s for s, _ in cb] == list(range(1, len(ca) + 1))
    assert [v for _, v in ca] == pytest.approx([v for _, v in cb], abs=1e-6)


@pytest.fixture(scope="module")
def straight(tiny_base, tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted 6-step run: the reference for every resume test."""
    root = tmp_path_factory.mktemp("straight")
    run(params_for("tiny", TINY), tiny_base, tiny_data, root)
    return root


def test_resumed_run_matches_an_uninterrupted_run(straight, tiny_base, tiny_data, tmp_path):
    params = params_for("tiny", TINY)
    with pytest.raises(Preempted) as stopped:
        run(params, tiny_base, tiny_data, tmp_path, stop_after=3)
    assert stopped.value.code == PREEMPTED_EXIT_CODE and stopped.value.step == 3
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step-3"
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "metrics.json").exists()
    # what a SIGKILL during dvclive's in-place writes leaves behind: a torn summary and a torn row
    (tmp_path / "live" / "metrics.json").write_text('{"step": ')
    with open(tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv", "a") as fh:
        fh.write("4\t7.9")

    metrics = run(params, tiny_base, tiny_data, tmp_path)
    assert metrics["resumed_from_step"] == 3 and metrics["steps"] == 6
    assert_same_run(straight, tmp_path)
    assert metrics["final_train_loss"] == pytest.approx(json.loads((straight / "metrics.json").read_text())["final_train_loss"], abs=1e-6)


def test_outputs_hold_adapter_tokenizer_card_metrics_and_one_row_per_step(straight, tiny_base):
    from transformers import AutoTokenizer

    out = straight / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(tiny_base).chat_template
    card = (out / "README.md").read_text()
    assert CLINICAL_CAVEAT in card and INTENDED_USE in card and "random test weights" in card
    metrics = json.loads((straight / "metrics.json").read_text())
    for key in ("final_train_loss", "val_loss", "steps", "tokens_seen", "tokens_per_s", "wall_s",
                "trainable_params", "total_params", "resumed_from_step"):
        assert metrics[key] is not None, key
    assert metrics["steps"] == 6 and metrics["resumed_from_step"] == 0
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert [s for s, _ in loss_curve(straight / "live")] == [1, 2, 3, 4, 5, 6]
    with open(straight / "live" / "plots" / "metrics" / "val" / "loss.tsv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")] == [2, 4, 6]
    assert [p.name for p in ckpt.list_checkpoints(straight / "checkpoints")] == ["step-4", "step-6"]


def test_a_finished_run_restarted_rewrites_the_same_outputs_without_training(straight, tiny_base, tiny_data, tmp_path):
    import shutil

    shutil.copytree(straight / "checkpoints", tmp_path / "checkpoints")
    metrics = run(params_for("tiny", TINY), tiny_base, tiny_data, tmp_path)
    assert metrics["resumed_from_step"] == 6 and metrics["s_per_step"] is None
    assert_same_run(straight, tmp_path)


def test_checkpoints_of_other_params_are_discarded_not_resumed(straight, tiny_base, tiny_data, tmp_path):
    import shutil

    shutil.copytree(straight / "checkpoints", tmp_path / "checkpoints")
    metrics = run(params_for("tiny", TINY, lr=1e-3), tiny_base, tiny_data, tmp_path)
    assert metrics["resumed_from_step"] == 0 and metrics["steps"] == 6


def test_loss_decreases_on_a_memorization_set(tiny_base, tiny_data, tmp_path):
    entry = copy.deepcopy(TINY)
    entry["lora"].update(r=8, alpha=16, dropout=0.0,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    params = params_for("tiny", entry, lr=1e-2, max_steps=30, batch_size=5, grad_accum=1, warmup_steps=2, save_every=30)
    run(params, tiny_base, tiny_data, tmp_path)
    losses = [v for _, v in loss_curve(tmp_path / "live")]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_gradient_checkpointing_trains_and_matches_the_plain_path(straight, tiny_base, tiny_data, tmp_path):
    run(params_for("tiny", TINY, gradient_checkpointing=True), tiny_base, tiny_data, tmp_path)
    # recomputing activations changes memory, not math: same trajectory as the plain run
    assert_same_run(straight, tmp_path)


def test_the_lm_head_runs_only_at_label_tokens_and_the_run_matches_full_logits(tiny_base, tiny_data, tmp_path,
                                                                              monkeypatch):
    from counseltune.train import finetune as ft

    load, projected = ft._load_peft_model, []

    def load_with_spy(*args, **kwargs):
        net = load(*args, **kwargs)
        net.get_base_model().lm_head.register_forward_hook(lambda m, i, o: projected.append(o.shape[:-1].numel()))
        return net

    params = params_for("tiny", TINY, max_steps=3, save_every=3)
    monkeypatch.setattr(ft, "_load_peft_model", load_with_spy)
    ours = run(params, tiny_base, tiny_data, tmp_path / "ours")
    # the model's forward projects no position (the chunked loss applies the head's weight itself)
    assert projected and max(projected) == 0
    # the path before: the model's own loss over full logits; same trajectory, same val loss, same adapter
    monkeypatch.setattr(ft, "causal_lm_loss", lambda net, model, batch: net(**batch).loss)
    full = run(params, tiny_base, tiny_data, tmp_path / "full")
    assert max(projected) > 0
    for (_, a), (_, b) in zip(loss_curve(tmp_path / "ours" / "live"), loss_curve(tmp_path / "full" / "live")):
        assert a == pytest.approx(b, rel=1e-5)
    assert ours["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)
    wa, wb = adapter_weights(tmp_path / "ours" / "adapter"), adapter_weights(tmp_path / "full" / "adapter")
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6) for k in wa)


@pytest.mark.parametrize("architecture", ["tiny_base", "tiny_gemma"])
def test_packed_rows_give_the_loss_of_the_same_samples_unpacked(architecture, request, tiny_data, tmp_path):
    from transformers import AutoTokenizer

    base = request.getfixturevalue(architecture)  # Gemma 3: per-layer-type masks (sliding + full attention)
    tokenizer = AutoTokenizer.from_pretrained(base)
    packed_data = save_sft(tokenizer, tmp_path / "packed", DIALOGS[:5], DIALOGS[5:], vocab=TINY_VOCAB, packed_len=128)
    from datasets import load_from_disk

    n_rows = len(load_from_disk(str(packed_data))["train"])
    assert n_rows < 5
    # one step over every sample, with the LoRA B matrices still zero: the base model's loss, packed or not
    unpacked = run(params_for("tiny", TINY, max_steps=1, save_every=1, batch_size=5, grad_accum=1),
                   base, tiny_data, tmp_path / "unpacked")
    packed = run(params_for("tiny", TINY, max_steps=1, save_every=1, batch_size=n_rows, grad_accum=1, packing=True),
                 base, packed_data, tmp_path / "packed-run")
    assert packed["final_train_loss"] == pytest.approx(unpacked["final_train_loss"], abs=1e-5)
    assert packed["val_loss"] == pytest.approx(unpacked["val_loss"], abs=1e-5)
    assert packed["tokens_seen"] == unpacked["tokens_seen"]


def test_without_a_val_split_it_still_checkpoints_and_reports_no_val_loss(tiny_base, tmp_path):
    from transformers import AutoTokenizer

    data = save_sft(AutoTokenizer.from_pretrained(tiny_base), tmp_path / "sft", DIALOGS[:4], [], vocab=TINY_VOCAB)
    metrics = run(params_for("tiny", TINY, max_steps=4), tiny_base, data, tmp_path)
    assert metrics["val_loss"] is None and metrics["steps"] == 4
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")] == ["step-2", "step-4"]


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_qlora_without_cuda_fails_naming_the_param_and_the_fix(tiny_base, tiny_data, tmp_path, quantization):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    entry = copy.deepcopy(TINY) | {"quantization": quantization}
    with pytest.raises(FinetuneError, match=rf"models\.tiny\.quantization is '{quantization}'.*quantization: none"):
        run({"models": {"tiny": entry}}, tiny_base, tiny_data, tmp_path)
    assert not tmp_path.joinpath("checkpoints").exists()


DRIVER = textwrap.dedent("""\
    import json, sys
    import torch
    torch.set_num_threads(1)
    from counseltune.train.finetune import finetune
    args = json.loads(sys.argv[1])
    finetune(args["params"], "tiny", args["base"], args["data"],
             **{k: v for k, v in args.items() if k not in ("params", "base", "data")})
""")
LONG = 60  # steps for the out-of-process runs: long enough that a signal always lands mid-run


@pytest.fixture(scope="module")
def straight_long(tiny_base, tiny_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("straight-long")
    run(params_for("tiny", TINY, max_steps=LONG, save_every=4), tiny_base, tiny_data, root)
    return root


def start_driver(tiny_base, tiny_data, root: Path) -> subprocess.Popen:
    script = root / "driver.py"
    script.write_text(DRIVER)
    args = {"params": params_for("tiny", TINY, max_steps=LONG, save_every=4), "base": str(tiny_base),
            "data": str(tiny_data), **{k: str(v) for k, v in paths(root).items()}}
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, str(script), json.dumps(args)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(root / "driver.err", "w"))


def wait_for_step(proc: subprocess.Popen, live_dir: Path, step: int, timeout: float = 180) -> int:
    """Poll the dvclive loss file until it shows `step`; returns the newest logged step."""
    deadline = time.monotonic() + timeout
    tsv = live_dir / "plots" / "metrics" / "train" / "loss.tsv"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"driver exited early with {proc.returncode}: " + \
            (live_dir.parent / "driver.err").read_text()[-2000:]
        if tsv.exists():
            logged = [s for s, _ in loss_curve(live_dir)] if tsv.stat().st_size else []
            if logged and logged[-1] >= step:
                return logged[-1]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no step {step} logged within {timeout} s")


@pytest.mark.slow
def test_sigterm_finishes_the_step_checkpoints_exits_143_and_resume_matches(straight_long, tiny_base, tiny_data, tmp_path):
    proc = start_driver(tiny_base, tiny_data, tmp_path)
    seen = wait_for_step(proc, tmp_path / "live", 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == PREEMPTED_EXIT_CODE, (tmp_path / "driver.err").read_text()[-2000:]
    latest = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    stopped = ckpt.read_meta(latest)["step"]
    assert seen <= stopped < LONG
    assert [s for s, _ in loss_curve(tmp_path / "live")] == list(range(1, stopped + 1))

    metrics = run(params_for("tiny", TINY, max_steps=LONG, save_every=4), tiny_base, tiny_data, tmp_path)
    assert metrics["resumed_from_step"] == stopped
    assert_same_run(straight_long, tmp_path)


@pytest.mark.slow
def test_sigkill_mid_run_restarts_from_the_last_checkpoint_and_matches(straight_long, tiny_base, tiny_data, tmp_path):
    proc = start_driver(tiny_base, tiny_data, tmp_path)
    wait_for_step(proc, tmp_path / "live", 5)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    saved = ckpt.read_meta(ckpt.latest_checkpoint(tmp_path / "checkpoints"))["step"]
    assert saved % 4 == 0 and saved < LONG

    metrics = run(params_for("tiny", TINY, max_steps=LONG, save_every=4), tiny_base, tiny_data, tmp_path)
    assert metrics["resumed_from_step"] == saved
    assert_same_run(straight_long, tmp_path)  # the lost steps were recomputed, and logged once


@pytest.mark.slow
def test_real_smollm2_adapter_loads_back_and_changes_the_logits(base_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from counseltune.config import load_params

    name = "smollm2-135m-instruct"
    base = base_model_dir(name)
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    params["models"][name]["train"].update(max_steps=2, batch_size=2, grad_accum=1, max_len=64, save_every=2,
                                          warmup_steps=0, packing=False)
    tokenizer = AutoTokenizer.from_pretrained(base)
    data = save_sft(tokenizer, tmp_path / "sft", DIALOGS[:4], DIALOGS[4:5])
    stats = tmp_path / "sft-stats.json"
    stats.write_text(json.dumps({"samples": 4, "loss_token_share": 0.5}))
    metrics = finetune(params, name, base, data, **paths(tmp_path), sft_stats=stats)
    assert metrics["steps"] == 2 and metrics["val_loss"] is not None

    card = (tmp_path / "adapter" / "README.md").read_text()
    assert CLINICAL_CAVEAT in card and "loss_token_share" in card
    ids = tokenizer("I feel anxious all the time.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(base)(ids).logits
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter")
        after = tuned(ids).logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_data_order_is_a_seeded_permutation_per_epoch_that_continues_across_epochs():
    from counseltune.train.finetune import _Sampler

    first, again, other = _Sampler(5, seed=3), _Sampler(5, seed=3), _Sampler(5, seed=4)
    stream = first.take(0, 15)
    assert stream == again.take(0, 15) and stream != other.take(0, 15)
    assert all(sorted(stream[e * 5:(e + 1) * 5]) == [0, 1, 2, 3, 4] for e in range(3))
    assert _Sampler(5, seed=3).take(7, 6) == stream[7:13]  # a resumed sampler picks up mid-epoch


@pytest.mark.parametrize("return_freed", [True, False])
def test_return_freed_memory_sets_the_heap_policy_and_leaves_the_math(return_freed, straight, tiny_base, tiny_data,
                                                                      tmp_path, monkeypatch):
    from counseltune.train import finetune as ft

    calls = {"mallopt": 0, "trim": 0}
    monkeypatch.setattr(ft, "return_large_frees_to_os", lambda: calls.__setitem__("mallopt", calls["mallopt"] + 1))
    monkeypatch.setattr(ft, "_release_freed_memory", lambda: calls.__setitem__("trim", calls["trim"] + 1))
    run(params_for("tiny", TINY, return_freed_memory=return_freed), tiny_base, tiny_data, tmp_path)
    steps = TINY["train"]["max_steps"]
    assert calls == ({"mallopt": 1, "trim": steps} if return_freed else {"mallopt": 0, "trim": 0})
    assert_same_run(straight, tmp_path)  # where freed memory goes changes RSS and speed, never a value
