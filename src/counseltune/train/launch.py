"""How one model's fine-tune is launched: models.<m>.distributed -> one process, or `accelerate launch` ranks.

`strategy: single` (the default) runs finetune in this process: a CPU, one GPU, or QLoRA on one GPU.
`ddp` and `fsdp` run it on every GPU the job was given, on one node: `counseltune finetune` renders an
accelerate config (distributed_type MULTI_GPU or FSDP) and re-executes itself as

    python -m accelerate.commands.launch --config_file <rendered> --num_processes <N> -m counseltune.cli finetune <args>

so the Snakemake rule and the DVC stage stay one plain command for every model. On SLURM the job's GPUs come
from models.<m>.resources.gpus; `num_processes: auto` takes one rank per GPU the job can see. Multi-node
training (srun across nodes) is not wired.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from counseltune.errors import CounseltuneError

STRATEGIES = ("single", "ddp", "fsdp")
DISTRIBUTED_TYPE = {"ddp": "MULTI_GPU", "fsdp": "FSDP"}
# FSDP over a peft model: wrap transformer blocks, keep the original parameters (LoRA's trainable ones sit
# beside frozen ones in the same module), shard the full model, save sharded state (checkpoints stay per rank).
FSDP_CONFIG = {
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_backward_prefetch": "BACKWARD_PRE",
    "fsdp_cpu_ram_efficient_loading": True, "fsdp_forward_prefetch": False, "fsdp_offload_params": False,
    "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_state_dict_type": "SHARDED_STATE_DICT",
    "fsdp_sync_module_states": True, "fsdp_use_orig_params": True,
}


class LaunchError(CounseltuneError, ValueError):
    """A distributed setup that cannot run (names the params key to change)."""


def distributed(mp: Mapping[str, Any]) -> dict[str, Any]:
    return {"strategy": "single", "num_processes": 1, **(mp.get("distributed") or {})}


def world_size(dist: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> int:
    """Ranks to launch: an explicit num_processes, or (auto) one per GPU this job can see."""
    n = dist["num_processes"]
    if n != "auto":
        return int(n)
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        if env.get(key, "").split(":")[-1].isdigit():
            return int(env[key].split(":")[-1])
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return len([d for d in visible.split(",") if d.strip()])
    import torch

    return max(1, torch.cuda.device_count())


def check(model: str, mp: Mapping[str, Any], n: int) -> None:
    dist = distributed(mp)
    if dist["strategy"] not in STRATEGIES:
        raise LaunchError(f"models.{model}.distributed.strategy must be one of {STRATEGIES}, got {dist['strategy']!r}")
    if dist["strategy"] == "single":
        return
    if n < 2:
        raise LaunchError(f"models.{model}.distributed.strategy {dist['strategy']} needs at least 2 GPUs, this job has "
                          f"{n}: request more (models.{model}.resources.gpus) or set strategy: single")
    if dist["strategy"] == "fsdp" and mp.get("quantization") == "4bit":
        raise LaunchError(f"models.{model}: FSDP cannot shard 4-bit (QLoRA) weights here: use quantization: none "
                          "with fsdp, or strategy: ddp / single for QLoRA")


def accelerate_config(strategy: str, n: int, mixed_precision: str) -> dict[str, Any]:
    """The accelerate config file (what `accelerate config` would write) for one node with n ranks."""
    config = {"compute_environment": "LOCAL_MACHINE", "distributed_type": DISTRIBUTED_TYPE[strategy],
              "mixed_precision": mixed_precision, "num_machines": 1, "machine_rank": 0, "num_processes": n,
              "main_training_function": "main", "rdzv_backend": "static", "same_network": True, "use_cpu": False,
              "gpu_ids": "all"}
    if strategy == "fsdp":
        config["fsdp_config"] = dict(FSDP_CONFIG)
    return config


def under_launcher(env: Mapping[str, str] = os.environ) -> bool:
    """True inside a rank started by accelerate launch / torchrun (they set LOCAL_RANK)."""
    return "LOCAL_RANK" in env


def launch_command(config_path: Path, n: int, cli_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_path),
            "--num_processes", str(n), "-m", "counseltune.cli", *cli_args]


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    return path
