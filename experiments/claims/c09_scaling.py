"""Claim 9: processes sharing a port scale CPU-bound handlers, and p99 rises sharply at saturation."""

from __future__ import annotations

from pathlib import Path

from ..curves import capacity, curve
from .claim import Claim
from .results import ASYNC, FAILS, HOLDS, INCONCLUSIVE, Design, Results, Verdict, combine, fmt, missing

RULE = """\
Measured: open loop, the cpu workload, 64 connections, rates rising until two past the knee, 2 rounds, with 1
server process on CPU 0 and with 2 processes (SO_REUSEPORT) on CPUs 0 and 1 (the load generator then shares
both). Capacity = the highest rate sustained (95% answered, p99 under 100 ms), on the median rounds.
For each runtime of the design and each async runtime: g = capacity with 2 processes / with 1; the ladder's
step at the 1-process capacity, s = (next rate / capacity) - 1, is g's resolution.
Two parts, judged on the design's best runtime (the highest 1-process capacity):
1. linear scaling: g >= 1.8 (the seed's 11k / 6k = 1.83): holds; g(1 + s) < 1.8: does not hold;
   else inconclusive. A capacity at the top of the rates tried (a failed run counts as tried), or no
   2-process curve, is only a lower bound: then inconclusive;
2. a sharp knee: p99 at the first rate not sustained is at least 10x p99 at the lightest rate (1 process):
   holds; less: does not hold; no rate missed (the knee not reached): inconclusive.
Verdict: both: holds; one: holds with a caveat; neither, one inconclusive: inconclusive; neither: does not."""


def attempted(rows: list[dict], runtime: str) -> list[dict]:
    """Every rate tried on ``runtime`` (failed runs included, rates skipped past the knee not), by rate."""
    return sorted((r for r in rows if r["runtime"] == runtime and r["rate"] is not None
                   and "past the knee" not in str(r.get("error") or "")), key=lambda r: r["rate"])


def step(points: list[dict], cap: float) -> float:
    above = [r["rate"] for r in points if r["rate"] > cap]
    return (min(above) / cap - 1) if above else 0.0


def sharp(points: list[dict]) -> bool | None:
    if not points or not points[0]["p99_ms"]:
        return None
    first_miss = next((r for r in points if not r["sustained"]), None)
    if first_miss is None or first_miss["p99_ms"] is None:
        return None
    return first_miss["p99_ms"] >= 10 * points[0]["p99_ms"]


def judge(results: Results, design: Design) -> Verdict:
    one, two = results.rows("scaling", "1-process"), results.rows("scaling", "2-processes")
    if not one or not two:
        return missing("scaling rows")
    numbers, table = [], {}
    for rt in design.runtimes + ASYNC:
        p1, p2 = curve(one, rt, "cpu"), curve(two, rt, "cpu")
        c1, c2 = capacity(p1), capacity(p2)
        if not p1:
            continue
        table[rt] = (p1, c1, c2)
        numbers.append(f"{rt}: capacity {fmt(c1, ',.0f', '')} req/s with 1 process, {fmt(c2, ',.0f', '')} with 2"
                       + (f" ({c2 / c1:.2f}x)" if c1 and c2 else "")
                       + f"; p99 at the lightest rate {fmt(p1[0]['p99_ms'], '.1f', ' ms')}")
    mine = {rt: v for rt, v in table.items() if rt in design.runtimes and v[1]}
    if not mine:
        return missing(f"a sustained rate for {', '.join(design.runtimes)}")
    rt = max(mine, key=lambda k: mine[k][1])
    p1, c1, c2 = mine[rt]
    g = (c2 or 0) / c1
    s = step(attempted(one, rt), c1)
    p2 = attempted(two, rt)
    # A capacity with no higher rate tried (or every higher one skipped) is a lower bound; a failed run at a
    # higher rate is a miss, not a gap.
    censored = not s or not p2 or (c2 is not None and c2 >= max(r["rate"] for r in p2))
    linear = (INCONCLUSIVE if censored else HOLDS if g >= 1.8 else FAILS if g * (1 + s) < 1.8 else INCONCLUSIVE)
    knee = sharp(p1)
    knee_part = INCONCLUSIVE if knee is None else HOLDS if knee else FAILS
    summary = (f"{rt}: 2 processes sustain {fmt(g)} what 1 does (ladder resolution {s:.0%}): {linear}; "
               f"sharp knee: {'yes' if knee else 'no' if knee is not None else 'not reached'}")
    return Verdict(combine([linear, knee_part]), summary, numbers, WHY,
                   plots=[f"{results.run_dir('scaling', lbl)}/curves-cpu-h1.png" for lbl in ("1-process", "2-processes")
                          if results.run_dir("scaling", lbl)],
                   sources=[f"{results.run_dir('scaling', lbl)}/runs.jsonl" for lbl in ("1-process", "2-processes")
                            if results.run_dir("scaling", lbl)])


CLAIM = Claim(9, "CPU-bound handlers scale linearly with processes sharing the port (SO_REUSEPORT); p99 rises sharply "
                 "once the server saturates", "003", "Do processes scale CPU-bound Python, and where is the knee?",
              ("scaling",), RULE, judge, Path(__file__))


# Presentation ------------------------------------------------------------------------

WHY = ("Separate processes do not share a GIL, so CPU-bound Python work scales with processes as the seed's Rust "
       "threads did. On this 2-core machine the second process shares the second core with the load generator, so "
       "a fair measurement shows less than 2x; a ratio above 2 is the ladder's coarse steps and the noise of two "
       "rounds at the one-process capacity (the rows below the verdict give each round). The open-loop curve shows "
       "the knee as the rate where the queue starts to grow; past it every request waits behind all the ones "
       "before it.")


def read_with(results: Results, design: Design) -> list[str]:
    """Each round's p99 where the capacity was decided: with two rounds, the worse one sets it."""
    from ..curves import rounds_at_capacity  # presentation only: imported here to leave the rule untouched
    from .sittings import SET_ASIDE

    notes = []
    for label in ("1-process", "2-processes"):
        rows = results.rows("scaling", label)
        for rt in design.runtimes + ASYNC:
            points = curve(rows, rt, "cpu")
            if points:
                notes.append(f"{rt}, {label}: {rounds_at_capacity(points)}")
    if notes:
        notes.insert(0, "Each round's p99 at the capacity and at the next rate (the bound is 100 ms; the median of "
                        "two rounds is the worse one, so one slow round sets the capacity):")
    again = list((results.root / "scaling").glob(f"*/experiment-*/{SET_ASIDE}"))
    if again:
        notes.append("Some points were measured again after something else ran beside them: "
                     + ", ".join(f"`{p.relative_to(results.root).as_posix()}`" for p in again)
                     + " (see How the run was measured).")
    return notes
