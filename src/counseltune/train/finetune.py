"""LoRA / QLoRA fine-tuning of one registry model on its SFT dataset: resumable, exact, preemption-safe.

finetune() is a plain training loop (no HF Trainer) run through accelerate, so the same code trains on a CPU
box (float32), on one GPU (bf16 mixed precision where supported) and under `accelerate launch` (DDP).
The loss is the mean over every label token != -100 of the optimizer step (across micro-batches and ranks),
with logits computed only at those tokens, in chunks (loss.py: never the full [tokens x vocabulary] logits);
AdamW, linear warmup + cosine decay, gradient clipping at MAX_GRAD_NORM, train.grad_accum micro-batches.

Preemption: on SIGTERM (what SLURM sends before killing a preempted or timed-out job) or SIGUSR1
(`#SBATCH --signal=B:USR1@120`), the current optimizer step finishes, a checkpoint is saved and the process
exits with code 143 (PREEMPTED_EXIT_CODE = 128 + SIGTERM; `Preempted` is a SystemExit carrying it). A cluster
profile treats 143 as "requeue / retry"; the rerun resumes from that checkpoint. (Under `accelerate launch` /
torchrun every rank exits 143 at the same step, but the launcher itself reports a generic failure, exit 1: there,
rely on SLURM's requeue or Snakemake's --retries; the checkpoint is what makes the retry cheap.) After a SIGKILL
the rerun resumes from the last periodic checkpoint (every train.save_every steps and at the last step) and
recomputes the lost steps identically.

Resume is exact: a run interrupted at any step and restarted gives the same adapter weights and the same loss
curve as an uninterrupted run with the same seed. A checkpoint holds the adapter weights, AdamW and scheduler
state, the RNG states of python/numpy/torch(/CUDA) per rank, the data position (samples consumed; each epoch's
order is torch.randperm from a Generator seeded with train.seed + epoch) and the per-step metric history,
which is replayed into the dvclive folder on resume (so no step is ever duplicated, even if DVC removed it).
Checkpoints carry a fingerprint of the base model, the data, the params that shape the result (all of lora and
train except save_every and gradient_checkpointing) and the process count; ones that do not match the current
run are removed and training starts over. The final step is checkpointed too, so a job killed while writing its
outputs only rewrites them.

Metrics (metrics_path): final_train_loss, val_loss (mean over val label tokens; null without a val split), steps,
tokens_seen (real, non-pad tokens over the whole run), tokens_per_s and s_per_step (this invocation's loop wall
time, evals and checkpoints included, over the steps it ran), train_s, wall_s, trainable_params, total_params,
resumed_from_step (0 = fresh start), device, mixed_precision, num_processes.

Checkpoint layout (checkpoint.py makes each folder appear atomically; the newest two are kept):
    <checkpoint_dir>/step-<N>/adapter/          peft adapter (adapter_config.json, adapter_model.safetensors)
    <checkpoint_dir>/step-<N>/optimizer.pt      AdamW state
    <checkpoint_dir>/step-<N>/scheduler.pt      LR scheduler state
    <checkpoint_dir>/step-<N>/rng-<rank>.pt     RNG states of each process
    <checkpoint_dir>/step-<N>/checkpoint.json   step, samples_seen, tokens_seen, fingerprint, history (written last)
    <checkpoint_dir>/latest                     "step-<N>" of the newest complete checkpoint
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from counseltune.config import model_params
from counseltune.errors import CounseltuneError
from counseltune.train import checkpoint as ckpt
from counseltune.train.heap import release_freed_memory as _release_freed_memory
from counseltune.train.heap import return_large_frees_to_os
from counseltune.train.loss import causal_lm_loss

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped on request, checkpoint saved, run me again"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
KEEP_CHECKPOINTS = 2
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.0
MODEL_INPUTS = ("input_ids", "labels", "attention_mask", "position_ids")


class FinetuneError(CounseltuneError, ValueError):
    """The run cannot start as configured; the message names the param or input and what to do."""


class Preempted(SystemExit):
    """Raised once a stop request (signal or stop_after) has been honoured and the checkpoint saved."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step
        self.checkpoint = checkpoint


def finetune(params: dict, model: str, base_dir: Path, data_dir: Path, out_dir: Path, metrics_path: Path,
             live_dir: Path, checkpoint_dir: Path, *, sft_stats: Path | None = None,
             collate_fn: Callable[..., dict[str, torch.Tensor]] | None = None,
             stop_after: int | None = None) -> dict:
    """LoRA-train one model on its SFT dataset; write the adapter (+ tokenizer + model card) to out_dir; return final metrics.

    Resumes from the newest matching checkpoint in checkpoint_dir. `stop_after=k` behaves like a SIGTERM
    arriving during step k (checkpoint, then Preempted). `collate_fn(rows, pad_id, packed)` defaults to
    counseltune.train.packing's collator for this model (its mask layout and dtype). Packed data (rows with
    position_ids / seq_lens) is refused for a model whose attention ignores the block mask (PackingError).
    """
    t_start = time.perf_counter()
    mp = model_params(params, model)
    train = mp["train"]
    _check_quantization(model, mp)
    base_dir, data_dir, out_dir, checkpoint_dir = Path(base_dir), Path(data_dir), Path(out_dir), Path(checkpoint_dir)

    from accelerate import Accelerator
    from datasets import load_from_disk
    from transformers import set_seed

    from counseltune.models.loader import load_tokenizer

    # train.return_freed_memory: the step's freed activations leave RSS at once (heap.py), a lower peak bought
    # with page faults (gemma3-270m 3.94 -> 3.37 GiB, steps 1.25x slower; benchmarks/RESULTS.md)
    return_freed = bool(train.get("return_freed_memory", False))
    if return_freed:
        return_large_frees_to_os()
    with _stop_requests() as stop:
        accelerator = Accelerator(mixed_precision=mixed_precision(mp))
        set_seed(train["seed"])
        data = load_from_disk(str(data_dir))
        train_rows, val_rows = _splits(data, data_dir)
        packed = "seq_lens" in train_rows.column_names or "position_ids" in train_rows.column_names
        tokenizer = load_tokenizer(model, mp, base_dir)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        net = _load_peft_model(model, mp, base_dir, accelerator)
        collate_fn = collate_fn or _collator(net.get_base_model(), packed)
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        total = sum(p.numel() for p in net.parameters())
        fingerprint = _fingerprint(mp, base_dir, data_dir, accelerator)
        resume_from = _matching_checkpoint(checkpoint_dir, fingerprint, accelerator)

        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=train["lr"],
                                      weight_decay=WEIGHT_DECAY)
        scheduler = _scheduler(optimizer, train)
        state = _State()
        if resume_from is not None:
            _load_adapter(net, resume_from)
        net.train()  # from_pretrained leaves eval mode; LoRA dropout must be live from the first step
        net, optimizer = accelerator.prepare(net, optimizer)
        if resume_from is not None:
            state = _restore(resume_from, optimizer, scheduler, accelerator)
            log.info("%s: resuming from %s (step %d)", model, resume_from, state.step)

        live = _open_live(live_dir, state.history) if accelerator.is_main_process else None
        sampler = _Sampler(len(train_rows), train["seed"])
        loader = _Loader(train_rows, sampler, collate_fn, pad_id, packed, train["batch_size"], train["grad_accum"],
                         accelerator.num_processes, accelerator.process_index)
        saved_step = resumed_from = state.step
        t_loop, steps_here, tokens_here = time.perf_counter(), 0, 0
        bar = _progress(model, train["max_steps"], state.step, accelerator.is_main_process)
        try:
            while state.step < train["max_steps"]:
                if _stop_requested(stop, stop_after, state.step, accelerator):
                    where = None
                    if state.step > saved_step:
                        where = _save(checkpoint_dir, net, optimizer, scheduler, state, fingerprint, accelerator)
                    raise Preempted(state.step, where or ckpt.latest_checkpoint(checkpoint_dir))
                t_step = time.perf_counter()
                batches, tokens = loader.step(state.samples_seen)
                loss, lr = _train_step(net, optimizer, scheduler, batches, accelerator)
                if return_freed:
                    _release_freed_memory()
                tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum").item())
                state.step += 1
                state.samples_seen += loader.samples_per_step
                state.tokens_seen += tokens
                steps_here, tokens_here = steps_here + 1, tokens_here + tokens
                record = {"step": state.step, "train/loss": loss, "train/lr": lr,
                          "train/tokens_per_s": tokens / max(time.perf_counter() - t_step, 1e-9)}
                periodic = state.step % train["save_every"] == 0 or state.step == train["max_steps"]
                if periodic:
                    val = _evaluate(net, val_rows, collate_fn, pad_id, packed, train["batch_size"], accelerator)
                    if val is not None:
                        record["val/loss"] = val
                state.history.append(record)
                if live is not None:
                    _log_step(live, record)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if periodic:
                    _save(checkpoint_dir, net, optimizer, scheduler, state, fingerprint, accelerator)
                    saved_step = state.step
            train_s = time.perf_counter() - t_loop
            unwrapped = accelerator.unwrap_model(net)
            metrics = {
                "model": model, "final_train_loss": state.history[-1]["train/loss"],
                "val_loss": state.history[-1].get("val/loss"), "steps": state.step,
                "tokens_seen": state.tokens_seen,
                "tokens_per_s": tokens_here / train_s if steps_here else None,
                "s_per_step": train_s / steps_here if steps_here else None,
                "train_s": train_s, "wall_s": time.perf_counter() - t_start,
                "trainable_params": trainable, "total_params": total, "resumed_from_step": resumed_from,
                "device": str(accelerator.device), "mixed_precision": accelerator.mixed_precision,
                "num_processes": accelerator.num_processes,
            }
            if accelerator.is_main_process:
                _write_outputs(out_dir, unwrapped, tokenizer, model, mp, metrics, base_dir, sft_stats)
                ckpt.write_text_atomic(Path(metrics_path), json.dumps(metrics, indent=2) + "\n")
                if live is not None:
                    for key in ("final_train_loss", "val_loss", "tokens_per_s"):
                        if metrics[key] is not None:
                            live.summary[f"final/{key}"] = metrics[key]
            accelerator.wait_for_everyone()
            return metrics
        finally:
            bar.close()
            if live is not None:
                live.end()
            del optimizer, net
            accelerator.free_memory()
            gc.collect()


@dataclass
class _State:
    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class _Sampler:
    """An endless stream of row indices: epoch e is torch.randperm(n) from a Generator seeded with seed + e."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, []

    def take(self, start: int, count: int) -> list[int]:
        out: list[int] = []
        pos = start
        while len(out) < count:
            epoch, offset = divmod(pos, self.n)
            if epoch != self._epoch:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator).tolist()
            k = min(count - len(out), self.n - offset)
            out += self._perm[offset:offset + k]
            pos += k
        return out


@dataclass
class _Loader:
    """Cuts one optimizer step's global batch (batch_size x processes x grad_accum rows) into this rank's micro-batches."""

    rows: Any
    sampler: _Sampler
    collate: Callable[..., dict[str, torch.Tensor]]
    pad_id: int
    packed: bool
    batch_size: int
    grad_accum: int
    world: int
    rank: int

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.world * self.grad_accum

    def step(self, samples_seen: int) -> tuple[list[dict[str, torch.Tensor]], int]:
        """This rank's micro-batches for the step starting at samples_seen, and their real (non-pad) tokens."""
        indices = self.sampler.take(samples_seen, self.samples_per_step)
        batches, tokens = [], 0
        for micro in range(self.grad_accum):
            start = (micro * self.world + self.rank) * self.batch_size
            rows = _rows(self.rows, indices[start:start + self.batch_size])
            tokens += sum(int(r["n_tokens"]) if "n_tokens" in r else len(r["input_ids"]) for r in rows)
            batches.append(self.collate(rows, self.pad_id, self.packed))
        return batches, tokens


def _rows(dataset: Any, indices: list[int]) -> list[dict[str, Any]]:
    columns = dataset[indices]
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]


def _train_step(net: Any, optimizer: Any, scheduler: Any, batches: list[dict[str, torch.Tensor]],
                accelerator: Any) -> tuple[float, float]:
    """One optimizer step over the micro-batches; returns (loss over all label tokens of the step, lr used)."""
    world = accelerator.num_processes
    counts = [_label_tokens(b) for b in batches]
    n_global = accelerator.reduce(torch.tensor(sum(counts), device=accelerator.device), "sum").item()
    n_global = max(int(n_global), 1)
    lr = scheduler.get_last_lr()[0]
    step_loss = torch.zeros((), device=accelerator.device)
    model = accelerator.unwrap_model(net)
    for i, (batch, n) in enumerate(zip(batches, counts)):
        last = i == len(batches) - 1
        sync = contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(net)
        with sync:
            # the mean over this micro-batch's label tokens (logits only there: loss.py); rescale it to this
            # batch's share of the step's tokens (x world, since DDP averages gradients over ranks)
            loss = causal_lm_loss(net, model, _to_device(batch, accelerator)) * (n * world / n_global)
            accelerator.backward(loss)
        step_loss += loss.detach() / world
    accelerator.clip_grad_norm_(net.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(step_loss, "sum").item()), float(lr)


def _evaluate(net: Any, rows: Any, collate: Callable, pad_id: int, packed: bool, batch_size: int,
              accelerator: Any) -> float | None:
    """Mean loss over every label token of the val split (each rank takes every world-th row); None when empty."""
    if rows is None or len(rows) == 0:
        return None
    model = accelerator.unwrap_model(net)
    model.eval()
    mine = list(range(accelerator.process_index, len(rows), accelerator.num_processes))
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(mine), batch_size):
            batch = collate(_rows(rows, mine[start:start + batch_size]), pad_id, packed)
            n = _label_tokens(batch)
            if n:
                loss = causal_lm_loss(model, model, _to_device(batch, accelerator))
                total += torch.tensor([loss.double().item() * n, n], dtype=torch.float64, device=accelerator.device)
    model.train()
    loss_sum, count = accelerator.reduce(total, "sum").tolist()
    return loss_sum / count if count else None


def _label_tokens(batch: dict[str, torch.Tensor]) -> int:
    # causal LMs shift labels by one inside the loss: label position 0 is never predicted
    return int((batch["labels"][:, 1:] != -100).sum())


def _to_device(batch: dict[str, Any], accelerator: Any) -> dict[str, Any]:
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)

    def move(value: Any) -> Any:
        if isinstance(value, dict):  # per-layer-type masks (hybrid sliding/full attention models)
            return {k: move(v) for k, v in value.items()}
        value = value.to(accelerator.device)
        if half is not None and value.dim() == 4 and value.is_floating_point():
            value = value.to(half)  # under autocast the queries are half precision; sdpa wants the mask to match
        return value

    return {k: move(v) for k, v in batch.items() if k in MODEL_INPUTS}


def _collator(model: Any, packed: bool) -> Callable[..., dict[str, Any]]:
    """packing.collate laid out for this model; packed data first proves the model honours the block mask."""
    from counseltune.train.packing import assert_packing_supported, collator_for

    if packed:
        assert_packing_supported(model)
    return collator_for(model)


def _stop_requested(stop: dict[str, Any], stop_after: int | None, step: int, accelerator: Any) -> bool:
    local = stop["signal"] is not None or (stop_after is not None and step >= stop_after)
    if accelerator.num_processes == 1:
        return local
    # every rank must stop at the same step, whichever of them got the signal
    return bool(accelerator.reduce(torch.tensor(int(local), device=accelerator.device), "sum").item())


@contextlib.contextmanager
def _stop_requests() -> Iterator[dict[str, Any]]:
    """Turn SIGTERM/SIGUSR1 into a flag the loop checks between steps (handlers restored on exit)."""
    flag: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: Any) -> None:
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _save(checkpoint_dir: Path, net: Any, optimizer: Any, scheduler: Any, state: _State, fingerprint: str,
          accelerator: Any) -> Path:
    """Write step-<state.step>/ (every rank adds its RNG state; the main process writes the rest and commits)."""
    if accelerator.is_main_process:
        ckpt.begin_checkpoint(checkpoint_dir, state.step)
    accelerator.wait_for_everyone()
    tmp = ckpt.temp_path(checkpoint_dir, state.step)
    torch.save(ckpt.rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(net).save_pretrained(tmp / "adapter")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        meta = {"samples_seen": state.samples_seen, "tokens_seen": state.tokens_seen, "fingerprint": fingerprint,
                "num_processes": accelerator.num_processes, "history": state.history}
        ckpt.commit_checkpoint(tmp, state.step, meta, keep=KEEP_CHECKPOINTS)
    accelerator.wait_for_everyone()
    return Path(checkpoint_dir) / f"step-{state.step}"


def _load_adapter(net: Any, checkpoint: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "adapter" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(net, weights)
    unexpected = list(getattr(result, "unexpected_keys", []))
    if unexpected:
        raise FinetuneError(f"{checkpoint}: adapter weights do not fit the model ({unexpected[:3]} ...)")


def _restore(checkpoint: Path, optimizer: Any, scheduler: Any, accelerator: Any) -> _State:
    meta = ckpt.read_meta(checkpoint)
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    rng = checkpoint / f"rng-{accelerator.process_index}.pt"
    ckpt.set_rng_state(torch.load(rng if rng.exists() else checkpoint / "rng-0.pt", weights_only=True))
    return _State(step=meta["step"], samples_seen=meta["samples_seen"], tokens_seen=meta["tokens_seen"],
                  history=meta["history"])


def _matching_checkpoint(checkpoint_dir: Path, fingerprint: str, accelerator: Any) -> Path | None:
    """The newest checkpoint made by this same configuration; checkpoints of another one are removed."""
    if accelerator.is_main_process:
        latest = ckpt.latest_checkpoint(checkpoint_dir)
        if latest is not None and ckpt.read_meta(latest).get("fingerprint") != fingerprint:
            log.warning("%s: checkpoints were made with other params, base model or data; starting over", checkpoint_dir)
            ckpt.clear_checkpoints(checkpoint_dir)
    accelerator.wait_for_everyone()
    return ckpt.latest_checkpoint(checkpoint_dir)


def _fingerprint(mp: dict[str, Any], base_dir: Path, data_dir: Path, accelerator: Any) -> str:
    """Hash of what determines the trajectory: params (not save_every / gradient_checkpointing / return_freed_memory),
    base, data, world."""
    train = {k: v for k, v in mp["train"].items()
             if k not in ("save_every", "gradient_checkpointing", "return_freed_memory")}
    h = hashlib.sha256(json.dumps({"train": train, "lora": mp["lora"], "dtype": mp.get("dtype"),
                                   "quantization": mp.get("quantization"), "world": accelerator.num_processes,
                                   "mixed_precision": accelerator.mixed_precision}, sort_keys=True).encode())
    for name in ("config.json", "counseltune_base.json"):
        if (base_dir / name).exists():
            h.update((base_dir / name).read_bytes())
    for path in sorted(base_dir.glob("*.safetensors")) + sorted(base_dir.glob("*.bin")):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    for path in sorted(data_dir.rglob("*.arrow")):
        h.update(str(path.relative_to(data_dir)).encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _check_quantization(name: str, mp: dict[str, Any]) -> None:
    """The shared loader's refusal (QLoRA without CUDA or bitsandbytes), before any data is read."""
    from counseltune.models.loader import ModelLoadError, check_quantization

    try:
        check_quantization(name, mp)
    except ModelLoadError as err:
        raise FinetuneError(str(err)) from None


def mixed_precision(mp: dict[str, Any]) -> str:
    """accelerate's mixed_precision for this model on this machine: no (CPU), fp16 or bf16."""
    if not torch.cuda.is_available():
        return "no"
    if mp.get("dtype") == "float16" or not torch.cuda.is_bf16_supported():
        return "fp16"
    return "bf16"


def _load_peft_model(name: str, mp: dict[str, Any], base_dir: Path, accelerator: Any) -> Any:
    """The base model (quantized for QLoRA) with fresh LoRA layers from models.<name>.lora."""
    from peft import LoraConfig, get_peft_model

    from counseltune.models.loader import load_model

    quant, gc_on = mp.get("quantization", "none"), bool(mp["train"]["gradient_checkpointing"])
    # The shared loader: registry dtype (float32 for CPU training), 4-/8-bit on this rank's GPU, trust_remote_code
    # from the base folder's provenance (Baichuan2's custom code).
    base = load_model(name, mp, base_dir, purpose="training",
                      device_map={"": accelerator.local_process_index} if quant != "none" else None)
    if quant != "none":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=gc_on,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gc_on:
        _enable_checkpointing(base)
        base.enable_input_require_grads()  # frozen embeddings: checkpointed blocks need an input that requires grad
    lora = mp["lora"]
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["target_modules"]), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(base, config)


def _enable_checkpointing(model: Any) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _scheduler(optimizer: Any, train: dict[str, Any]) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=train["warmup_steps"],
                                           num_training_steps=train["max_steps"])


def _splits(data: Any, data_dir: Path) -> tuple[Any, Any]:
    if "train" not in data or len(data["train"]) == 0:
        raise FinetuneError(f"{data_dir}: no rows in a 'train' split (build it with the SFT stage first)")
    missing = {"input_ids", "labels"} - set(data["train"].column_names)
    if missing:
        raise FinetuneError(f"{data_dir}: the train split lacks columns {sorted(missing)}")
    return data["train"], data.get("val")


def _open_live(live_dir: Path, history: list[dict[str, Any]]) -> Any:
    """A dvclive logger whose per-step files hold exactly the checkpoint's history, its step counter continuing it.

    Not Live(resume=True): after a SIGKILL the folder can hold steps past the checkpoint, a torn .tsv row and a
    torn summary JSON (dvclive writes them in place), which resume=True chokes on; and DVC may have removed the
    folder. Starting clean and replaying the checkpoint's history gives the same files without those hazards.
    """
    from dvclive import Live

    live = Live(dir=str(live_dir), resume=False, dvcyaml=False, save_dvc_exp=False, report=None)
    for record in history:
        _log_step(live, record, summary=False)
    if history:
        live.make_summary()
    return live


def _log_step(live: Any, record: dict[str, Any], summary: bool = True) -> None:
    live.step = record["step"]
    for key, value in record.items():
        if key != "step":
            live.log_metric(key, value)
    if summary:
        live.make_summary()


def _progress(model: str, total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"finetune {model}", unit="step", disable=not enabled)


def _write_outputs(out_dir: Path, net: Any, tokenizer: Any, model: str, mp: dict[str, Any], metrics: dict[str, Any],
                   base_dir: Path, sft_stats: Path | None) -> None:
    """Adapter + tokenizer (chat template included) + README.md model card, swapped into out_dir whole."""
    from counseltune.train.model_card import render_model_card

    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    net.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    provenance = _read_json(base_dir / "counseltune_base.json")
    stats = _read_json(Path(sft_stats)) if sft_stats else None
    card = render_model_card(model, mp, _finite(metrics), provenance=provenance, sft_stats=stats)
    (tmp / "README.md").write_text(card, encoding="utf-8")  # replaces peft's generic card
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
