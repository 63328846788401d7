"""Keep the C heap from holding freed training memory: large blocks straight back to the OS, the rest trimmed.

torch allocates CPU tensors with malloc. glibc serves a block of at least M_MMAP_THRESHOLD bytes with its own
mmap (returned to the OS on free) and smaller ones from its heap (kept after free, fragmented). The threshold
starts at 128 KiB but is dynamic: every freed mmap'd block raises it to that block's size, up to 32 MiB, so in a
training process nearly every activation ends up on the heap. Within one step, the forward's temporaries freed
there are not reused by the backward's differently sized blocks, and the step's peak RSS grows past what is live
(gemma3-270m, batch 4 x 256: about +0.3 GiB). Fixing the threshold (mallopt, which also stops the dynamic
adjustment) sends every block of 128 KiB or more to mmap; malloc_trim after each step returns what the heap
still holds. Neither changes any computed value. Without glibc (macOS, musl) both do nothing.
"""

from __future__ import annotations

import ctypes
from typing import Any

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value: blocks this size and up bypass the heap

_LIBC: Any = None


def _glibc() -> Any:
    """glibc's handle, or False elsewhere (looked up once)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 (raises AttributeError without glibc)
            _LIBC.mallopt  # noqa: B018
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def return_large_frees_to_os() -> bool:
    """Serve blocks >= MMAP_THRESHOLD_BYTES by mmap from now on, in this process (True when glibc took it)."""
    libc = _glibc()
    return bool(libc) and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def release_freed_memory() -> None:
    """Hand the pages the heap keeps after frees back to the OS (malloc_trim costs milliseconds)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
