"""What ``make bench`` reports: medians with their spread, CPU over each runtime's own floor,
and the targets checked as same-run ratios (a terminal table, and a markdown file).

Every ratio is taken within a round (two servers measured minutes apart on
the same machine), then summarised over the rounds as median [min-max]. A
target is *met* when every round meets it, *not met* when no round does, and
*inconclusive* when the rounds straddle it: the spread is then wider than the
distance to the target, and only a quieter machine or more rounds can say.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from .servers import FLOOR_OF, astra_name

# Per-run values summarised over rounds; wrk_cpu is wrk's CPU time over the run's wall time.
METRICS: dict[str, Callable[[dict], float | None]] = {
    "requests_per_s": lambda r: r["requests_per_s"],
    "p99_us": lambda r: r["latency_us"]["p99"],
    "cpu_us_per_request": lambda r: r["cpu_us_per_request"],
    "wrk_cpu": lambda r: r.get("wrk_cpu_share"),
}
# The best of several servers in a round (for "the best runtime"), and how a ratio reads:
# requests/s ours over theirs; CPU per request ours over theirs; p99 theirs over ours.
BEST = {"rps": max, "cpu": min, "p99": min}
VALUE = {"rps": METRICS["requests_per_s"], "cpu": METRICS["cpu_us_per_request"], "p99": METRICS["p99_us"]}
WRK_BOUND = 0.9  # wrk busy this much of its core: the server may be faster than the figure says


def spread_of(values) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def runtime_of(server: str) -> str | None:
    """astra-hybrid/h11@6c80265 -> hybrid; a peer -> None."""
    if not server.startswith("astra-"):
        return None
    return server[len("astra-"):].split("/")[0].split("@")[0]


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (server, conns), in the order measured: the run with the median requests/s
    (for p50, errors and the like), plus each metric's median and range over the rounds."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["conns"]), []).append(run)
    rows = []
    for (server, conns), group in groups.items():
        ordered = sorted(group, key=lambda r: r["requests_per_s"])
        row = dict(ordered[(len(ordered) - 1) // 2])
        row["rounds"] = len(group)
        row["requests_per_s_all"] = [r["requests_per_s"] for r in group]
        row["summary"] = {key: spread_of(value(r) for r in group) for key, value in METRICS.items()}
        row["errors_all_rounds"] = sum(sum(r["errors"].values()) for r in group)
        row["other_cpus_max"] = max(r["other_cpus"] for r in group)
        floor = FLOOR_OF.get(runtime_of(server) or "")
        if floor:
            row["own_floor"] = floor
            row["cpu_x_own_floor"] = ratio_spread(runs, [server], [floor], conns, "cpu")
        rows.append(row)
    return rows


def per_round(runs: list[dict], ours: list[str], theirs: list[str], conns: int, metric: str) -> list[float]:
    """The ratio ``metric`` of ours to theirs in each round both sides have; with several
    servers on a side, the best of them in that round."""
    found: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["conns"] == conns and r["server"] in (*ours, *theirs) and VALUE[metric](r):
            found.setdefault(r["round"], {})[r["server"]] = VALUE[metric](r)
    ratios = []
    for values in found.values():
        mine = [values[s] for s in ours if s in values]
        other = [values[s] for s in theirs if s in values]
        if mine and other:
            a, b = BEST[metric](mine), BEST[metric](other)
            ratios.append(b / a if metric == "p99" else a / b)
    return ratios


def ratio_spread(runs, ours, theirs, conns, metric) -> dict | None:
    values = per_round(runs, ours, theirs, conns, metric)
    summary = spread_of(values)
    return summary and summary | {"per_round": values}


def verdict(summary: dict | None, op: str, target: float | None) -> str:
    if summary is None:
        return "not measured"
    if target is None:
        return "-"
    low, high = summary["min"], summary["max"]
    if op == ">=":
        return "met" if low >= target else "NOT met" if high < target else "inconclusive"
    return "met" if high <= target else "NOT met" if low > target else "inconclusive"


def targets(runtimes: list[str]) -> list[tuple]:
    """(label, ours, theirs, conns, metric, op, target): issue 15's, then earlier issues' (h11 path)."""
    fast = {rt: astra_name(rt, "httptools") for rt in runtimes}
    slow = {rt: astra_name(rt, "h11") for rt in runtimes}
    uvloop = "uvicorn-httptools-uvloop"
    need = {"asyncio": 1.2, "asyncio+uvloop": 1.2, "threaded": 1.2, "hybrid": 0.9, "trio": 0.9}
    checks = [(f"{fast[rt]} vs {uvloop}", [fast[rt]], [uvloop], 64, "rps", ">=", need.get(rt))
              for rt in runtimes]
    checks.append(("best astra httptools vs best granian", list(fast.values()), ["granian-wsgi", "granian-asgi"],
                   64, "rps", ">=", 0.5))
    checks += [(f"{fast[rt]} CPU/request vs its floor {FLOOR_OF[rt]}", [fast[rt]], [FLOOR_OF[rt]], 64, "cpu",
                "<=", 2.5) for rt in runtimes if rt in FLOOR_OF]
    checks += [(f"{slow[rt]} vs uvicorn-h11", [slow[rt]], ["uvicorn-h11"], 64, "rps", ">=", 1.5) for rt in runtimes]
    earlier = [("threaded", "hypercorn", 64, "rps", 2.0), ("threaded", "waitress", 64, "rps", 1.0),
               ("hybrid", "waitress", 64, "rps", 1.0), ("hybrid", "waitress", 1000, "rps", 1.0),
               ("hybrid", "waitress", 1000, "p99", 10.0), ("asyncio", "hypercorn", 64, "rps", 2.0),
               ("asyncio", "hypercorn", 1000, "rps", 2.0), ("trio", "hypercorn-trio", 64, "rps", 2.0),
               ("trio", "hypercorn-trio", 1000, "rps", 2.0)]
    checks += [(f"{slow[rt]} vs {peer}" + (" (p99)" if metric == "p99" else ""), [slow[rt]], [peer], conns,
                metric, ">=", target) for rt, peer, conns, metric, target in earlier if rt in slow]
    return checks


def check_targets(runs: list[dict], runtimes: list[str], planned: set[str], conns_run: list[int]) -> list[dict]:
    """``make bench``'s targets (:func:`targets`), judged by :func:`judge_targets`."""
    return judge_targets(runs, targets(runtimes), planned, conns_run)


def judge_targets(runs: list[dict], checks_wanted: list[tuple], planned: set[str], conns_run: list[int]) -> list[dict]:
    """Every target whose two sides were in the plan (only the planned servers of a side count);
    one that was planned but has no ratio (a server failed in every round) says "not measured"."""
    checks = []
    for label, ours, theirs, conns, metric, op, target in checks_wanted:
        ours = [s for s in ours if s in planned]
        if conns not in conns_run or not ours or planned.isdisjoint(theirs):
            continue
        summary = ratio_spread(runs, ours, theirs, conns, metric)
        checks.append({"check": label, "ours": ours, "theirs": theirs, "conns": conns, "metric": metric,
                       "op": op, "target": target, "ratio": summary, "verdict": verdict(summary, op, target),
                       "wrk_bound": wrk_bound(runs, [*ours, *theirs], conns) if metric == "rps" else []})
    return checks


def wrk_bound(runs: list[dict], servers: list[str], conns: int) -> list[str]:
    """Servers whose requests/s wrk may have capped in some round: their figure is a lower bound."""
    return sorted({r["server"] for r in runs if r["server"] in servers and r["conns"] == conns
                   and (r.get("wrk_cpu_share") or 0) >= WRK_BOUND})


# Formatting -------------------------------------------------------------------------

def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def times(v: float) -> str:
    return f"{v:.2f}x"


def cell(summary: dict | None, fmt: Callable[[float], str]) -> str:
    """median [min-max], or the one value of a single round."""
    if summary is None:
        return "-"
    if summary["min"] == summary["max"]:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} [{fmt(summary['min'])}-{fmt(summary['max'])}]"


def row_cells(row: dict) -> dict[str, str]:
    s = row["summary"]
    wrk = s["wrk_cpu"]
    return {
        "req/s": cell(s["requests_per_s"], lambda v: f"{v:,.0f}"),
        "p99": cell(s["p99_us"], fmt_us),
        "CPU us/req": cell(s["cpu_us_per_request"], lambda v: f"{v:.1f}"),
        "x own floor": cell(row.get("cpu_x_own_floor"), times),
        "errors": str(row["errors_all_rounds"]),
        "wrk CPU": "-" if wrk is None else f"{wrk['max']:.0%}" + (" (bound?)" if wrk["max"] >= WRK_BOUND else ""),
        "other": f"{row['other_cpus_max']:.2f}",
    }


def print_report(rows: list[dict], checks: list[dict]) -> None:
    columns = ["req/s", "p99", "CPU us/req", "x own floor", "errors", "wrk CPU", "other"]
    cells = [(row, row_cells(row)) for row in rows]
    widths = {c: max([len(c), *(len(x[c]) for _, x in cells)]) + 2 for c in columns}
    w = max([16, *(len(r["server"]) + 2 for r in rows)])
    print(f"\n{'server':<{w}}{'conns':>6}" + "".join(f"{c:>{widths[c]}}" for c in columns))
    for row, x in cells:
        print(f"{row['server']:<{w}}{row['conns']:>6}" + "".join(f"{x[c]:>{widths[c]}}" for c in columns))
    print("(median [min-max] over the rounds; x own floor: CPU per request over the runtime's raw floor's, "
          "round by round; errors: wrk's, all rounds; wrk CPU: its busiest round; other: CPUs busy just "
          "before a run, server idle, no wrk, worst round)\n")
    for c in checks:
        label = f"{c['check']} @ {c['conns']} conns"
        target = "" if c["target"] is None else f"  (target {c['op']} {c['target']:g}x: {c['verdict']})"
        bound = f"  wrk-bound: {', '.join(c['wrk_bound'])}" if c["wrk_bound"] else ""
        print(f"{label:<72} {cell(c['ratio'], times):<24}{target}{bound}")
    if any(r["other_cpus_max"] > 0.2 for r in rows):
        print("WARNING: something else was using the machine around some runs (see 'other'): "
              "treat those rows with care, or run again on a quiet box")


# Markdown, next to the JSON ----------------------------------------------------------

def markdown(document: dict) -> str:
    meta, rows = document["metadata"], document["results"]
    lines = [f"# hello_bench, {meta['date']}", "",
             f"Commit {meta.get('commit', '?')}{' (with uncommitted changes)' if meta.get('dirty') else ''}; "
             f"Python {meta['python_version'].split()[0]}; {meta['wrk_version']}; "
             + ("server on CPU 0, wrk on CPU 1" if meta["pinned"] else "UNPINNED") + "; "
             f"{meta['repeat']} round(s), interleaved; {meta['duration_s']} s measured after {meta['warmup_s']} s "
             "of warm-up per level.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".", "",
             "Cells are median [min-max] over the rounds. *x own floor*: CPU per request over the "
             "runtime's raw floor's, round by round. *wrk CPU*: wrk's share of its core in the busiest "
             f"round; at {WRK_BOUND:.0%} and above wrk may be what limits the figure.", ""]
    lines += checks_markdown(document["checks"])
    for conns in meta["conns"]:
        lines += table_markdown([r for r in rows if r["conns"] == conns], conns)
    lines += ["## Notes", "", *(f"- {note}" for note in meta["notes"]), ""]
    return "\n".join(lines)


def checks_markdown(checks: list[dict]) -> list[str]:
    lines = ["## Targets, as same-run ratios", "",
             "| check | conns | ratio median [min-max] | target | verdict |", "| --- | ---: | ---: | ---: | --- |"]
    for c in checks:
        target = "-" if c["target"] is None else f"{c['op']} {c['target']:g}x"
        bound = f" (wrk-bound: {', '.join(c['wrk_bound'])})" if c["wrk_bound"] else ""
        lines.append(f"| {c['check']} | {c['conns']} | {cell(c['ratio'], times)} | {target} | {c['verdict']}{bound} |")
    return lines + ["", "A target is met when every round meets it, not met when none does, inconclusive "
                    "when the rounds straddle it. *wrk-bound*: wrk was busy 90% of its core or more in some "
                    "round for that server, so its requests/s is a lower bound (against a wrk-bound peer, "
                    "astra's ratio is overstated).", ""]


def table_markdown(rows: list[dict], conns: int) -> list[str]:
    columns = ["req/s", "p99", "CPU us/req", "x own floor", "errors", "wrk CPU", "other"]
    lines = [f"## {conns:,} connection{'s' if conns != 1 else ''}", "",
             "| server | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for row in rows:
        x = row_cells(row)
        floor = f" ({row['own_floor']})" if row.get("own_floor") else ""
        lines.append(f"| {row['server']}{floor} | " + " | ".join(x[c] for c in columns) + " |")
    return lines + [""]
