"""Run a model server for the length of one job: start it, wait until /health answers 200, run, stop it.

    with running_server(serve_command(base, name, adapters, port=port), url, health_timeout_s=300):
        ...  # talk to url

Used by the predict stage when predict.served.start is true (each GPU job on a cluster starts its own server) and
by `counseltune serve --then "<command>"`. A server that exits or stays unhealthy is one ServerNotHealthy line
naming the URL, the exit code and the server's last output line (its whole log stays in a temp file). The
server gets SIGTERM when the job ends, SIGKILL 30 s later if it is still there, and (Linux) SIGTERM as well if the
job itself is killed: no server outlives its job holding the GPU.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from counseltune.errors import CounseltuneError

STOP_GRACE_S = 30.0
# An OpenAI-compatible endpoint without a /health route (a proxy, a test server) answers these: it is up.
NO_HEALTH_ROUTE = (404, 405, 501)
POLL_S = 0.2


class ServerNotHealthy(CounseltuneError):
    """The model server exited, or did not answer /health with 200 in time."""


def health_url(base_url: str) -> str:
    """http://host:port/v1 -> http://host:port/health (vLLM, SGLang and llama.cpp answer there)."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/health"


def wait_for_health(base_url: str, timeout_s: float, process: subprocess.Popen | None = None,
                    log_path: Path | None = None) -> None:
    """Return once GET /health answers 200 (or says there is no such route); ServerNotHealthy when the process
    exits first or time runs out (a server that is loading refuses connections or answers 503)."""
    url = health_url(base_url)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        if process is not None and process.poll() is not None:
            raise ServerNotHealthy(f"the model server for {base_url} exited with code {process.returncode} before "
                                   f"it was healthy; its last output: {last_line(log_path)!r} (full log: {log_path})")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - an http(s) URL from params
                if response.status == 200:
                    return
        except urllib.error.HTTPError as err:  # 503 while the model loads
            if err.code in NO_HEALTH_ROUTE:
                return
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            last = str(getattr(err, "reason", err))
        if time.monotonic() >= deadline:
            hint = f"; its last output: {last_line(log_path)!r} (full log: {log_path})" if log_path else ""
            raise ServerNotHealthy(f"no healthy model server at {url} after {timeout_s:g} s (last: {last}){hint}; "
                                   "check that it is running, or raise predict.served.health_timeout_s")
        time.sleep(POLL_S)


@contextmanager
def running_server(command: list[str], base_url: str, *, health_timeout_s: float) -> Iterator[subprocess.Popen]:
    """Start command (a server that will answer at base_url), wait for its health, yield it, stop it."""
    log_fd, log_name = tempfile.mkstemp(prefix="counseltune-serve-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # noqa: PLW1509
    try:
        wait_for_health(base_url, health_timeout_s, process, log_path)
        yield process
    finally:
        stop(process)
    log_path.unlink(missing_ok=True)  # kept when the server failed: the error line names it


def stop(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM, then SIGKILL after grace_s; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def serve_command(base: Path, name: str, adapters: dict[str, Path], *, port: int, host: str = "127.0.0.1",
                  dtype: str = "float32", quantization: str = "none", batch_size: int = 8,
                  entry: dict | None = None) -> list[str]:
    """The `counseltune serve` command line for a base model folder and its named adapters (entry: the registry
    entry, so the server loads the weights as the predict stage would)."""
    cmd = [sys.executable, "-m", "counseltune.llm.serve", "--base", str(base), "--name", name, "--host", host,
           "--port", str(port), "--dtype", dtype, "--quantization", quantization, "--batch-size", str(batch_size)]
    if entry is not None:
        cmd += ["--entry", json.dumps(entry, sort_keys=True)]
    for adapter_name, folder in adapters.items():
        cmd += ["--adapter", f"{adapter_name}={folder}"]
    return cmd


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_then(args) -> int:
    """`counseltune serve ... --then "<command>"`: the command runs with COUNSELTUNE_SERVED_URL set; its exit code."""
    from .serve import parse_adapters, parse_entry

    port = args.port or free_port(args.host)
    url = f"http://{args.host}:{port}/v1"
    command = serve_command(args.base, args.name or Path(args.base).name, parse_adapters(args.adapter), port=port,
                            host=args.host, dtype=args.dtype, quantization=args.quantization,
                            batch_size=args.batch_size, entry=parse_entry(args.entry))
    with running_server(command, url, health_timeout_s=args.health_timeout):
        print(f"counseltune serve: healthy at {url}; running: {args.then}", flush=True)
        return subprocess.call(args.then, shell=True, env={**os.environ, "COUNSELTUNE_SERVED_URL": url})  # noqa: S602


def last_line(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
