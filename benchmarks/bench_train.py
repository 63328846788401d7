"""Benchmark: sequence packing and LoRA training throughput, with results as ratios to a same-run baseline.

Two measurements, for the issue's targets:

1. Padding. The share of processed tokens that are real (not padding) on the CPsyCounD length distribution:
   the full corpus (read with `counseltune.ingest.run.read_source` from --raw-root/CPsyCounD/Data when it is
   there, else the curated cpsycound dialogs of --processed), --dialogs dialogs chosen evenly over the sorted
   dialog ids (deterministic), rendered into SFT samples with `render_split` / `render_dialog` and the real
   SmolLM2-135M-Instruct chat template, at max_len 256 (the default run) and 1024. Packed
   (`packing.pack`, first-fit decreasing; efficiency = real tokens / (rows x max_len)) against the baseline,
   naive padding (every sample padded to max_len), plus padding each batch of 4 to its longest sample
   (`padded_batch_efficiency`) for information. Target: >= 0.95 with packing. The default run's own train
   split (--processed) is shown as well, for information.

2. Throughput. Real (non-pad) tokens/s of OUR training step, `counseltune.train.finetune.finetune` on a packed
   SFT dataset built with `build_dataset` (packing on) from a subset of the same dialogs, against the baseline:
   a plain `transformers.Trainer` on the unpacked samples of the same dataset padded to max_len by a simple
   pad collator. Same model (fp32, the default attention), same LoRA config (peft, from params.yaml), same
   batch size (4), max_len (256), number of steps (--steps), AdamW (non-fused), lr schedule and clipping, same
   torch thread count. Each repeat starts both as fresh Python processes and, once both are set up, runs them
   in lockstep: one optimizer step each in turn (a token passed over a pipe), so they never overlap and meet
   the same neighbours on this shared machine. Each step is timed from its start to the end of its optimizer
   step (finetune's `_Loader.step` / `_train_step` and the Trainer's callbacks / `compute_loss` are wrapped in
   the worker processes only). Reported: steps 2..N summed over the repeats (step 1 is the warm-up), per
   repeat, and the fastest single step. Target: >= 1.5x.

Everything is written to a temporary directory (never to data/, models/ or metrics/). Results go to --out
(benchmarks/RESULTS.md) between `<!-- bench_train:start -->` and `<!-- bench_train:end -->`; other sections are
left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ensure_model, machine, markers, write_section

ROOT = Path(__file__).resolve().parents[1]
START, END = markers("bench_train")
MODEL = "smollm2-135m-instruct"
SOURCE = "cpsycound"
MAX_LENS = (256, 1024)
TRAIN_MAX_LEN, BATCH = 256, 4
TARGET_EFFICIENCY, TARGET_SPEEDUP = 0.95, 1.5


def log(message: str) -> None:
    print(f"[bench_train] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- setup




def load_corpus(params: dict, raw_root: Path, processed: Path) -> tuple[Any, Any, str]:
    """CPsyCounD (dialogs, turns): the full corpus under raw_root when present, else the curated sample."""
    import polars as pl

    raw = raw_root / "CPsyCounD" / "Data"
    if raw.is_dir():
        from counseltune.ingest.run import read_source

        p = copy.deepcopy(params)
        p["sources"] = {SOURCE: {**params["sources"][SOURCE], "path": str(raw)}}
        tables = read_source(p, SOURCE, raw)
        return tables.dialogs, tables.turns, f"full CPsyCounD (`{raw_root / 'CPsyCounD' / 'Data'}`, read_source)"
    from counseltune.schemas.tables import CuratedDialogs, Turns

    from counseltune.tables.io import read_table

    log(f"{raw} not found: using the curated cpsycound dialogs of {processed}")
    dialogs = read_table(processed / "dialogs.parquet", CuratedDialogs).filter(pl.col("source") == SOURCE)
    turns = read_table(processed / "turns.parquet", Turns)
    return dialogs, turns, f"curated cpsycound sample (`{processed}`; the full corpus was not found)"


def evenly_spaced(ids: list[str], n: int) -> list[str]:
    """n ids spread evenly over the sorted ids (all of them when there are fewer)."""
    ids = sorted(ids)
    if len(ids) <= n:
        return ids
    step = len(ids) / n
    return [ids[int(k * step)] for k in range(n)]


# --------------------------------------------------------------------------------------------- 1. padding


def padding_row(tokenizer, turns, dialog_ids: list[str], max_len: int, label: str) -> dict[str, Any]:
    """Render the dialogs at max_len, pack them, and compare real-token shares: packed vs padded."""
    import numpy as np

    from counseltune.train.packing import (
        pack,
        packing_efficiency,
        padded_batch_efficiency,
    )
    from counseltune.train.render import RenderReport
    from counseltune.train.sft_data import render_split

    report = RenderReport()
    t0 = time.perf_counter()
    samples = render_split(tokenizer, turns, dialog_ids, max_len, report, desc=f"bench-train render {max_len}")
    render_s = time.perf_counter() - t0
    lengths = [s.n_tokens for s in samples]
    t0 = time.perf_counter()
    rows = pack(samples, max_len)
    pack_s = time.perf_counter() - t0
    arr = np.asarray(lengths)
    return {
        "label": label, "max_len": max_len, "dialogs": len(dialog_ids), "samples": len(samples),
        "windowed_dialogs": report.windowed_dialogs, "tokens": int(arr.sum()),
        "mean": float(arr.mean()), "p5": float(np.percentile(arr, 5)), "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)), "at_max": int((arr >= max_len - 8).sum()),
        "rows": len(rows), "packed": packing_efficiency(lengths, len(rows), max_len),
        "naive": packing_efficiency(lengths, len(lengths), max_len),
        "padded_batches": padded_batch_efficiency(lengths, BATCH), "render_s": render_s, "pack_s": pack_s,
    }


# --------------------------------------------------------------------------------------------- 2. throughput


def bench_params(params: dict, steps: int) -> dict:
    """params.yaml with the model's train block set for the benchmark (steps, max_len 256, batch 4, no val)."""
    p = copy.deepcopy(params)
    train = p["models"][MODEL]["train"]
    train.update(max_steps=steps, save_every=steps, max_len=TRAIN_MAX_LEN, batch_size=BATCH, grad_accum=1,
                 packing=True, gradient_checkpointing=False)
    p["sft"] = {**p["sft"], "val_fraction_of_train": 0.0}
    return p


def build_train_data(tokenizer, dialogs, turns, params: dict, tmp: Path) -> dict[str, Any]:
    """The same dialogs -> a packed and an unpacked SFT dataset (build_dataset) saved under tmp."""
    import polars as pl

    from counseltune.train.sft_data import build_dataset, save_dataset

    dialogs = dialogs.with_columns(pl.lit("train").alias("split"))  # every chosen dialog trains; no val split
    out = {}
    for packed in (True, False):
        p = copy.deepcopy(params)
        p["models"][MODEL]["train"]["packing"] = packed
        data, stats = build_dataset(tokenizer, [(dialogs, turns)], p, MODEL)
        path = tmp / ("sft-packed" if packed else "sft-unpacked")
        save_dataset(data, path)
        out["packed" if packed else "unpacked"] = {"path": str(path), "rows": len(data["train"]),
                                                   "stats": stats["splits"]["train"]}
    return out


def _threads(n: int) -> int:
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def cpu_busy_s() -> float:
    """Machine-wide busy CPU seconds so far (all processes, all CPUs), from /proc/stat; 0 where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in (fields + ["0"] * 8)[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait_s: float, threshold: float = 0.3, sample_s: float = 3.0) -> float:
    """Wait (up to max_wait_s) until other processes use under `threshold` CPUs; returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = cpu_busy_s()
        time.sleep(sample_s)
        others = (cpu_busy_s() - b0) / sample_s  # this process is idle meanwhile
        if others < threshold or time.monotonic() >= deadline:
            return others
        log(f"  other processes use {others:.1f} CPUs: waiting for a quieter machine "
            f"({deadline - time.monotonic():.0f} s left) ...")
        time.sleep(10)


class Lockstep:
    """Take turns with the other worker: one optimizer step each, never at the same time.

    The token is a byte on a pipe. A worker holds it from the start of a step (before its data is loaded) through
    its between-step work, and passes it on only when it wants the next step, so nothing of one worker overlaps
    the other's timed step. Without a spec (a run on its own) it does nothing.
    """

    def __init__(self, spec: dict[str, Any] | None):
        self.spec, self.held, self.started = spec, False, False

    def acquire(self) -> None:
        if self.spec is None or self.held:
            return
        if not self.started:  # set-up done: tell the parent, which starts the turns once both are ready
            Path(self.spec["ready"]).touch()
            self.started = True
        if not os.read(self.spec["read_fd"], 1):
            raise RuntimeError("lockstep: the token pipe closed")
        self.held = True

    def release(self) -> None:
        if self.spec is not None and self.held:
            os.write(self.spec["write_fd"], b"t")
            self.held = False


def _mark(step: dict[str, Any], when: str) -> None:
    step[f"wall_{when}"], step[f"cpu_{when}"], step[f"busy_{when}"] = time.perf_counter(), time.process_time(), cpu_busy_s()


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss: KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(job: dict[str, Any]) -> dict[str, Any]:
    """finetune() on the packed dataset; each step timed from its start (data loading) to its optimizer step.

    job["full_logits"]: the loss as finetune computed it before train/loss.py, the model's own loss over the
    full [tokens x vocabulary] logits, and no malloc_trim after each step (the reference for memory and loss).
    job["glibc_heap"]: glibc's default (dynamic) mmap threshold instead of train/heap.py's fixed one (peak RSS
    before that change; computed values are the same)."""
    threads = _threads(job["threads"])
    from counseltune.train import finetune as ft

    if job.get("full_logits"):  # the step as it was: the model's own loss, no malloc_trim after the step
        ft.causal_lm_loss = lambda net, model, batch: net(**batch).loss
        ft._release_freed_memory = lambda: None
    if job.get("full_logits") or job.get("glibc_heap"):  # glibc's dynamic mmap threshold, as before train/heap.py
        ft.return_large_frees_to_os = lambda: False

    lock = Lockstep(job.get("lockstep"))
    steps: list[dict[str, Any]] = []
    loader_step, train_step = ft._Loader.step, ft._train_step

    def timed_loader(self, samples_seen):
        lock.release()
        lock.acquire()
        step: dict[str, Any] = {}
        _mark(step, "start")
        batches, tokens = loader_step(self, samples_seen)
        rows = ft._rows(self.rows, self.sampler.take(samples_seen, self.samples_per_step))
        step.update(tokens=tokens, processed=sum(int(b["input_ids"].numel()) for b in batches),
                    samples=sum(len(r.get("seq_lens") or [0]) for r in rows))
        steps.append(step)
        return batches, tokens

    def timed_train(*args, **kwargs):
        result = train_step(*args, **kwargs)
        _mark(steps[-1], "end")
        steps[-1]["loss"] = result[0]
        return result

    ft._Loader.step, ft._train_step = timed_loader, timed_train
    tmp = Path(job["tmp"])
    try:
        metrics = ft.finetune(job["params"], job.get("model", MODEL), Path(job["base_dir"]), Path(job["data"]),
                              tmp / "adapter", tmp / "metrics.json", tmp / "live", tmp / "checkpoints")
    finally:
        lock.release()
    return {"kind": "full" if job.get("full_logits") else "ours", "threads": threads, "steps": steps,
            "final_loss": metrics["final_train_loss"], "val_loss": metrics["val_loss"],
            "trainable_params": metrics["trainable_params"], "peak_rss_mib": peak_rss_mib()}


def worker_trainer(job: dict[str, Any]) -> dict[str, Any]:
    """A plain transformers Trainer on the unpacked samples, each padded to max_len; same LoRA, model, steps."""
    threads = _threads(job["threads"])
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    mp = job["params"]["models"][job.get("model", MODEL)]
    train, lora = mp["train"], mp["lora"]
    base_dir, max_len = Path(job["base_dir"]), int(train["max_len"])
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = load_from_disk(job["data"])["train"].select_columns(["input_ids", "labels"])

    def pad_to_max(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.full((len(features), max_len), pad_id, dtype=torch.long)
        labels = torch.full((len(features), max_len), -100, dtype=torch.long)
        mask = torch.zeros((len(features), max_len), dtype=torch.long)
        for b, f in enumerate(features):
            n = len(f["input_ids"])
            ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    lock = Lockstep(job.get("lockstep"))
    steps: list[dict[str, Any]] = []

    class CountingTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            steps[-1].update(tokens=int(inputs["attention_mask"].sum()), processed=int(inputs["input_ids"].numel()),
                             samples=int(inputs["input_ids"].shape[0]))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    class StepClock(TrainerCallback):
        """Step k+1 starts when step k ends: its batch is fetched and the loop's logging runs inside its time."""

        def on_step_begin(self, args, state, control, **kwargs):
            if not steps:  # the first step (later steps start in on_step_end)
                lock.acquire()
                steps.append({})
                _mark(steps[-1], "start")

        def on_step_end(self, args, state, control, **kwargs):
            _mark(steps[-1], "end")
            if state.global_step < state.max_steps:
                lock.release()
                lock.acquire()
                steps.append({})
                _mark(steps[-1], "start")

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    base.config.use_cache = False
    model = get_peft_model(base, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                            target_modules=list(lora["target_modules"]), bias="none",
                                            task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=job["tmp"], per_device_train_batch_size=int(train["batch_size"]), gradient_accumulation_steps=1,
        max_steps=int(train["max_steps"]), learning_rate=float(train["lr"]), lr_scheduler_type="cosine",
        warmup_steps=int(train["warmup_steps"]), weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
        seed=int(train["seed"]), logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        disable_tqdm=True)
    trainer = CountingTrainer(model=model, args=args, train_dataset=rows, data_collator=pad_to_max,
                              callbacks=[StepClock()])
    try:
        trainer.train()
    finally:
        lock.release()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"kind": "trainer", "threads": threads, "steps": steps, "final_loss": losses[-1] if losses else None,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_rss_mib": peak_rss_mib()}


WORKERS = {"ours": worker_ours, "trainer": worker_trainer}
KINDS = ("ours", "trainer")


def run_pair(jobs: dict[str, dict[str, Any]], first: str) -> dict[str, dict[str, Any]]:
    """Run both workers as fresh processes in lockstep (one step each in turn, `first` first); their results."""
    fds = {kind: os.pipe() for kind in KINDS}  # kind -> (read, write) of the pipe carrying that kind's token
    procs, paths = {}, {}
    with contextlib.ExitStack() as stack:
        try:
            _drive_pair(jobs, first, fds, procs, paths, stack)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for r, w in fds.values():
                os.close(r)
                os.close(w)
    return {kind: steady(json.loads(paths[kind][1].read_text(encoding="utf-8"))) for kind in KINDS}


def _drive_pair(jobs: dict[str, dict[str, Any]], first: str, fds: dict[str, tuple[int, int]], procs: dict[str, Any],
                paths: dict[str, tuple[Path, Path]], stack: contextlib.ExitStack) -> None:
    """Start both workers, give the first one the token once both are ready, and wait for both to finish."""
    for kind in KINDS:
        other = KINDS[1 - KINDS.index(kind)]
        run_dir = Path(jobs[kind]["tmp"])
        run_dir.mkdir(parents=True, exist_ok=True)
        job = {**jobs[kind], "lockstep": {"read_fd": fds[kind][0], "write_fd": fds[other][1],
                                          "ready": str(run_dir / "ready")}}
        paths[kind] = (run_dir / "job.json", run_dir / "result.json")
        paths[kind][0].write_text(json.dumps(job), encoding="utf-8")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--job", str(paths[kind][0]),
               "--result", str(paths[kind][1])]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        log_file = stack.enter_context(open(run_dir / "worker.log", "w", encoding="utf-8"))  # noqa: SIM115
        procs[kind] = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       pass_fds=(fds[kind][0], fds[other][1]))
    started, done = False, set()
    while len(done) < len(KINDS):
        for kind, proc in procs.items():
            if kind in done or proc.poll() is None:
                continue
            if proc.returncode != 0:
                raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}):\n"
                                   f"{(Path(jobs[kind]['tmp']) / 'worker.log').read_text()[-4000:]}")
            done.add(kind)
            for other in KINDS:  # a finished worker takes no more turns: never leave the other waiting
                if other not in done:
                    os.write(fds[other][1], b"t" * 64)
        if not started and all((Path(jobs[k]["tmp"]) / "ready").exists() for k in KINDS):
            os.write(fds[first][1], b"t")  # both set up: the turns begin
            started = True
        time.sleep(0.2)


def steady(r: dict[str, Any]) -> dict[str, Any]:
    """Steps 2..N (step 1 is the warm-up): real and processed tokens over the summed step times."""
    s = r["steps"]
    if len(s) < 2:
        raise SystemExit("--steps must be at least 2 (step 1 is the warm-up)")
    rest = s[1:]
    walls = [x["wall_end"] - x["wall_start"] for x in rest]
    cpus = [x["cpu_end"] - x["cpu_start"] for x in rest]
    busy = [x["busy_end"] - x["busy_start"] for x in rest]
    wall, cpu = sum(walls), sum(cpus)
    tokens, processed = sum(x["tokens"] for x in rest), sum(x["processed"] for x in rest)
    r.update(steady_s=wall, steady_cpu_s=cpu, steady_tokens=tokens, steady_processed=processed,
             tok_s=tokens / wall, tok_cpu_s=tokens / cpu, processed_tok_s=processed / wall,
             real_share=tokens / processed, s_per_step=wall / len(rest), step_walls=walls,
             fastest_step_tok_s=max(x["tokens"] / w for x, w in zip(rest, walls)),
             first_step_s=s[0]["wall_end"] - s[0]["wall_start"], samples_per_step=statistics.mean(x["samples"] for x in s),
             cpu_per_wall=cpu / wall, others_cpus=max(0.0, (sum(busy) - cpu) / wall))
    return r


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Steady numbers of one kind summed over all its runs."""
    wall = sum(r["steady_s"] for r in runs)
    cpu = sum(r["steady_cpu_s"] for r in runs)
    tokens, processed = sum(r["steady_tokens"] for r in runs), sum(r["steady_processed"] for r in runs)
    n = sum(len(r["steps"]) - 1 for r in runs)
    busy_others = sum(r["others_cpus"] * r["steady_s"] for r in runs)
    return {"tok_s": tokens / wall, "tok_cpu_s": tokens / cpu, "processed_tok_s": processed / wall,
            "real_share": tokens / processed, "s_per_step": wall / n, "processed_per_step": processed / n,
            "tokens_per_step": tokens / n, "cpu_per_wall": cpu / wall, "others_cpus": busy_others / wall,
            "fastest_step_tok_s": max(r["fastest_step_tok_s"] for r in runs),
            "best_run_tok_s": max(r["tok_s"] for r in runs), "steps": n,
            "samples_per_step": statistics.mean(r["samples_per_step"] for r in runs),
            "first_step_s": min(r["first_step_s"] for r in runs), "final_loss": runs[0]["final_loss"],
            "threads": runs[0]["threads"]}


def measure_throughput(params: dict, base_dir: Path, data: dict[str, Any], tmp: Path, steps: int, repeats: int,
                       threads: int, quiet_wait_s: float) -> dict[str, Any]:
    p = bench_params(params, steps)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    ratios = []
    for r in range(repeats):
        first = KINDS[r % 2]
        log(f"repeat {r + 1}/{repeats}: ours and the Trainer in lockstep, {first} first ({steps} steps each, batch "
            f"{BATCH}, max_len {TRAIN_MAX_LEN}, {threads} threads, two fresh processes) ...")
        others = wait_for_quiet(quiet_wait_s)
        jobs = {kind: {"params": p, "base_dir": str(base_dir), "threads": threads, "tmp": str(tmp / f"{kind}-{r}"),
                       "data": data["packed" if kind == "ours" else "unpacked"]["path"]} for kind in KINDS}
        pair = run_pair(jobs, first)
        for kind, res in pair.items():
            res["others_before"] = others
            runs[kind].append(res)
            log(f"  {kind}: {res['tok_s']:.0f} real tok/s steady ({res['s_per_step']:.2f} s/step, real share "
                f"{res['real_share']:.1%}, CPU/wall {res['cpu_per_wall']:.2f}, other processes "
                f"{res['others_cpus']:.2f} CPUs); final loss {res['final_loss']:.3f}")
        ratios.append(pair["ours"]["tok_s"] / pair["trainer"]["tok_s"])
        log(f"  ratio {ratios[-1]:.2f}x")
    return {"pooled": {kind: pooled(v) for kind, v in runs.items()}, "runs": runs, "ratios": ratios,
            "steps": steps, "repeats": repeats}


# --------------------------------------------------------------------------------------------- 3. loss-only logits

LOGITS_MODELS = ("gemma3-270m", "smollm2-135m-instruct")
TARGET_RSS_GIB = {"gemma3-270m": 3.5}  # issue 15: the default run's gemma3-270m fine-tune peaked at 7.7 GiB
TARGET_LOGITS_SPEEDUP = {"gemma3-270m": 1.3, "smollm2-135m-instruct": 1.0}
LOSS_RTOL = 1e-4


def sample_processed(params: dict, tmp: Path) -> Path:
    """data/processed of the bundled sample, built by the real ingest and curate steps (as tests/conftest.py)."""
    from counseltune.curate.run import curate
    from counseltune.ingest.run import ingest_source

    for name, source in params["sources"].items():
        ingest_source(params, name, ROOT / source["path"], tmp / "interim" / name, tmp / "stats" / f"{name}.json")
    curate(params, tmp / "interim", tmp / "processed", tmp / "stats" / "curate.json")
    return tmp / "processed"


def sample_sft_data(params: dict, model: str, base_dir: Path, processed: Path, tmp: Path) -> dict[str, Any]:
    """The sft_data stage's output for the sample (packed, as params.yaml says) and the same samples unpacked."""
    from counseltune.train.sft_data import build_sft_data

    out = {}
    for packed in (True, False):
        p = copy.deepcopy(params)
        p["models"][model]["train"]["packing"] = packed
        kind = "packed" if packed else "unpacked"
        stats = build_sft_data(p, model, base_dir, processed, tmp / f"sft-{model}-{kind}", tmp / f"sft-{model}-{kind}.json")
        train = stats["splits"]["train"]
        out[kind] = {"path": str(tmp / f"sft-{model}-{kind}"),
                     "rows": train["packed_rows"] if packed else train["samples"], "stats": train}
    return out


def run_alone(job: dict[str, Any], kind: str) -> dict[str, Any]:
    """One worker as a fresh process on its own (no lockstep); its steady-step result."""
    run_dir = Path(job["tmp"])
    run_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = run_dir / "job.json", run_dir / "result.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--job", str(job_path),
           "--result", str(result_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(run_dir / "worker.log", "w", encoding="utf-8") as log_file:
        proc = subprocess.run(cmd, cwd=run_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}):\n{(run_dir / 'worker.log').read_text()[-4000:]}")
    return steady(json.loads(result_path.read_text(encoding="utf-8")))


def measure_logits(params: dict, model: str, base_dir: Path, data: dict[str, Any], tmp: Path, threads: int,
                   quiet_wait_s: float) -> dict[str, Any]:
    """One model at its default train settings: ours (loss-only logits) and the plain Trainer in lockstep, then
    ours with the full-logits loss alone; peak RSS of each process, steady real tokens/s, per-step losses."""
    steps = int(params["models"][model]["train"]["max_steps"])
    log(f"{model}: ours and the Trainer in lockstep ({steps} steps each, default train settings) ...")
    wait_for_quiet(quiet_wait_s)
    jobs = {kind: {"params": params, "model": model, "base_dir": str(base_dir), "threads": threads,
                   "tmp": str(tmp / f"{model}-{kind}"),
                   "data": data["packed" if kind == "ours" else "unpacked"]["path"]} for kind in KINDS}
    pair = run_pair(jobs, "ours")
    log(f"{model}: ours with the full-logits loss, alone ...")
    wait_for_quiet(quiet_wait_s)
    full = run_alone({**jobs["ours"], "tmp": str(tmp / f"{model}-full"), "full_logits": True}, "ours")
    ours, trainer = pair["ours"], pair["trainer"]
    losses = [(a["loss"], b["loss"]) for a, b in zip(ours["steps"], full["steps"])]
    gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in losses)
    for kind, r in (("ours", ours), ("trainer", trainer), ("full", full)):
        log(f"  {kind}: {r['tok_s']:.0f} real tok/s steady, peak RSS {r['peak_rss_mib'] / 1024:.2f} GiB, "
            f"final loss {r['final_loss']:.4f}")
    return {"model": model, "steps": steps, "train": params["models"][model]["train"], "ours": ours,
            "trainer": trainer, "full": full, "loss_gap": gap, "val_gap": _rel(ours.get("val_loss"), full.get("val_loss")),
            "data": {k: {"rows": v["rows"], "loss_token_share": v["stats"].get("loss_token_share")}
                     for k, v in data.items()},
            "vocab": _vocab(base_dir)}


def _rel(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else abs(a - b) / max(abs(b), 1e-12)


def _vocab(base_dir: Path) -> int | None:
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    return config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")


def logits_verdicts(results: dict[str, Any]) -> list[str]:
    out = []
    for m in results["logits"]:
        o, f, b = m["ours"], m["full"], m["trainer"]
        same = len(o["steps"]) == len(f["steps"]) == m["steps"] and m["loss_gap"] <= LOSS_RTOL
        target = TARGET_RSS_GIB.get(m["model"])
        rss = o["peak_rss_mib"] / 1024
        if target is not None:
            out.append(f"{m['model']} fine-tune peak RSS <= {target:g} GiB: **{'met' if rss <= target else 'not met'}** "
                       f"({rss:.2f} GiB vs {f['peak_rss_mib'] / 1024:.2f} GiB with full logits, "
                       f"{f['peak_rss_mib'] / o['peak_rss_mib']:.2f}x less)")
        out.append(f"{m['model']} same steps and loss to {LOSS_RTOL:g} as the full-logits path: "
                   f"**{'met' if same else 'not met'}** ({len(o['steps'])} vs {len(f['steps'])} steps; largest "
                   f"relative per-step loss gap {m['loss_gap']:.1e}; final loss {o['final_loss']:.5f} vs "
                   f"{f['final_loss']:.5f})")
        speed = TARGET_LOGITS_SPEEDUP.get(m["model"])
        ratio = o["tok_s"] / b["tok_s"]
        if speed is not None:
            out.append(f"{m['model']} real tokens/s >= {speed:g}x the plain Trainer: "
                       f"**{'met' if ratio >= speed else 'not met'}** ({ratio:.2f}x: {o['tok_s']:.0f} vs "
                       f"{b['tok_s']:.0f} tok/s over steps 2..{m['steps']}; full-logits finetune alone "
                       f"{f['tok_s']:.0f} tok/s, {f['tok_s'] / b['tok_s']:.2f}x)")
    return out


def render_logits(results: dict[str, Any]) -> str:
    start, end = markers("bench_train_logits")
    m = results["machine"]
    lines = [
        start,
        "## Train: logits only where the loss is (peak RSS and throughput, SmolLM2-135M and Gemma 3 270M, CPU)",
        "",
        f"- Date: {m['date']}",
        (f"- Machine: {m['nproc']} CPUs (**{m['cpu']}**), {m['ram']} RAM, {m['os']}; Python {m['python']}, torch "
         f"{m['torch']}, transformers {m['transformers']}, peft {m['peft']}, accelerate {m['accelerate']}; load "
         f"average at the end {m['load']} (a shared machine)"),
        f"- Command: `{results['command']}`",
        ("- Method: per model, the default train settings of params.yaml (`models.<m>.train`) on the sft_data "
         "output of the bundled sample (`data/sample` -> ingest -> curate -> `build_sft_data`, packed as params.yaml "
         "says; no synthetic sessions). Three fresh processes: *ours* = `finetune()` (the LM head only on label "
         "positions, chunked cross-entropy: `train/loss.py`; freed memory handed back to the OS at once "
         "(`train/heap.py`) where the model's `train.return_freed_memory` says so: gemma3-270m yes, SmolLM2 no); "
         "*full logits* = the same `finetune()` with the step as before (the model's own loss over full "
         "[tokens x vocabulary] logits, glibc's default heap); the baseline *Trainer* "
         "= a plain `transformers.Trainer` on the same samples unpacked, each padded to max_len (loss on counselor "
         "tokens only, full logits). Ours and the Trainer run in lockstep (one optimizer step each in turn, as "
         "above); the full-logits run alone afterwards. Peak RSS = `ru_maxrss` of each process at its end (model "
         "load, training, evaluation and checkpoints included). tokens/s = real (non-pad) tokens of steps 2..N "
         "over their summed step times (step 1 is the warm-up)."),
        "",
        ("| model | vocab | steps | run | peak RSS GiB | real tok/s (steady) | vs Trainer | s / step "
         "| final train loss | val loss |"),
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["logits"]:
        b = r["trainer"]
        for label, x in (("plain Trainer (baseline)", b), ("finetune(), full logits (before)", r["full"]),
                         ("**finetune(), loss-only logits (ours)**", r["ours"])):
            val = x.get("val_loss")
            lines.append(
                f"| {r['model']} | {r['vocab']:,} | {len(x['steps'])} | {label} | {x['peak_rss_mib'] / 1024:.2f} "
                f"| {x['tok_s']:.0f} | {x['tok_s'] / b['tok_s']:.2f}x | {x['s_per_step']:.2f} | {x['final_loss']:.5f} "
                f"| {'-' if val is None else f'{val:.5f}'} |")
    lines += ["", "### Verdict", "", *[f"- {v}" for v in logits_verdicts(results)]]
    notes = results.get("notes")
    if notes:
        lines += ["", "### Notes", "", *[f"- {x}" for x in notes]]
    lines.append(end)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- report






def verdicts(results: dict[str, Any]) -> list[str]:
    main = [r for r in results["padding"] if r["label"] == "cpsycound"]
    out = []
    for r in main:
        ok = r["packed"] >= TARGET_EFFICIENCY
        out.append(f"Real-token share with packing >= {TARGET_EFFICIENCY:.2f} at max_len {r['max_len']} (CPsyCounD): "
                   f"**{'met' if ok else 'not met'}** ({r['packed']:.3f}; naive padding {r['naive']:.3f}, "
                   f"{r['packed'] / r['naive']:.3f}x)")
    t = results.get("throughput")
    if t:
        o, b = t["pooled"]["ours"], t["pooled"]["trainer"]
        ratio = o["tok_s"] / b["tok_s"]
        out.append(f"Training throughput, ours >= {TARGET_SPEEDUP:g}x a plain Trainer with pad-to-max (real tokens/s, "
                   f"batch {BATCH}, max_len {TRAIN_MAX_LEN}): **{'met' if ratio >= TARGET_SPEEDUP else 'not met'}** "
                   f"({ratio:.2f}x: {o['tok_s']:.0f} vs {b['tok_s']:.0f} tok/s over all steady steps; per repeat "
                   f"{', '.join(f'{x:.2f}x' for x in t['ratios'])}; fastest single step "
                   f"{o['fastest_step_tok_s'] / b['fastest_step_tok_s']:.2f}x)")
    return out


def explanation(results: dict[str, Any]) -> list[str]:
    """Why the throughput ratio is what it is, from the measured numbers."""
    t = results.get("throughput")
    if not t:
        return []
    o, b = t["pooled"]["ours"], t["pooled"]["trainer"]
    ratio = o["tok_s"] / b["tok_s"]
    share_gain = o["real_share"] / b["real_share"]
    per_processed = o["processed_tok_s"] / b["processed_tok_s"]
    r256 = next((r for r in results["padding"] if r["label"] == "cpsycound" and r["max_len"] == TRAIN_MAX_LEN), None)
    lines = [
        (f"Real tokens/s = processed tokens/s x real-token share. Packing raised the real share of what the model "
         f"processed from {b['real_share']:.1%} to {o['real_share']:.1%} ({share_gain:.3f}x), and the packed step "
         f"processes tokens at {per_processed:.2f}x the padded step's rate; together {ratio:.2f}x."),
    ]
    if r256:
        need = r256["packed"] / TARGET_SPEEDUP
        lines.append(
            f"Packing can only win back padding, and there is almost none to win: the renderer cuts a long dialog "
            f"into windows that it fills up to max_len with earlier turns as context, so at max_len "
            f"{r256['max_len']} the CPsyCounD samples have a median of {r256['p50']:.0f} tokens and "
            f"{r256['at_max'] / r256['samples']:.0%} are within 8 tokens of max_len; naive padding already keeps "
            f"{r256['naive']:.1%} real tokens, and packing finds almost no two samples that fit in one row "
            f"({o['samples_per_step'] / BATCH:.2f} samples a row in the trained batches). Over this whole distribution, "
            f"if the cost were linear in processed tokens, packing could gain at most "
            f"{r256['packed'] / r256['naive']:.3f}x (the {share_gain:.3f}x in real share above comes from the few "
            f"batches the {o['steps'] + len(t['ratios'])} steps of each kind happened to draw); "
            f"{TARGET_SPEEDUP:g}x would need a naive real-token share of {need:.0%} or less, i.e. samples much "
            f"shorter than max_len (short single-turn data, or a max_len far above the typical sample).")
    cost = (f"{o['s_per_step']:.2f} s a step for {o['processed_per_step']:,.0f} processed tokens vs "
            f"{b['s_per_step']:.2f} s for {b['processed_per_step']:,.0f}")
    if abs(per_processed - 1) < 0.05:
        lines.append(f"Per processed token the two steps cost the same within 5% ({cost}): the packed step's 4D "
                     f"block-diagonal mask (built per batch by `packing.collate`) costs nothing measurable here, and "
                     f"neither does either loop's own per-step work.")
    else:
        lines.append(f"Per processed token the packed step is {abs(per_processed - 1):.0%} "
                     f"{'faster' if per_processed > 1 else 'slower'} ({cost}). Both run the same model code with "
                     f"an explicit attention mask (the packed step's 4D float block mask; for the padded batches, "
                     f"which all hold padding, transformers builds a boolean 4D one from the 2D mask); the rest is "
                     f"each loop's own per-step work.")
    lines.append(
        f"Threads and load: torch.get_num_threads() = {o['threads']} in both on {os.cpu_count()} CPUs. The machine "
        f"is shared, and a busy neighbour slows a {o['threads']}-thread step far more than its share of the CPUs "
        f"(torch's threads wait for each other), which is why the two run in lockstep: both see the same "
        f"neighbours, step by step. During the steady steps other processes used {o['others_cpus']:.2f} CPUs on "
        f"average beside ours and {b['others_cpus']:.2f} beside the Trainer; CPU time per wall second was "
        f"{o['cpu_per_wall']:.2f} and {b['cpu_per_wall']:.2f}. The absolute tokens/s depend on that load (the best "
        f"single run reached {o['best_run_tok_s']:.0f} and {b['best_run_tok_s']:.0f} tok/s); the ratio much less.")
    return lines


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        START,
        "## Train: sequence packing and LoRA training throughput (SmolLM2-135M-Instruct, CPU)",
        "",
        f"- Date: {m['date']}",
        (f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['os']}; Python {m['python']}, torch "
         f"{m['torch']}, transformers {m['transformers']}, peft {m['peft']}, accelerate {m['accelerate']}; load "
         f"average at the end {m['load']} (a shared machine)"),
        f"- Command: `{results['command']}`",
        (f"- Data: {results['corpus']}: {results['dialogs_total']:,} dialogs, {results['dialogs_used']} chosen evenly "
         f"over the sorted dialog ids; rendered with `render_split` (`render_dialog`, loss on counselor turns, "
         f"long dialogs cut into windows) and the model's chat template."),
        "",
        "### Padding: share of processed tokens that are real",
        "",
        (f"Baseline: naive padding, every sample padded to max_len. *packed* = `packing.pack` (first-fit "
         f"decreasing) into rows of max_len, real tokens / (rows x max_len); *batch-longest* = batches of {BATCH} "
         f"in order, each padded to its longest sample (`padded_batch_efficiency`), for information. The last row is "
         f"the default run's own train split (`{results['processed']}`, all sources), for information."),
        "",
        ("| data | max_len | dialogs | samples (windowed dialogs) | tokens / sample: p5 / p50 / mean / p95 "
         "| samples within 8 of max_len | packed rows | naive (baseline) | batch-longest | **packed** | packed / naive |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["padding"]:
        lines.append(
            f"| {r['label']} | {r['max_len']} | {r['dialogs']:,} | {r['samples']:,} ({r['windowed_dialogs']:,}) "
            f"| {r['p5']:.0f} / {r['p50']:.0f} / {r['mean']:.0f} / {r['p95']:.0f} "
            f"| {r['at_max'] / r['samples']:.0%} | {r['rows']:,} | {r['naive']:.3f} | {r['padded_batches']:.3f} "
            f"| **{r['packed']:.3f}** | {r['packed'] / r['naive']:.3f}x |")
    t = results.get("throughput")
    if t:
        o, b = t["pooled"]["ours"], t["pooled"]["trainer"]
        d = results["train_data"]
        lines += [
            "",
            "### Training throughput: real (non-pad) tokens/s",
            "",
            (f"- Method: {results['train_dialogs']} of the chosen CPsyCounD dialogs (one in "
             f"{results['train_every']}) -> `build_dataset` at max_len {TRAIN_MAX_LEN}, packing on "
             f"({d['packed']['rows']:,} packed rows) and off ({d['unpacked']['rows']:,} samples: the same samples). "
             f"*ours* = `finetune()` on the packed dataset (packing.collate's block-diagonal 4D mask, per-sample "
             f"position_ids; rows padded to the batch's longest); the baseline *Trainer* = a plain "
             f"`transformers.Trainer` on the unpacked samples, each padded to max_len by a simple pad collator (2D "
             f"mask). Both: the real SmolLM2-135M-Instruct in fp32 with its default attention, LoRA r "
             f"{results['lora']['r']} / alpha {results['lora']['alpha']} / dropout {results['lora']['dropout']} on "
             f"{', '.join(results['lora']['target_modules'])} (peft), batch {BATCH}, grad_accum 1, {t['steps']} "
             f"steps, AdamW (torch, non-fused) lr {results['lr']:g}, cosine with warmup, clipping 1.0, seed "
             f"{results['seed']}, {o['threads']} torch threads."),
            (f"- Timing: each repeat runs the two as fresh processes in lockstep: once both are set up they take "
             f"turns, one optimizer step each (a token passed over a pipe; the first mover alternates between "
             f"repeats), so they never run at the same time and both meet the same neighbours on this shared "
             f"machine. A step is timed from its start (ours: before `_Loader.step` loads and collates its rows; "
             f"Trainer: from the end of the previous step, so its batch fetch and logging count) to the end of its "
             f"optimizer step, by wrappers installed in the worker processes only (finetune's `_Loader.step` / "
             f"`_train_step`, a TrainerCallback and `compute_loss`). *steady* = steps 2..{t['steps']} (step 1 is "
             f"the warm-up), summed over all {t['repeats']} repeat(s); real tokens = non-pad tokens of the step's "
             f"batch; *fastest step* = the best single steady step of each kind."),
            "",
            ("| run | real tok/s (steady) | ratio | by CPU time | processed tok/s | real share of processed "
             "| s / step | samples / step | fastest step tok/s (ratio) | step 1 s | final loss |"),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, x in (("plain Trainer, pad to max_len (baseline)", b), ("ours: finetune(), packed", o)):
            lines.append(
                f"| {label} | {x['tok_s']:.0f} | **{x['tok_s'] / b['tok_s']:.2f}x** | "
                f"{x['tok_cpu_s'] / b['tok_cpu_s']:.2f}x | {x['processed_tok_s']:.0f} | {x['real_share']:.1%} "
                f"| {x['s_per_step']:.2f} | {x['samples_per_step']:.1f} "
                f"| {x['fastest_step_tok_s']:.0f} ({x['fastest_step_tok_s'] / b['fastest_step_tok_s']:.2f}x) "
                f"| {x['first_step_s']:.1f} | {x['final_loss']:.3f} |")
        per_repeat = "; ".join(
            f"repeat {i + 1} ({KINDS[i % 2]} first): ours {ro['tok_s']:.0f}, Trainer {rb['tok_s']:.0f} tok/s, "
            f"{ro['tok_s'] / rb['tok_s']:.2f}x, other processes {ro['others_cpus']:.2f} / {rb['others_cpus']:.2f} CPUs"
            for i, (ro, rb) in enumerate(zip(t["runs"]["ours"], t["runs"]["trainer"])))
        lines += ["", f"Per repeat (steady): {per_repeat}."]
    lines += ["", "### Verdict", "", *[f"- {v}" for v in verdicts(results)]]
    why = explanation(results)
    if why:
        lines += ["", "### What limits the throughput ratio", "", *[f"- {x}" for x in why]]
    lines.append(END)
    return "\n".join(lines) + "\n"




# --------------------------------------------------------------------------------------------- main


def logits_part(args: argparse.Namespace, params: dict, command: str) -> None:
    """Measurement 3 for every --logits-models model; writes the bench_train_logits section."""
    results: dict[str, Any] = {"command": command, "logits": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_logits-") as tmp_name:
        tmp = Path(tmp_name)
        log("building data/processed of the bundled sample ...")
        processed = sample_processed(params, tmp / "sample")
        for model in args.logits_models:
            base_dir = ensure_model(model, None, params, log)
            log(f"{model}: the sft_data output for the sample ...")
            data = sample_sft_data(params, model, base_dir, processed, tmp)
            results["logits"].append(measure_logits(params, model, base_dir, data, tmp, args.threads,
                                                    args.quiet_wait))
            results["machine"] = machine("torch", "transformers", "peft", "accelerate")
            if args.json:
                args.json.write_text(json.dumps(results, default=str), encoding="utf-8")
            write_section(args.out, render_logits(results), "bench_train_logits")  # after each model: kept if stopped
    for line in logits_verdicts(results):
        log(line.replace("**", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_train.py",
        description=(
            "Benchmark sequence packing and LoRA training throughput with the real SmolLM2-135M-Instruct. (1) The "
            "share of processed tokens that are real on the CPsyCounD length distribution (full corpus under "
            "RAW_ROOT, else data/processed), packed vs naive pad-to-max_len, at max_len 256 and 1024 (target >= "
            "0.95 packed). (2) Real (non-pad) tokens/s of counseltune's finetune() on a packed SFT dataset vs a plain "
            "transformers Trainer padding every sample to max_len: same model, LoRA, batch 4, max_len 256, steps, "
            "thread count; two fresh processes per repeat taking turns step by step (target >= 1.5x). Works in a "
            "temporary directory and writes its section of OUT."),
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md",
                        help="results file; only the section between the bench_train markers is written/replaced")
    parser.add_argument("--steps", type=int, default=10,
                        help="optimizer steps per training run (default 10; step 1 is the warm-up, min 2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="lockstep repeats of both training runs, the first mover alternating (default 2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch.set_num_threads in both training runs (default: the CPU count)")
    parser.add_argument("--quiet-wait", type=float, default=120,
                        help="before each repeat, wait up to this many seconds for other processes to use under "
                             "0.3 CPUs (default 120; 0 = do not wait)")
    parser.add_argument("--dialogs", type=int, default=600,
                        help="CPsyCounD dialogs for the padding measurement, evenly spaced by id (default 600)")
    parser.add_argument("--train-dialogs", type=int, default=120,
                        help="of those, how many (evenly spaced) build the training datasets (default 120)")
    parser.add_argument("--raw-root", type=Path, default=ROOT.parent / "shared" / "data" / "raw",
                        help="folder holding CPsyCounD/Data (default: ../shared/data/raw next to the project)")
    parser.add_argument("--processed", type=Path, default=ROOT / "data" / "processed",
                        help="curated tables (fallback data, and the default run's train split)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file (default: the project's)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help=f"converted {MODEL} folder (default: ~/.cache/counseltune/models/{MODEL}, built when missing)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the padding measurement (seconds)")
    parser.add_argument("--part", choices=("packing", "logits", "all"), default="all",
                        help="packing = measurements 1-2 (padding, packed throughput); logits = 3, loss-only logits "
                             "(peak RSS and tokens/s of --logits-models at their default train settings); default all")
    parser.add_argument("--json", type=Path, default=None, help="also write the loss-only-logits raw results here")
    parser.add_argument("--logits-models", nargs="+", default=list(LOGITS_MODELS),
                        help=f"models for the loss-only-logits part (default: {' '.join(LOGITS_MODELS)})")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        job = json.loads(args.job.read_text(encoding="utf-8"))
        args.result.write_text(json.dumps(WORKERS[args.worker](job)), encoding="utf-8")
        return 0
    if args.steps < 2 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps must be >= 2, --repeats and --threads >= 1")

    import polars as pl
    from counseltune.schemas.tables import CuratedDialogs, Turns
    from transformers import AutoTokenizer

    from counseltune.config import load_params
    from counseltune.tables.io import read_table
    from counseltune.train.sft_data import select_dialogs

    started = time.perf_counter()
    command = shlex.join(["python", "benchmarks/bench_train.py", *(sys.argv[1:] if argv is None else argv)])
    params = load_params(args.params)
    if args.part in ("logits", "all"):
        logits_part(args, params, command)
    if args.part == "logits":
        log(f"done in {time.perf_counter() - started:.0f} s; results written to {args.out}")
        return 0
    base_dir = ensure_model(MODEL, args.model_dir, params, log)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    log("reading CPsyCounD ...")
    dialogs, turns, corpus = load_corpus(params, args.raw_root.resolve(), args.processed)
    chosen = evenly_spaced(dialogs["dialog_id"].to_list(), args.dialogs)
    turns = turns.filter(pl.col("dialog_id").is_in(chosen))
    padding = []
    for max_len in MAX_LENS:
        log(f"padding: rendering {len(chosen)} dialogs at max_len {max_len} ...")
        padding.append(padding_row(tokenizer, turns, chosen, max_len, "cpsycound"))
        r = padding[-1]
        log(f"  {r['samples']} samples, packed {r['packed']:.3f} vs naive {r['naive']:.3f} ({r['render_s']:.0f} s)")
    if (args.processed / "dialogs.parquet").exists():
        pd = read_table(args.processed / "dialogs.parquet", CuratedDialogs)
        pt = read_table(args.processed / "turns.parquet", Turns)
        train_ids = select_dialogs(pd, params)["train"]
        log(f"padding: the default run's train split ({len(train_ids)} dialogs) at max_len {TRAIN_MAX_LEN} ...")
        padding.append(padding_row(tokenizer, pt, train_ids, TRAIN_MAX_LEN, "default run train split (info)"))

    mp = params["models"][MODEL]
    results: dict[str, Any] = {
        "command": command, "corpus": corpus, "dialogs_total": dialogs.height, "dialogs_used": len(chosen),
        "processed": str(args.processed.relative_to(ROOT) if args.processed.is_relative_to(ROOT) else args.processed),
        "padding": padding, "lora": mp["lora"], "lr": mp["train"]["lr"], "seed": mp["train"]["seed"],
    }
    if not args.skip_throughput:
        train_ids = evenly_spaced(chosen, args.train_dialogs)
        results["train_dialogs"] = len(train_ids)
        results["train_every"] = max(1, round(len(chosen) / max(len(train_ids), 1)))
        with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp_name:
            tmp = Path(tmp_name)
            log(f"building the packed and unpacked SFT datasets from {len(train_ids)} dialogs ...")
            data = build_train_data(tokenizer, dialogs.filter(pl.col("dialog_id").is_in(train_ids)),
                                    turns.filter(pl.col("dialog_id").is_in(train_ids)),
                                    bench_params(params, args.steps), tmp)
            results["train_data"] = data
            results["throughput"] = measure_throughput(params, base_dir, data, tmp, args.steps, args.repeats,
                                                       args.threads, args.quiet_wait)
    results["machine"] = machine("torch", "transformers", "peft", "accelerate")
    write_section(args.out, render(results), "bench_train")
    for line in verdicts(results):
        log(line.replace("**", ""))
    log(f"done in {time.perf_counter() - started:.0f} s; results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
