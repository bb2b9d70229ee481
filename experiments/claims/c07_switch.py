"""Claim 7: what a context switch costs, between tasks and between threads."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import CAVEAT, FAILS, HOLDS, Design, Results, Verdict, missing

RULE = """\
Measured: pyperf micro-benchmarks (experiments/micro.py), median of the values: a switch between two threads
through a lock, between two asyncio / trio tasks through an event, and each through a socket pair (a switch
caused by I/O readiness). Seed figures: 0.2 us between tasks, 1.7 us between threads, both ~1.7 us through I/O.
Three parts:
1. order: a thread switch costs at least 3x a task switch (the seed: 8.5x);
2. convergence: through a socket, threads / tasks is within 0.5..2 (the seed: about equal);
3. magnitude: each of the three figures (task, thread, through I/O) within 3x of the seed's.
Verdict: all three: holds; 1 and 2 but not 3: holds with a caveat (the shape holds, the costs do not);
1 or 2 fails: does not hold. (Judged once: a property of the interpreter, not of a server design.)"""

NEED = ("switch-threads-lock", "switch-asyncio-event", "switch-trio-event", "switch-threads-socket",
        "switch-asyncio-socket", "switch-trio-socket")
SEED_US = {"task": 0.2, "thread": 1.7, "io": 1.7}


def judge(results: Results, design: Design) -> Verdict:
    micro = results.micro()
    if not all(k in micro for k in NEED):
        return missing("micro.json switch benchmarks")
    us = {k: micro[k][0] * 1e6 for k in NEED}
    task = min(us["switch-asyncio-event"], us["switch-trio-event"])
    thread = us["switch-threads-lock"]
    io_task = min(us["switch-asyncio-socket"], us["switch-trio-socket"])
    io_ratio = us["switch-threads-socket"] / io_task
    order = thread / task >= 3
    converge = 0.5 <= io_ratio <= 2
    measured = {"task": task, "thread": thread, "io": min(io_task, us["switch-threads-socket"])}
    close = all(SEED_US[k] / 3 <= v <= SEED_US[k] * 3 for k, v in measured.items())
    verdict = HOLDS if order and converge and close else CAVEAT if order and converge else FAILS
    summary = (f"thread switch {thread:.1f} us vs task {task:.1f} us ({thread / task:.1f}x, seed 8.5x); through a socket "
               f"threads/tasks {io_ratio:.2f}x (seed: about equal); magnitudes "
               + ", ".join(f"{k} {v / SEED_US[k]:.0f}x the seed's" for k, v in measured.items()))
    numbers = [f"{k}: {micro[k][0] * 1e6:.2f} us per switch (min {micro[k][1] * 1e6:.2f}, max {micro[k][2] * 1e6:.2f})"
               for k in NEED]
    return Verdict(verdict, summary, numbers, WHY, plots=[results.named("micro.png")],
                   sources=["micro/" + results.named("micro.json")])


CLAIM = Claim(7, "A context switch costs ~0.2 us between async tasks and ~1.7 us between kernel threads; both ~1.7 us "
                 "when caused by I/O readiness", "004", "How much does a switch cost in Python?", ("micro",),
              RULE, judge, Path(__file__), by_design=False)


# Presentation ------------------------------------------------------------------------

WHY = ("In Python every switch runs interpreter code on both sides, so the absolute figures are many times the "
       "seed's. A thread switch through a lock is a futex wake plus a GIL hand-over: the releasing thread blocks on "
       "its next acquire and drops the GIL, and the woken one takes it. A task switch through an event is event-loop "
       "bookkeeping: setting the event schedules a callback, and the loop's next turn resumes the waiting task "
       "(asyncio's loop is partly C; trio's scheduler is Python). Through a socket, a thread blocks in recv and the "
       "kernel wakes it directly, while a task pays for the loop's turn through epoll, the selector and its "
       "callbacks on every readiness event. Which side is cheaper is an empirical matter of how much Python each "
       "path runs; the line under the verdict reads it from the figures.")


def read_with(results: Results, design: Design) -> list[str]:
    """Which way each comparison went here, from the figures (the seed expects tasks far cheaper by event,
    about equal through I/O)."""
    micro = results.micro()
    if not all(k in micro for k in NEED):
        return []
    us = {k: micro[k][0] * 1e6 for k in NEED}
    task = min(us["switch-asyncio-event"], us["switch-trio-event"])
    io_task = min(us["switch-asyncio-socket"], us["switch-trio-socket"])
    thread, io_thread = us["switch-threads-lock"], us["switch-threads-socket"]

    def way(t: float, k: float) -> str:
        return f"threads {'cheaper' if t < k else 'dearer'} ({t:.1f} against {k:.1f} us, {max(t, k) / min(t, k):.1f}x)"
    return [f"By event or lock: {way(thread, task)}; through a socket: {way(io_thread, io_task)}.",
            "These pyperf workers are not pinned to a core, so the two threads of a switch may run on different "
            "cores; the first edition measured CPython 3.11 on another machine (results/claims-20261121-*/micro), "
            "so figures from the two editions differ by interpreter and machine at once."]
