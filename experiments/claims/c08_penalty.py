"""Claim 8: threads cost a server 2-3x against async."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import (
    CAVEAT, FAILS, HOLDS, INCONCLUSIVE, Design, Results, Verdict, band, fmt, hello_pairs, missing, noise, rps,
)

RULE = """\
Measured: closed loop, hello world, 64 connections, 3 rounds (h11 parser; httptools reported beside it):
r = best async runtime / the design's best thread runtime, throughput of the median rounds; n = the larger round
spread (at least 5%).
- holds: r(1 - n) >= 2 (a 2x penalty or more, beyond the noise);
- holds with a caveat: r(1 + n) < 2 and r(1 - n) > 1.3 (a penalty, smaller than claimed);
- does not hold: r(1 + n) < 2 and r(1 + n) <= 1.3 (no penalty of 30% even at the top of the band);
- inconclusive: otherwise."""


def decide(r: float, n: float) -> str:
    low, high = band(r, n)
    if low >= 2:
        return HOLDS
    if high < 2 and low > 1.3:
        return CAVEAT
    if high <= 1.3:
        return FAILS
    return INCONCLUSIVE


def judge(results: Results, design: Design) -> Verdict:
    outcomes, numbers = {}, []
    for parser, (t_name, t, a_name, a) in hello_pairs(results, design).items():
        r, n = a["rps"] / t["rps"], noise(t, a)
        outcomes[parser] = (decide(r, n), r, n)
        numbers.append(f"{parser}: {a_name} {rps(a)} against {t_name} {rps(t)}: async/threads {fmt(r)}")
    if "h11" not in outcomes:
        return missing("hello rows at 64 connections")
    micro = results.micro()
    if "switch-threads-lock" in micro and "switch-asyncio-event" in micro:
        numbers.append(f"a bare switch, threads/asyncio tasks: "
                       f"{micro['switch-threads-lock'][0] / micro['switch-asyncio-event'][0]:.1f}x")
    verdict, r, n = outcomes["h11"]
    summary = f"a server pays {fmt(r)} for threads (noise {n:.0%}), not 2-3x" if verdict != HOLDS else \
        f"async/threads {fmt(r)}"
    if "httptools" in outcomes:
        summary += f"; with httptools {fmt(outcomes['httptools'][1])}: {outcomes['httptools'][0]}"
    return Verdict(verdict, summary, numbers, WHY,
                   plots=[results.named("micro.png"), f"{results.run_dir('workloads')}/hello-h1.png"],
                   sources=["micro/" + results.named("micro.json"), f"{results.run_dir('workloads')}/runs.jsonl"])


CLAIM = Claim(8, "Threads are a 2-3x performance hit against async", "004",
              "Does the switch cost show up in a server's throughput?", ("micro", "workloads"), RULE, judge,
              Path(__file__))


# Presentation ------------------------------------------------------------------------

WHY = ("A switch is a small part of a request in Python: a hello-world request costs well over a hundred "
       "microseconds of CPU (claim 1), and a request needs one or two switches, whose cost claim 7 measures (its "
       "figures are under that claim: from a few microseconds for a thread hand-off to tens for a task woken "
       "through a socket). The ratio of micro-benchmarks does not survive contact with a real request path: what "
       "separates the runtimes is the rest of the Python each one runs per request.")
