"""Keeping large buffers in the heap (glibc): output moves in 1 MiB frames, and letting malloc
map and unmap each one costs a page fault per 4 KiB, every chunk. Raising the mmap and trim
thresholds keeps freed chunks for reuse; the idle agent's memory does not change."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
LARGE = 32 * 1024 * 1024


def keep_large_buffers() -> bool:
    """Tune glibc's malloc; False (and nothing changed) where it is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, LARGE)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * LARGE))
    log.debug("malloc thresholds raised: %s", ok)
    return ok
