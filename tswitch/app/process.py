"""Process settings ``app.py`` makes for the long-running server (never called by library code).

:func:`bounded_malloc`: glibc raises its mmap threshold each time a large block is freed (up to
32 MB) and gives every thread its own arena, so the many mid-sized tensors a fine-tune allocates and
frees stay in the heap: a server that taught 20 tasks grew ~300 MB with no live tensor more
(``benchmarks/bench_teach.py``). A fixed threshold and two arenas keep freed memory returnable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 << 10  # glibc's own initial value, made fixed
ARENAS = 2  # one per CPU core of the Space


def bounded_malloc() -> bool:
    """Fix glibc's mmap threshold and arena count for this process; ``False`` where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, ARENAS))
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
