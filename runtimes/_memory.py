"""Giving large buffers back to the OS when they are freed (glibc).

A server holds large buffers briefly: a 1 MiB response parked for a slow
reader, a request body being gathered. glibc's malloc serves blocks of 128
KiB or more with mmap and unmaps them on free, but it raises that threshold
each time such a block is freed (up to 32 MiB), after which large blocks
come from the heap and, once freed, mostly stay in the process. Measured
here (``experiments.soak``, HTTP/2 zero-window clients parking 20 responses
of 1 MiB on ``threaded``): RSS rose 10-15 MiB per attack and never came
back down; with the threshold fixed at 128 KiB it returned to its start.

Setting the threshold explicitly turns the adjustment off. The cost is an
mmap and its page faults for each large buffer (tens of microseconds per
MiB): small against the time it takes to send a MiB, nothing for small
responses. Not glibc (musl, macOS): nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["fix_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_done: set[int] = set()


def fix_mmap_threshold(size: int) -> bool:
    """Have malloc serve blocks of ``size`` bytes or more with mmap (so freeing returns them); 0: leave it.

    Process-wide, so set once (the first server started decides). True if set.
    """
    if size <= 0 or _done:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if mallopt(_M_MMAP_THRESHOLD, size) != 1:
        return False
    _done.add(size)
    return True
