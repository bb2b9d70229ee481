"""Giving large buffers back to the OS when they are freed (glibc).

A server holds large buffers briefly: a 1 MiB response parked for a slow
reader, a request body being gathered. glibc's malloc serves blocks of 128
KiB or more with mmap and unmaps them on free, but it raises that threshold
each time such a block is freed (up to 32 MiB), after which large blocks
come from the heap and, once freed, mostly stay in the process. Measured
here (``experiments.hostile.soak``, HTTP/2 zero-window clients parking 20 responses
of 1 MiB on ``threaded``): RSS rose 10-15 MiB per attack and never came
back down; with the threshold fixed at 128 KiB it returned to its start.

Setting the threshold explicitly turns the adjustment off. The cost is an
mmap and its page faults for each large buffer (tens of microseconds per
MiB): small against the time it takes to send a MiB, nothing for small
responses. Not glibc (musl, macOS): nothing to do.

The threshold does not cover what is freed in the middle of malloc's heaps:
small blocks, and with a thread per connection each thread's allocations
come from one of up to eight arenas per core. After a crowd of connections
has come and gone (the soak's three attacks at once: 418 threads), their
freed blocks leave whole pages free but kept. ``malloc_trim`` hands such
pages back (glibc madvises them away in every arena). Measured on
``threaded``, four rounds of three attacks at once: RSS +9 MiB after them,
+3.8 MiB with :class:`HeapTrimmer`, which calls it once a crowd has gone (16
connections or more, down to a quarter of them), not on a timer:
a trim walks every arena under its lock (a millisecond or so here), so it
is done rarely, and only when there is something to give back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["HeapTrimmer", "fix_mmap_threshold", "trim_heap"]

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_done: set[int] = set()


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
# Argument types set once, here: setting them on a shared function object from several
# threads at once crashed free-threaded CPython 3.13 (gh-127946).
if _LIBC is not None:
    for _name, _types in (("mallopt", [ctypes.c_int, ctypes.c_int]), ("malloc_trim", [ctypes.c_size_t])):
        if (_function := getattr(_LIBC, _name, None)) is not None:
            _function.argtypes = _types


def fix_mmap_threshold(size: int) -> bool:
    """Have malloc serve blocks of ``size`` bytes or more with mmap (so freeing returns them); 0: leave it.

    Process-wide, so set once (the first server started decides). True if set.
    """
    if size <= 0 or _done:
        return False
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return False
    if mallopt(_M_MMAP_THRESHOLD, size) != 1:
        return False
    _done.add(size)
    return True


def trim_heap() -> bool:
    """Give the OS the free pages of malloc's heaps (glibc's ``malloc_trim``); False where there is none."""
    malloc_trim = getattr(_LIBC, "malloc_trim", None)
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


class HeapTrimmer:
    """Trims the heap (:func:`trim_heap`) when the open connections fall to a quarter of their peak.

    The count at a trim is the next peak: 400 connections leaving trim at
    100, 25 and 6 left.

    A runtime reports its count of open connections as it changes; a peak
    below ``crowd`` connections is no crowd (its memory is small, and a
    server that trims on every close would pay for it on every close).
    Not thread-safe: a runtime whose counts come from several threads
    decides with :meth:`due` under its own lock, and trims (:meth:`trim`,
    a millisecond or so) outside it.
    """

    __slots__ = ("crowd", "peak", "_trim")

    def __init__(self, crowd: int = 16, trim: Callable[[], object] = trim_heap) -> None:
        self.crowd = crowd
        self.peak = 0
        self._trim = trim

    def opened(self, count: int) -> None:
        if count > self.peak:
            self.peak = count

    def closed(self, count: int) -> None:
        if self.due(count):
            self._trim()

    def due(self, count: int) -> bool:
        """``count`` connections are left: is a trim due? (Bookkeeping only: the caller trims.)"""
        if self.peak >= self.crowd and count <= self.peak // 4:
            self.peak = count
            return True
        return False

    def trim(self) -> None:
        self._trim()
