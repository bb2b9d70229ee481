"""Claim 2: with real work the runtimes converge; blocking I/O favours threads; Postgres is a tie."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import (
    ASYNC, FAILS, HOLDS, INCONCLUSIVE, Design, Results, Verdict, band, best, combine, fmt, missing, noise, rps,
)

RULE = """\
Measured: closed loop, 64 connections, 3 rounds, the design's best thread runtime against the best async runtime:
r_w = threads/async throughput for w in hello, cpu, sleep (10 ms), file, and db (PostgreSQL + Jinja2); n_w =
the larger round spread of the two rows (at least 5%). Three parts, each holds / does not hold / inconclusive:
1. converge: every heavier workload's gap |1 - r_w| (cpu, sleep, file, db) is no larger than hello's
   |1 - r_hello| + 5 points: holds; a gap larger by more than its noise n_w: does not hold; else inconclusive.
2. blocking I/O favours threads by ~20%: for sleep and file, r_w >= 1.15 with r_w(1 - n_w) > 1: holds;
   r_w(1 + n_w) < 1.15: does not hold; else inconclusive. The part holds when both hold, does not when
   both do not, else inconclusive.
3. Postgres + templating about the same: |1 - r_db| <= 0.15 with the band [r(1-n), r(1+n)] inside 0.85..1.15:
   holds; the band entirely outside 0.85..1.15: does not hold; else inconclusive.
Verdict: every part holds: holds; some hold: holds with a caveat; none holds and some inconclusive:
inconclusive; none holds: does not hold."""

HEAVIER = ("cpu", "sleep", "file")


def _ratio(results: Results, design: Design, workload: str, experiment: str) -> tuple[float | None, float, list]:
    t_name, t = best(results, design.runtimes, workload, 64, experiment)
    a_name, a = best(results, ASYNC, workload, 64, experiment)
    if t is None or a is None:
        return None, 0.0, []
    r = t["rps"] / a["rps"]
    return r, noise(t, a), [f"{workload} at 64: {t_name} {rps(t)} against {a_name} {rps(a)}: {fmt(r)}"]


def _converge(hello: float, gaps: dict) -> str:
    limit = abs(1 - hello) + 0.05
    states = []
    for r, n in gaps.values():
        if abs(1 - r) <= limit:
            states.append(HOLDS)
        elif abs(1 - r) - n > limit:
            states.append(FAILS)
        else:
            states.append(INCONCLUSIVE)
    return HOLDS if all(s == HOLDS for s in states) else FAILS if FAILS in states else INCONCLUSIVE


def _blocking(r: float, n: float) -> str:
    low, high = band(r, n)
    return HOLDS if r >= 1.15 and low > 1 else FAILS if high < 1.15 else INCONCLUSIVE


def _tie(r: float, n: float) -> str:
    low, high = band(r, n)
    if abs(1 - r) <= 0.15 and low >= 0.85 and high <= 1.15:
        return HOLDS
    return FAILS if high < 0.85 or low > 1.15 else INCONCLUSIVE


def judge(results: Results, design: Design) -> Verdict:
    measured, numbers = {}, []
    for workload in ("hello",) + HEAVIER:
        r, n, lines = _ratio(results, design, workload, "workloads")
        if r is not None:
            measured[workload] = (r, n)
            numbers += lines
    r, n, lines = _ratio(results, design, "db", "db")
    if r is not None:
        measured["db"] = (r, n)
        numbers += lines
    if "hello" not in measured or not all(w in measured for w in HEAVIER):
        return missing("workload rows at 64 connections")
    converge = _converge(measured["hello"][0], {w: v for w, v in measured.items() if w != "hello"})
    sleep, file = (_blocking(*measured[w]) for w in ("sleep", "file"))
    blocking = sleep if sleep == file else INCONCLUSIVE
    tie = _tie(*measured["db"]) if "db" in measured else INCONCLUSIVE
    parts = [converge, blocking, tie]
    summary = (f"converge: {converge} (hello gap {abs(1 - measured['hello'][0]):.0%}, heavier "
               + ", ".join(f"{w} {abs(1 - measured[w][0]):.0%}" for w in measured if w != "hello")
               + f"); blocking I/O +20% for threads: {blocking} (sleep {fmt(measured['sleep'][0])}, file "
               f"{fmt(measured['file'][0])}); Postgres about the same: {tie}"
               + (f" ({fmt(measured['db'][0])})" if "db" in measured else " (not measured)"))
    return Verdict(combine(parts), summary, numbers + cpu_lines(results, design), WHY,
                   plots=[f"{results.run_dir('workloads')}/{w}-h1.png" for w in HEAVIER]
                   + ([f"{results.run_dir('db')}/db-h1.png"] if results.run_dir("db") else []),
                   sources=[f"{results.run_dir('workloads')}/runs.jsonl"]
                   + ([f"{results.run_dir('db')}/runs.jsonl"] if results.run_dir("db") else []))


CLAIM = Claim(2, "With more work per request, especially blocking I/O, the difference diminishes; with pure blocking "
                 "I/O threads are ~20% ahead; with Postgres and templating throughput is about the same",
              "001, 002; 000", "Do the runtimes converge as handlers do real work, and who wins on blocking I/O?",
              ("workloads", "db"), RULE, judge, Path(__file__))


# Presentation ------------------------------------------------------------------------

def cpu_lines(results: Results, design: Design) -> list[str]:
    db = {n: results.row("db", n, "db", 64) or {} for n in design.runtimes + ASYNC}
    if not any(db.values()):
        return []
    postgres = _postgres_cpu(results)
    return ["db at 64: server CPU per request " + ", ".join(
        f"{n} {r['cpu_us_per_request']:.0f} us (PostgreSQL "
        + (f"{postgres[n]:.0f} us" if postgres.get(n) is not None else "not recorded") + ")"
        for n, r in db.items() if r.get("cpu_us_per_request"))]


def _postgres_cpu(results: Results) -> dict[str, float]:
    """PostgreSQL's CPU per request, median of the rounds, from the raw runs (the summarized rows leave it out)."""
    import statistics

    from ..harness.interpreters import split_label
    from ..harness.report import load_run

    run = results.run_dir("db")
    if run is None:
        return {}
    values: dict[str, list[float]] = {}
    for r in load_run(results.root / run).get("runs") or []:
        runtime, interpreter = split_label(r.get("runtime", ""))
        value = (r.get("cost") or {}).get("db_cpu_us_per_request")
        if interpreter is results.interpreter and r.get("conc") == 64 and not r.get("error") and value is not None:
            values.setdefault(runtime, []).append(value)
    return {rt: statistics.median(v) for rt, v in values.items()}


WHY = ("A heavier request adds the same work to every runtime only where the work itself is the same: cpu runs "
       "the same Python on both sides, and sleep costs no CPU on either, so there the fixed per-request cost of the "
       "runtime is a smaller share and the ratio moves towards 1 (the gaps above). Where the async side does the "
       "work differently, the ratio reflects that difference instead: file is read through anyio.Path on the "
       "event loops (a worker thread per read, so a loop-to-thread hand-off on top of the work) and directly on "
       "the thread runtimes, which is why threads lead there. With the database, asyncio awaits psycopg's asyncio "
       "API while trio and the thread runtimes block in its C driver on a worker thread, and the server also renders "
       "a Jinja2 template; PostgreSQL runs on the load generator's core, and its CPU per request is shown next to "
       "the server's so that a reader can see which of the two a request waits for.")
