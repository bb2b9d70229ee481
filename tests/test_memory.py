"""When the thread runtimes give freed heap pages back to the OS (runtimes/_memory.py)."""

from __future__ import annotations

import platform

import pytest

from runtimes._memory import HeapTrimmer, trim_heap


def _trimmer(crowd: int = 16) -> tuple[HeapTrimmer, list[int]]:
    trims: list[int] = []
    trimmer = HeapTrimmer(crowd, trim=lambda: trims.append(1))
    return trimmer, trims


def _open_then_close(trimmer: HeapTrimmer, peak: int, down_to: int, start: int = 0) -> None:
    for count in range(start + 1, peak + 1):
        trimmer.opened(count)
    for count in range(peak - 1, down_to - 1, -1):
        trimmer.closed(count)


def test_a_crowd_that_leaves_is_trimmed_a_few_times_not_at_each_close():
    trimmer, trims = _trimmer()
    _open_then_close(trimmer, peak=400, down_to=0)
    assert len(trims) == 3  # at 100 connections left, at 25, at 6: each time a quarter of the last


def test_a_few_connections_coming_and_going_never_trim():
    trimmer, trims = _trimmer()
    for _ in range(100):
        _open_then_close(trimmer, peak=15, down_to=0)
    assert trims == []


def test_a_steady_crowd_is_not_trimmed_on_each_close():
    trimmer, trims = _trimmer()
    _open_then_close(trimmer, peak=200, down_to=150)
    for _ in range(1000):  # churn around 150 open connections
        trimmer.opened(151)
        trimmer.closed(150)
    assert trims == []


def test_the_next_crowd_is_trimmed_again():
    trimmer, trims = _trimmer()
    _open_then_close(trimmer, peak=100, down_to=0)
    first = len(trims)
    _open_then_close(trimmer, peak=100, down_to=0)
    assert first == 2 and len(trims) == 4  # at 25 and 6 left, each time


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_calls_malloc_trim_on_glibc():
    assert trim_heap() is True
