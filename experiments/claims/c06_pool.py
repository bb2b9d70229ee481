"""Claim 6: a pool of 15 threads per CPU is conservative; the cap can be in the thousands."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import FAILS, HOLDS, INCONCLUSIVE, SEEDS, Design, Results, Verdict, combine, fmt, missing, noise, rps

RULE = """\
Measured: closed loop (wrk), the sleep workload (a 10 ms blocking handler), 1,000 connections, 3 rounds, the
pool runtime of the design (the seeds': pinned; ours: hybrid) with 30 workers (15 per CPU) and with 1,000.
g = throughput with 1,000 / with 30 (median rounds); n = the larger round spread of the two (at least 10%).
Fairness is the slowest client's request rate in the fairness run (h2load, every connection counted): wrk's p99
counts only the requests that completed, so a pool that leaves clients waiting looks fast by it.
Two parts:
1. the cap can be in the thousands: g(1 - n) > 1 and the slowest client no worse off with 1,000 workers
   than with 30: holds; g(1 + n) < 1, or the slowest client worse off: does not hold; else (including no
   fairness figures) inconclusive.
   (No context-switch figures: part 2 inconclusive.)
2. I/O-heavy servers switch only when they block: at least 90% of the server's context switches are voluntary
   with 1,000 workers: holds; otherwise does not hold.
Verdict: both hold: holds; one: holds with a caveat; neither, one inconclusive: inconclusive; neither: does not."""


def pool_runtime(design: Design) -> str:
    return "pinned" if design is SEEDS else "hybrid"


def judge(results: Results, design: Design) -> Verdict:
    rt = pool_runtime(design)
    few = results.row("pool-size", f"{rt}~30", "sleep", 1000)
    many = results.row("pool-size", f"{rt}~1000", "sleep", 1000)
    if few is None or many is None or not few["rps"] or not many["rps"]:
        return missing(f"pool-size rows for {rt}")
    g, n = many["rps"] / few["rps"], noise(few, many, floor=0.10)
    fair = (few.get("fair_min_rps"), many.get("fair_min_rps"))
    worse = None if None in fair else fair[1] < fair[0]  # None: no fairness run to tell
    bigger = (FAILS if g * (1 + n) < 1 or worse else HOLDS if g * (1 - n) > 1 and worse is False
              else INCONCLUSIVE)
    vol, invol = many.get("ctx_vol"), many.get("ctx_invol")
    share = vol / max(1, vol + invol) if vol is not None and invol is not None else None
    blocking = INCONCLUSIVE if share is None else HOLDS if share >= 0.9 else FAILS
    summary = (f"{rt}: 1,000 workers give {fmt(g)} the throughput of 30 (noise {n:.0%}; slowest client "
               f"{fmt(many.get('fair_min_rps'), '.2f', '')} vs {fmt(few.get('fair_min_rps'), '.2f', '')} req/s): "
               f"{bigger}; {fmt(share, '.0%', '')} of switches voluntary: {blocking}")
    return Verdict(combine([bigger, blocking]), summary, lines(few, many), WHY,
                   plots=[results.named("pool-size.png")], sources=[f"{results.run_dir('pool-size')}/runs.jsonl"])


CLAIM = Claim(6, "15 threads per CPU is a conservative default, the cap can be in the thousands; I/O-heavy servers "
                 "context-switch only when they block", "002",
              "Does a large pool help blocking handlers, and are the switches voluntary?", ("pool-size",),
              RULE, judge, Path(__file__))


# Presentation ------------------------------------------------------------------------

def lines(few: dict, many: dict) -> list[str]:
    out = []
    for label, r in (("30 workers (15 per CPU)", few), ("1,000 workers", many)):
        vol, invol = r.get("ctx_vol") or 0, r.get("ctx_invol") or 0
        slowest = "-" if r.get("fair_min_rps") is None else f"{r['fair_min_rps']:.2f}"
        out.append(f"{label}: {rps(r)}, p99 {fmt(r['p99_ms'], ',.0f', ' ms')}, slowest client {slowest} req/s, "
                   f"{r['peak_threads'] or 0:,} threads, context switches {vol:,} voluntary / {invol:,} involuntary "
                   f"({vol / max(1, vol + invol):.0%} voluntary)")
    return out


WHY = ("With handlers that block for 10 ms, N workers cap throughput at N / 10 ms whatever the CPU (30 workers: "
       "3,000 req/s); more workers raise the cap until the CPU is the limit, so for I/O-bound handlers the CPU count "
       "is the wrong yardstick. But a Python request also costs CPU, and on one core the CPU limit may sit close to "
       "the 30-worker cap: then no pool size can show much of a gain (the line under the verdict computes it). On "
       "the seeds' design the pool also bounds how many *connections* are served at all: a worker keeps its "
       "connection between requests, so a connection without a worker waits, and the slowest client's rate shows "
       "it. A thread blocked in sleep, recv or on the GIL's condition variable gives up the CPU itself (a "
       "voluntary switch); involuntary switches are the kernel preempting a thread at the end of its slice, when "
       "more threads are runnable than cores.")


def read_with(results: Results, design: Design) -> list[str]:
    """How much room the experiment left for a gain, and how far the pool really grew."""
    rt = pool_runtime(design)
    few = results.row("pool-size", f"{rt}~30", "sleep", 1000)
    many = results.row("pool-size", f"{rt}~1000", "sleep", 1000)
    if not few or not many or not many.get("cpu_us_per_request"):
        return []
    cpu_limit = 1e6 / many["cpu_us_per_request"]
    return [f"Room for a gain: 30 workers on a 10 ms handler cap throughput at 3,000 req/s; at {rt}~1000's "
            f"{many['cpu_us_per_request']:,.0f} us of CPU per request, one core gives at most about {cpu_limit:,.0f} "
            f"req/s, so 1,000 workers could show at most about {max(cpu_limit, 3000) / 3000:.2f}x over a pool that "
            "reached its cap (the 30-worker pool reached "
            f"{few['rps'] / 3000:.0%} of it).",
            f"The pool starts empty and grows on demand: peak threads in the server were {few['peak_threads'] or 0:,} "
            f"with a cap of 30 and {many['peak_threads'] or 0:,} with a cap of 1,000 (the reactor and the "
            "interpreter's own threads included)."]


DESIGN_TITLES = {"seeds": "the seeds' design (pinned, a pool worker keeps each connection: 30 workers against 1,000)",
                 "ours": "ours (hybrid, a reactor hands requests to a pool: 30 workers against 1,000)"}
