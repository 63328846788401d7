"""heap.py: after return_large_frees_to_os, freed tensors of 128 KiB and up leave the process's RSS at once.

Run in a fresh interpreter (mallopt settings are process-wide and the pytest process's heap has a history).
The scenario is what a training step does: one large block freed first (which, by glibc's dynamic threshold,
would move every later block below its size onto the heap), then many ~1 MiB activations freed while a later
small allocation pins the heap's top, so malloc's automatic trim cannot return them.
"""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux" or "libc.so" not in (ctypes.util.find_library("c") or ""),
                                reason="glibc's malloc only")

SCENARIO = """
import sys, torch
from counseltune.train.heap import return_large_frees_to_os
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
if sys.argv[1] == "on":
    assert return_large_frees_to_os()
big = torch.ones(4 << 20); del big        # a freed 16 MiB block (raises glibc's dynamic threshold)
before = rss_mib()
blocks = [torch.ones(1 << 18) for _ in range(200)]   # 200 x 1 MiB, touched
pin = torch.ones(16)                                  # a small live block above them
del blocks
print(rss_mib() - before)
"""


def _retained_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCENARIO, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_freed_large_blocks_leave_rss():
    assert _retained_mib("on") < 50  # the 200 MiB are gone


def test_without_it_glibc_keeps_them():  # the scenario does show the problem heap.py fixes
    assert _retained_mib("off") > 150
