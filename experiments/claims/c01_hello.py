"""Claim 1: hello world, threads against async."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import (
    ASYNC, FAILS, HOLDS, INCONCLUSIVE, Design, Results, Verdict, band, best, fmt, hello_pairs, missing, noise, rps,
)

RULE = """\
Measured: closed loop (wrk), hello world, 64 connections, 3 rounds: r = throughput of the design's best thread
runtime / the best async runtime (asyncio, trio), each the median round; n = the larger round spread of the two
(at least 5%). Judged on the h11 parser; the same rule on the httptools parser is reported beside it.
- holds: r >= 1.15 and r(1 - n) > 1 (threads ahead beyond the noise, by about the seeds' 20%);
- does not hold: r(1 + n) < 1.15 (even the top of the noise band is short of +15%);
- inconclusive: otherwise.
The revised claim (001, 002: threads lag behind in naive hello world) is read off the same r: async ahead when
r(1 + n) < 1."""


def decide(r: float | None, n: float) -> str | None:
    if r is None:
        return None
    low, high = band(r, n)
    if r >= 1.15 and low > 1:
        return HOLDS
    if high < 1.15:
        return FAILS
    return INCONCLUSIVE


def judge(results: Results, design: Design) -> Verdict:
    outcomes, numbers = {}, []
    for parser, (t_name, t, a_name, a) in hello_pairs(results, design).items():
        r, n = t["rps"] / a["rps"], noise(t, a)
        outcomes[parser] = (decide(r, n), r, n)
        numbers.append(f"{parser}, 64 connections: {t_name} {rps(t)} against {a_name} {rps(a)}: threads/async "
                       f"{fmt(r)} (noise band {fmt(band(r, n)[0])}..{fmt(band(r, n)[1])})")
    if "h11" not in outcomes:
        return missing("hello rows at 64 connections")
    verdict, r, n = outcomes["h11"]
    summary = f"threads/async {r:.2f}x at 64 connections (noise {n:.0%})"
    if band(r, n)[1] < 1:
        summary += ": async ahead, as the revised claim [001, 002] expects"
    if "httptools" in outcomes:
        summary += f"; with httptools {outcomes['httptools'][1]:.2f}x: {outcomes['httptools'][0]}"
    numbers += context(results, design)
    return Verdict(verdict, summary, numbers, WHY, plots=[f"{results.run_dir('workloads')}/hello-h1.png"],
                   sources=[f"{results.run_dir('workloads')}/runs.jsonl",
                            f"{results.run_dir('workloads', 'httptools')}/runs.jsonl"])


CLAIM = Claim(1, "Hello world: the thread-based server gives ~20% more throughput than the async one; a later revision "
                 "expects it to lag behind async in naive hello-world benchmarks", "000; 001, 002",
              "Is a thread runtime faster than an event loop on the smallest possible request?", ("workloads",),
              RULE, judge, Path(__file__))


# Presentation ------------------------------------------------------------------------

def context(results: Results, design: Design) -> list[str]:
    """CPU per request on every runtime of the comparison, and 500 connections for reference."""
    cpu = {n: (results.row("workloads", n, "hello", 64) or {}).get("cpu_us_per_request")
           for n in design.runtimes + ASYNC}
    lines = ["CPU per request at 64 connections: " + ", ".join(f"{n} {v:.0f} us" for n, v in cpu.items() if v)]
    t_name, t = best(results, design.runtimes, "hello", 500)
    a_name, a = best(results, ASYNC, "hello", 500)
    if t and a:
        lines.append(f"500 connections (seed 003's client count): {t_name} {rps(t)} against {a_name} {rps(a)}: "
                     f"{fmt(t['rps'] / a['rps'])}")
    return lines


WHY = ("On one core, throughput is close to the inverse of the CPU a request costs, so the ratio between two "
       "runtimes is the ratio of their CPU per request (the line above the verdict). A hello-world request costs "
       "well over a hundred microseconds here whichever runtime runs it: the interpreter executing the protocol "
       "layer and the runtime's bookkeeping. The event loops do all of a request's work on one thread, with no "
       "hand-off; the thread runtimes add one on every request: a GIL hand-over (a futex wake, then the woken "
       "thread reacquiring the lock) between the reactor and a worker (the pool runtimes) or between connection "
       "threads (threaded). On the standard build asyncio also runs on uvloop, an event loop written in C. In Rust "
       "a request costs a few microseconds and so does a switch, so the I/O model can decide the throughput; here "
       "the extra Python each model runs per request decides it, and the parser (httptools against h11) moves "
       "every runtime at once.")
