"""Claim 4: tens of thousands of connections with blocking handlers."""

from __future__ import annotations

from pathlib import Path

from .claim import Claim
from .results import ASYNC, CAVEAT, FAILS, HOLDS, OURS, Design, Results, Verdict, fmt, missing

RULE = """\
Measured: open loop, steady state: 25,000 connections (and 10,000 for reference) held by several server
processes (SO_REUSEPORT), 2,000 requests/s offered in all (one request per connection every 12.5 s: mostly
idle, as the seeds' 25k benchmark), 60 s measured after every connection was opened and a 5 s warm-up.
A runtime *serves* 25,000 connections when, over the measured minute:
- the kernel counts at least 95% of them established (the fewest seen, once a second), and
- the offered rate is sustained: 95% answered 2xx/3xx inside the window, p99 under 1 s.
A runtime whose run failed at 25,000 (the server or the generator gave up) does not serve them.
The seeds' design: holds if pinned serves them with its default pool (15 per CPU); holds with a caveat if
only with a pool in the thousands (pinned~10000: 10,000 workers per process, seed 002); does not hold if neither.
Ours: holds if threaded and hybrid both serve them; holds with a caveat if one does; does not hold if neither.
(No noise band: each point is one minute-long round; the rule asks for yes or no.)"""

CONNS = 25000


def serves(row: dict | None, conns: int = CONNS) -> bool:
    return bool(row and row["sustained"] and (row.get("conns_steady_min") or 0) >= 0.95 * conns)


def judge(results: Results, design: Design) -> Verdict:
    shown = ("pinned", "pinned~10000") if design is not OURS else design.runtimes
    rows = {rt: results.row("scale", rt, "hello", CONNS, rate=2000) for rt in shown + ASYNC}
    attempted = {r["runtime"] for r in results.rows("scale") if r["conc"] == CONNS}  # failed rows too
    if not attempted & set(shown):
        return missing(f"scale rows at {CONNS:,} connections for {', '.join(shown)}")
    numbers = [line(rt, results.row("scale", rt, "hello", c, rate=2000), c)
               for c in (10000, CONNS) for rt in shown + ASYNC]
    if design is OURS:
        ok = [rt for rt in design.runtimes if serves(rows[rt])]
        verdict = HOLDS if len(ok) == len(design.runtimes) else CAVEAT if ok else FAILS
        summary = (f"25,000 mostly idle connections for a minute: served by {', '.join(ok) or 'neither'} "
                   f"of {', '.join(design.runtimes)}")
    else:
        default, thousands = serves(rows["pinned"]), serves(rows["pinned~10000"])
        verdict = HOLDS if default else CAVEAT if thousands else FAILS
        summary = ("25,000 mostly idle connections for a minute on the seeds' design: with its default pool "
                   f"{'served' if default else 'not served'}; with 10,000 workers per process "
                   f"{'served' if thousands else 'not served'}")
    summary += "; event loops: " + ", ".join(f"{rt} {'served' if serves(rows[rt]) else 'not served'}" for rt in ASYNC)
    return Verdict(verdict, summary, numbers, WHY, plots=[],
                   sources=[f"{results.run_dir('scale')}/runs.jsonl"])


CLAIM = Claim(4, "Tens of thousands of concurrent connections are feasible with blocking I/O; very good at 25k",
              "000, 001, 002", "Can blocking handlers hold and serve 25,000 mostly idle connections on this machine?",
              ("scale",), RULE, judge, Path(__file__))


# Presentation ------------------------------------------------------------------------

def line(name: str, r: dict | None, conns: int) -> str:
    if r is None:
        return f"{name} at {conns:,}: no measurement"
    return (f"{name} at {conns:,}: {r['ok_rps'] or 0:,.0f} of 2,000 req/s answered, p99 "
            f"{fmt(r['p99_ms'], ',.0f', ' ms')}, kernel-counted connections: fewest {r.get('conns_steady_min') or 0:,}, "
            f"most {r['conns_established'] or 0:,}; {r['errors'] or 0:,} errors, {r['censored'] or 0:,} censored; "
            f"{r['peak_threads'] or 0:,} threads, {r['peak_rss_mib'] or 0:,.0f} MiB")


WHY = ("Holding a connection is cheap where it is a registered descriptor and a few KiB of state (the reactor "
       "runtimes and the event loops); it costs a thread where a thread waits on it (threaded, and pinned once a "
       "worker has taken the connection: the worker keeps it while it is idle). The seeds' design therefore needs "
       "a pool as large as the number of open connections (seed 002: a cap in the thousands), or newcomers wait in "
       "its queue behind idle connections. With the GIL, thousands of threads also compete for one lock, and an "
       "accept loop that is one thread among them gets it rarely.")


DESIGN_TITLES = {"seeds": "the seeds' design (pinned with its default pool, 15 per CPU, and pinned~10000: "
                          "10,000 workers per process, seed 002)"}


def read_with(results: Results, design: Design) -> list[str]:
    """Whether 2,000 req/s is within each runtime's capacity at all: the rule offers one rate to every runtime
    and interpreter, and a runtime that cannot answer 2,000 req/s on its core with few connections fails at
    25,000 for want of CPU, whatever holding the connections costs. curves/hello measured that capacity in the
    same run (one process on the same core, its own p99 bound)."""
    from ..curves import capacity, curve  # presentation only: the rule above does not use it

    rows = results.rows("curves", "hello")
    shown = ("pinned", "pinned~1000") if design is not OURS else design.runtimes
    lines, short = [], []
    for rt in shown + ASYNC:
        points = curve(rows, rt, "hello")
        if not points:
            continue
        cap = capacity(points)
        lines.append(f"{rt}: {fmt(cap, ',.0f', ' req/s')} with {points[0]['conc']:,} connections"
                     f" (CPU {fmt(points[0].get('cpu_us_per_request'), ',.0f', ' us')} per request at the lightest rate)")
        if cap is None or cap <= 2000:
            short.append(rt)
    notes = _setup(results, (("pinned", "pinned~10000") if design is not OURS else design.runtimes) + ASYNC)
    if not lines:
        return notes
    head = ("Capacity on one core, from curves/hello (highest rate sustained under its p99 bound): "
            + "; ".join(lines) + "." + ("" if design is OURS else " (The curves measure pinned~1000; the rows above "
                                        "use pinned~10000, the same design with a larger pool.)"))
    if not short:
        return [head, "Every runtime shown has room above the 2,000 req/s offered here, so a failure at 25,000 "
                      "connections is about holding them.", *notes]
    return [head, f"For {', '.join(short)}, 2,000 req/s is at or past that capacity even with few connections, so a "
                  "failure at 25,000 may be overload rather than the number of connections: for these the row does "
                  "not separate the two. The rule offers the same rate to every runtime and interpreter; offering "
                  "each a share of its own capacity is a different rule, which needs a new run.", *notes]


def _setup(results: Results, runtimes: tuple[str, ...]) -> list[str]:
    """How the rows were measured, and what 'no measurement' hides: a run that failed."""
    rows = [r for r in results.rows("scale") if r["runtime"] in runtimes and r["workload"] == "hello"]
    processes = sorted({(r["conc"], r["servers"]) for r in rows if r.get("servers")})
    notes = []
    if processes:
        notes.append("Server processes (SO_REUSEPORT), all on the server's one core: "
                     + ", ".join(f"{n} at {c:,} connections" for c, n in processes) + ".")
    failed = [f"{r['runtime']} at {r['conc']:,} ({r['error']})" for r in rows if r["failed"]]
    if failed:
        notes.append("Runs that failed (shown above as no measurement; the rule counts them as not served): "
                     + "; ".join(failed) + ".")
    if any((r.get("conns_established") or 0) > r["conc"] for r in rows):
        notes.append("'Most' can exceed the connections offered: a client whose request timed out or whose "
                     "connection broke opens a new one, and the kernel counts both while the old one closes.")
    return notes
