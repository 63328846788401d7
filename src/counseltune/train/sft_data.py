"""Curated dialogs/turns -> one model's SFT dataset (HF DatasetDict train/val on disk) and its stats JSON.

Which dialogs: curated split "train" -> train, "val" -> val (test never), only languages in sft.languages.
sft.val_fraction_of_train > 0 moves that share of train dialogs to val, chosen by a hash of
(curate.split.seed, dialog_id), so the carve-out is the same for every model and run.

Synthetic sessions join the train split by params (sft.synthetic: generator -> share of its accepted sessions,
see train/mix.py); `extra` takes further (dialogs, turns) pairs in the curated schema, split by their own
`split` column (null counts as train).

Deterministic: dialogs are processed in dialog_id order and packing has no randomness, so the same tables,
tokenizer and params give the identical dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from counseltune.config import model_params
from counseltune.models.loader import load_tokenizer
from counseltune.train.packing import pack, packing_efficiency, padded_batch_efficiency
from counseltune.train.render import RenderReport, Sample, render_dialog, template_caps

SPLITS = ("train", "val")
TablePair = tuple[pl.DataFrame, pl.DataFrame]


def build_sft_data(params: dict, model: str, base_dir: Path, processed_dir: Path, out_dir: Path, stats_path: Path,
                   extra: Sequence[TablePair] = (), synthetic_dir: Path | None = None) -> dict:
    """Curated tables in processed_dir (+ extra pairs, + the sft.synthetic mix from synthetic_dir) -> DatasetDict
    saved at out_dir + stats JSON; returns stats."""
    from counseltune.schemas.tables import CuratedDialogs, Turns
    from counseltune.tables.io import read_table
    from counseltune.train.mix import synthetic_tables

    processed_dir = Path(processed_dir)
    tokenizer = load_tokenizer(model, model_params(params, model), base_dir)  # custom code too (Baichuan2)
    synthetic = synthetic_tables(params, Path(synthetic_dir)) if synthetic_dir is not None else []
    tables = [(read_table(processed_dir / "dialogs.parquet", CuratedDialogs),
               read_table(processed_dir / "turns.parquet", Turns)), *extra, *(pair for _, pair in synthetic)]
    dataset, stats = build_dataset(tokenizer, tables, params, model)
    stats["synthetic_dialogs"] = {generator: pair[0].height for generator, pair in synthetic}
    save_dataset(dataset, Path(out_dir))
    write_json(stats, Path(stats_path))
    return stats


def build_dataset(tokenizer, tables: Sequence[TablePair], params: dict, model: str):
    """Tokenizer + table pairs -> (datasets.DatasetDict with train/val, stats dict)."""
    import datasets

    train_params = model_params(params, model)["train"]
    max_len, packed = int(train_params["max_len"]), bool(train_params["packing"])
    dialogs, turns = _concat(tables)
    chosen = select_dialogs(dialogs, params)
    splits, per_split, lengths = {}, {}, []
    for split in SPLITS:
        report = RenderReport()
        samples = render_split(tokenizer, turns, chosen[split], max_len, report, desc=f"sft-data {model} {split}")
        rows = pack(samples, max_len) if samples else []
        splits[split] = datasets.Dataset.from_dict(_columns(rows if packed else samples, packed), features=_features(packed))
        lengths += [s.n_tokens for s in samples]
        per_split[split] = _split_stats(samples, rows, report, max_len, int(train_params["batch_size"]), len(chosen[split]))
    stats = _summary(per_split, lengths, tokenizer, params, model, max_len, packed)
    return datasets.DatasetDict(splits), stats


def select_dialogs(dialogs: pl.DataFrame, params: dict) -> dict[str, list[str]]:
    """Curated dialogs -> sorted dialog ids per SFT split (languages filter, optional val carve-out)."""
    sft = params["sft"]
    fraction, seed = float(sft["val_fraction_of_train"]), params["curate"]["split"]["seed"]
    kept = dialogs.filter(pl.col("language").is_in(list(sft["languages"])))
    out: dict[str, list[str]] = {split: [] for split in SPLITS}
    for dialog_id, split in zip(kept["dialog_id"].to_list(), kept["split"].fill_null("train").to_list()):
        if split == "train" and fraction > 0 and _unit_hash(seed, dialog_id) < fraction:
            split = "val"
        if split in out:
            out[split].append(dialog_id)
    return {split: sorted(ids) for split, ids in out.items()}


def render_split(tokenizer, turns: pl.DataFrame, dialog_ids: Sequence[str], max_len: int, report: RenderReport,
                 desc: str = "sft-data") -> list[Sample]:
    """Turns of the given dialogs (in the given order) -> samples, with a progress bar over dialogs."""
    grouped = (turns.filter(pl.col("dialog_id").is_in(list(dialog_ids))).sort("dialog_id", "turn_index")
               .group_by("dialog_id", maintain_order=True).agg("role", "text"))
    by_id = {row["dialog_id"]: row for row in grouped.iter_rows(named=True)}
    samples: list[Sample] = []
    for dialog_id in tqdm(dialog_ids, desc=desc, unit="dialog", mininterval=2.0):
        row = by_id.get(dialog_id)
        if row is None:
            report.skipped_dialogs += 1
            continue
        turns_of = [{"role": r, "text": t} for r, t in zip(row["role"], row["text"])]
        samples += render_dialog(tokenizer, turns_of, max_len, dialog_id, report)
    return samples


def save_dataset(dataset, out_dir: Path) -> None:
    """DatasetDict -> out_dir, replaced atomically (a killed job never leaves half a dataset)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # datasets cannot load back a saved split with no rows: leave empty splits out (finetune handles no val)
    dataset = type(dataset)({name: split for name, split in dataset.items() if len(split)})
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---- helpers ------------------------------------------------------------------------------------------------


def _concat(tables: Sequence[TablePair]) -> TablePair:
    if not tables:
        raise ValueError("no (dialogs, turns) tables given")
    for pair in tables:
        if len(pair) != 2:
            raise ValueError("extra tables are (dialogs, turns) pairs; mixing weights are not supported yet")
    dialogs = pl.concat([d.select("dialog_id", "language", "split") for d, _ in tables], how="vertical_relaxed")
    turns = pl.concat([t.select("dialog_id", "turn_index", "role", "text") for _, t in tables], how="vertical_relaxed")
    duplicated = dialogs.filter(pl.col("dialog_id").is_duplicated())["dialog_id"].unique().sort().to_list()
    if duplicated:
        raise ValueError(f"dialog ids appear in more than one table: {duplicated[:5]}")
    return dialogs, turns


def _unit_hash(seed: Any, dialog_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{dialog_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _features(packed: bool):
    import datasets

    ints = datasets.List(datasets.Value("int32"))
    features = {"input_ids": ints, "labels": ints}
    if packed:
        features |= {"position_ids": ints, "seq_lens": ints}
    features |= {"n_tokens": datasets.Value("int32"), "n_loss_tokens": datasets.Value("int32"),
                 "dialog_ids": datasets.List(datasets.Value("string"))}
    return datasets.Features(features)


def _columns(rows: Sequence[Any], packed: bool) -> dict[str, list]:
    columns: dict[str, list] = {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
    if packed:
        columns |= {"position_ids": [r.position_ids for r in rows], "seq_lens": [r.seq_lens for r in rows]}
    columns |= {"n_tokens": [r.n_tokens for r in rows], "n_loss_tokens": [r.n_loss_tokens for r in rows],
                "dialog_ids": [r.dialog_ids if packed else [r.dialog_id] for r in rows]}
    return columns


def _split_stats(samples: list[Sample], rows: list, report: RenderReport, max_len: int, batch_size: int,
                 n_dialogs: int) -> dict:
    lengths = [s.n_tokens for s in samples]
    loss = sum(s.n_loss_tokens for s in samples)
    return {
        "dialogs": n_dialogs, "samples": len(samples), "packed_rows": len(rows),
        "tokens": sum(lengths), "loss_tokens": loss,
        "loss_token_share": loss / sum(lengths) if lengths else 0.0,
        "tokens_per_sample": _distribution(lengths),
        "truncated_dialogs": report.windowed_dialogs, "windows": report.windows,
        "truncated_turns": report.truncated_turns, "trimmed_context_turns": report.trimmed_turns,
        "skipped_turns": report.skipped_turns, "skipped_dialogs": report.skipped_dialogs,
        "folded_openers": report.folded_openers,
        "spans": {"prefix": report.spans_prefix, "offsets": report.spans_offsets},
        "packing_efficiency": {
            "packed": packing_efficiency(lengths, len(rows), max_len),
            "naive": packing_efficiency(lengths, len(lengths), max_len),  # one sample per row, padded to max_len
            "padded_batches": padded_batch_efficiency(lengths, batch_size),  # pad to the batch's longest, in order
        },
    }


def _summary(per_split: dict, lengths: list[int], tokenizer, params: dict, model: str, max_len: int,
             packed: bool) -> dict:
    entry = model_params(params, model)
    caps = template_caps(tokenizer)
    tokens = sum(s["tokens"] for s in per_split.values())
    rows = sum(s["packed_rows"] for s in per_split.values())
    samples = sum(s["samples"] for s in per_split.values())
    return {
        "model": model, "template": entry["template"],
        "chat_template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
        "template_caps": {"system": caps.system, "assistant_first": caps.assistant_first,
                          "consecutive": caps.consecutive, "end_marker": caps.end_marker},
        "max_len": max_len, "packing": packed, "languages": list(params["sft"]["languages"]),
        "val_fraction_of_train": params["sft"]["val_fraction_of_train"],
        "samples": {split: s["samples"] for split, s in per_split.items()},
        "rows": {split: (s["packed_rows"] if packed else s["samples"]) for split, s in per_split.items()},
        "tokens_per_sample": _distribution(lengths),
        "loss_token_share": sum(s["loss_tokens"] for s in per_split.values()) / tokens if tokens else 0.0,
        "truncated_dialogs": sum(s["truncated_dialogs"] for s in per_split.values()),
        "truncated_turns": sum(s["truncated_turns"] for s in per_split.values()),
        "truncated_samples": sum(s["truncated_turns"] for s in per_split.values()),
        "windows": sum(s["windows"] for s in per_split.values()),
        "packing_efficiency": {
            "packed": tokens / (rows * max_len) if rows else 0.0,
            "naive": tokens / (samples * max_len) if samples else 0.0,
        },
        "splits": per_split,
    }


def _distribution(lengths: Sequence[int]) -> dict:
    if not lengths:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    arr = np.asarray(lengths)
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "max": int(arr.max())}
