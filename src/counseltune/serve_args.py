"""The command-line arguments of `counseltune serve` (argparse only, so building the CLI imports no model code)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--base", required=True, type=Path, help="base model folder, e.g. models/base/<model>")
    p.add_argument("--name", default=None, help="the base model's served name (default: the folder's name)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                   help="serve a LoRA adapter folder under NAME (repeatable), like vLLM's --lora-modules")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    p.add_argument("--dtype", default="float32", help="weights dtype, as models.<m>.dtype")
    p.add_argument("--quantization", default="none", choices=["none", "4bit"], help="as models.<m>.quantization")
    p.add_argument("--entry", default=None, metavar="JSON",
                   help="the model's registry entry (models.<m>) as JSON: load the weights exactly as the predict "
                        "stage does (overrides --dtype and --quantization); the predict stage passes it")
    p.add_argument("--batch-size", type=int, default=8, help="most requests decoded in one batch")
    p.add_argument("--then", default=None, metavar="COMMAND",
                   help="start the server, wait for its health, run COMMAND (COUNSELTUNE_SERVED_URL holds the base "
                        "URL), stop it; exit with COMMAND's status")
    p.add_argument("--health-timeout", type=float, default=600.0, help="seconds --then waits for health")
    return p
