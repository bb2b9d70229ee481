"""The claims report's side-by-side section: the same measurements with and without the GIL.

When ``make claims INTERPRETERS=...`` ran the servers on several
interpreters, every claim has one verdict per interpreter (same rule, same
rounds). This section puts the figures behind claims 3 to 7 next to each
other, so that a reader sees what removing the GIL moved, and by how much
against the rounds' own spread. It reports; it does not judge: the verdicts
are the rules' (the claim modules of :mod:`experiments.claims`).
"""

from __future__ import annotations

from pathlib import Path

from ..harness.interpreters import Interpreter
from .results import ASYNC, THREADS, Results, Verdict

__all__ = ["WHY_ANCHOR", "draw_gil_plot", "gil_comparison", "changed_verdicts"]

RUNTIMES = THREADS + ASYNC
ANCHOR = "Without the GIL: the same claims, side by side"
WHY_ANCHOR = "Why the figures move without the GIL"


def changed_verdicts(claims: list, judged: dict[Interpreter, list[dict[str, Verdict]]]) -> list[str]:
    """One line per claim and design whose verdict is not the same on every interpreter."""
    lines = []
    for k, claim in enumerate(claims):
        for design in claim.designs():
            words = {i: v[k][design.key].verdict for i, v in judged.items()}
            if len(set(words.values())) > 1:
                lines.append(f"claim {claim.number} ({design.key}): " + ", ".join(f"{w} on {i}" for i, w in words.items()))
    return lines


def gil_comparison(results: dict[Interpreter, Results], meta: dict, plots: list[Path],
                   changed: list[str] | None = None) -> list[str]:
    names = list(results)
    lines = [f"## {ANCHOR}", "",
             "Every harness experiment ran its servers on " + " and ".join(f"`{n}`" for n in names)
             + " in the same interleaved rounds; the micro-benchmarks ran once on each. The rules are the same "
             "for both; the figures below are reported, not judged. A difference smaller than the rounds' spread "
             "(shown as min..max) is noise. `--loop auto` gives the asyncio runtime uvloop where there is a GIL and "
             "asyncio's own loop where there is none (uvloop's thread-safe wake-up is not safe without it): each "
             "interpreter's async side is at its best, so the asyncio rows differ by the loop too.", ""]
    if changed is not None:
        lines += (["Verdicts that differ between the interpreters: " + "; ".join(changed) + "."] if changed
                  else ["Every verdict is the same on both interpreters."]) + [""]
    lines += _why_without_gil(results, meta)
    lines += _table_throughput(results) + _table_tail(results) + _table_scale(results)
    lines += _table_pool(results) + _table_micro(results) + _table_memory(results)
    for plot in plots:
        if plot.name == "gil.png":
            lines += ["![with and without the GIL](./gil.png)", ""]
    return lines


def _gil_pair(results: dict[Interpreter, Results], meta: dict) -> tuple[Results, Results] | None:
    """(with the GIL, without it) when the run measured one interpreter of each kind."""
    facts = meta.get("interpreters") or {}
    without = [r for n, r in results.items() if (facts.get(str(n)) or {}).get("gil_enabled_after_imports") is False]
    with_gil = [r for n, r in results.items() if (facts.get(str(n)) or {}).get("gil_enabled_after_imports")]
    return (with_gil[0], without[0]) if len(without) == 1 and len(with_gil) == 1 else None


def _why_without_gil(results: dict[Interpreter, Results], meta: dict) -> list[str]:
    """The explanation the claims' own texts (written for the GIL) leave out, with this run's figures."""
    pair = _gil_pair(results, meta)
    if pair is None:
        return []
    gil, free = pair
    cost = [(rt, a["cpu_us_per_request"], b["cpu_us_per_request"]) for rt in RUNTIMES
            if (a := gil.row("workloads", rt, "hello", 64)) and (b := free.row("workloads", rt, "hello", 64))
            and a.get("cpu_us_per_request") and b.get("cpu_us_per_request")]
    out = [f"### {WHY_ANCHOR}", ""]
    if cost:
        ratios = [b / a for _, a, b in cost]
        out.append(f"- **Every request costs more CPU**: hello at 64 connections takes {min(ratios):.1f}-"
                   f"{max(ratios):.1f}x the CPU per request without the GIL ("
                   + ", ".join(f"{rt} {a:,.0f} -> {b:,.0f} us" for rt, a, b in cost) + "). CPython 3.13's "
                   "free-threaded build runs without the specialising interpreter, and objects shared between "
                   "threads pay atomic reference counts and per-object locks. One core is still one core, so "
                   "throughput on the server's core falls by about as much.")
    fair = [(rt, a.get("fair_min_rps"), b.get("fair_min_rps")) for rt in ("threaded",)
            if (a := gil.row("workloads", rt, "hello", 500)) and (b := free.row("workloads", rt, "hello", 500))]
    if fair and None not in fair[0][1:]:
        _, a, b = fair[0]
        out.append(f"- **A thread per connection is scheduled by the kernel, not by the race for one lock**: at 500 "
                   f"connections the slowest client of threaded gets {a:.2f} req/s with the GIL and {b:.2f} without. "
                   "With the GIL, a thread that wants to run waits for the holder to block or to ask it to let go "
                   "after the switch interval; without it, every runnable thread is time-sliced by the kernel.")
    memory = [gil.json("memory", "memory.json"), free.json("memory", "memory.json")]
    case = next((c for c in (memory[0] or {}) if "thread" in c and c in (memory[1] or {})), None)
    if case:
        a, b = memory[0][case]["rss_kib_per_unit"], memory[1][case]["rss_kib_per_unit"]
        out.append(f"- **A thread costs more memory** ({case}: {a:.1f} KiB with the GIL, {b:.1f} KiB without): the "
                   "free-threaded build allocates with mimalloc, which gives each thread heaps of its own.")
    pool = [(gil.row("pool-size", "hybrid~1000", "sleep", 1000), free.row("pool-size", "hybrid~1000", "sleep", 1000))]
    if all(pool[0]) and all(r.get("ctx_invol") is not None for r in pool[0]):
        a, b = pool[0]
        out.append(f"- **A large pool on one core turns into preemption**: hybrid with 1,000 workers on a 10 ms "
                   f"handler had {a['ctx_invol']:,} involuntary context switches with the GIL and {b['ctx_invol']:,} "
                   "without. With the GIL, workers queue on it and give way politely; without it, every runnable "
                   "worker is time-sliced, and one preempted while it holds a lock the others need (the pool's, "
                   "a connection's) can make them all wait.")
    out.append("- **The event loops run one thread**, so they have nothing to contend for and lose only the "
               "interpreter's speed; `--loop auto` also gives asyncio its own loop instead of uvloop on this build.")
    return out + [""]


def _rps_range(row: dict | None) -> str:
    if not row or not row.get("rps"):
        return "-"
    values = row.get("rps_all") or [row["rps"]]
    return f"{row['rps']:,.0f} ({min(values):,.0f}..{max(values):,.0f})"


def _num(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: dict | None, b: dict | None, key: str = "rps") -> str:
    if not a or not b or not a.get(key) or not b.get(key):
        return "-"
    return f"{b[key] / a[key]:.2f}x"


def _pairs(results: dict[Interpreter, Results], workloads: tuple[str, ...], conc: int):
    """(workload, runtime, first interpreter's row, second's) for every pair where either was measured."""
    (_, a), (_, b) = list(results.items())[:2]
    for workload in workloads:
        for runtime in RUNTIMES:
            ra, rb = a.row("workloads", runtime, workload, conc), b.row("workloads", runtime, workload, conc)
            if ra or rb:
                yield workload, runtime, ra, rb


def _table_throughput(results: dict[Interpreter, Results]) -> list[str]:
    (na, _), (nb, _) = list(results.items())[:2]
    rows = [f"| {workload} | {runtime} | {_rps_range(ra)} | {_rps_range(rb)} | {_ratio(ra, rb)} | "
            f"{_num((ra or {}).get('cpu_us_per_request'))} | {_num((rb or {}).get('cpu_us_per_request'))} |"
            for workload, runtime, ra, rb in _pairs(results, ("hello", "cpu", "sleep", "file"), 64)]
    if not rows:
        return []
    return ["**Throughput and CPU at 64 connections** (claims 1, 2 and 8; req/s median round, min..max of the "
            "rounds; server on one core):", "",
            f"| workload | runtime | {na} req/s | {nb} req/s | {nb}/{na} | {na} CPU us/req | {nb} CPU us/req |",
            "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]


def _slowest(row: dict | None) -> str:
    return "-" if not row or row.get("fair_min_rps") is None else f"{row['fair_min_rps']:.2f}"


def _table_tail(results: dict[Interpreter, Results]) -> list[str]:
    (na, _), (nb, _) = list(results.items())[:2]
    rows = [f"| {workload} | {runtime} | {_num((ra or {}).get('p99_ms'), ',.1f')} | "
            f"{_num((rb or {}).get('p99_ms'), ',.1f')} | {_slowest(ra)} | {_slowest(rb)} | "
            f"{_num((ra or {}).get('peak_rss_mib'), ',.0f')} | {_num((rb or {}).get('peak_rss_mib'), ',.0f')} |"
            for workload, runtime, ra, rb in _pairs(results, ("hello", "sleep", "cpu", "file"), 500)]
    if not rows:
        return []
    return ["**Tail, fairness and memory at 500 connections** (p99 from wrk's closed loop, the slowest "
            "client's req/s from the fairness run, peak RSS of the server):", "",
            f"| workload | runtime | {na} p99 ms | {nb} p99 ms | {na} slowest client req/s | "
            f"{nb} slowest client req/s | {na} RSS MiB | {nb} RSS MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, ""]


def _table_scale(results: dict[Interpreter, Results]) -> list[str]:
    rows = []
    for conc in (10000, 25000):
        for runtime in ("threaded", "pinned", "pinned~10000", "hybrid") + ASYNC:
            cells = []
            for r in results.values():
                row = r.row("scale", runtime, "hello", conc, rate=2000)
                cells.append("-" if not row else f"{row['ok_rps'] or 0:,.0f} of 2,000 req/s, fewest connections "
                             f"{row.get('conns_steady_min') or 0:,}, {row['errors']:,} errors, "
                             f"p99 {_num(row['p99_ms'], ',.0f')} ms")
            if any(c != "-" for c in cells):
                rows.append(f"| {conc:,} | {runtime} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["**Tens of thousands of connections** (claim 4: open loop, 2,000 req/s, a minute in steady state):", "",
            "| connections | runtime | " + " | ".join(str(n) for n in results) + " |",
            "| --- | --- | " + "--- | " * len(results) + "", *rows, ""]


def _table_pool(results: dict[Interpreter, Results]) -> list[str]:
    rows, measured = [], False
    for runtime in ("pinned", "hybrid"):
        for label in ("30", "1000"):
            cells = []
            for r in results.values():
                row = r.row("pool-size", f"{runtime}~{label}", "sleep", 1000)
                measured = measured or row is not None
                cells.append("-" if not row else f"{_rps_range(row)} req/s, p99 {_num(row['p99_ms'])} ms, switches "
                             f"{row.get('ctx_vol') or 0:,} vol / {row.get('ctx_invol') or 0:,} invol")
            rows.append(f"| {runtime} | {label} | " + " | ".join(cells) + " |")
    if not measured:
        return []
    return ["**Pool size** (claim 6: 10 ms blocking handler, 1,000 connections):", "",
            "| runtime | pool | " + " | ".join(str(n) for n in results) + " |",
            "| --- | --- | " + "--- | " * len(results) + "", *rows, ""]


def _table_micro(results: dict[Interpreter, Results]) -> list[str]:
    micro = {n: r.micro() for n, r in results.items()}
    (na, a), (nb, b) = list(micro.items())[:2]
    names = [k for k in a if k in b]
    if not names:
        return []
    rows = [f"| {k} | {a[k][0] * 1e6:.2f} | {b[k][0] * 1e6:.2f} | {b[k][0] / a[k][0]:.2f}x |" for k in names]
    return ["**Switch and creation costs** (claim 7; pyperf medians, microseconds):", "",
            f"| benchmark | {na} us | {nb} us | {nb}/{na} |", "| --- | --- | --- | --- |", *rows, ""]


def _table_memory(results: dict[Interpreter, Results]) -> list[str]:
    docs = {n: r.json("memory", "memory.json") for n, r in results.items()}
    (na, a), (nb, b) = list(docs.items())[:2]
    if not a or not b:
        return []
    rows = [f"| {case} | {a[case]['rss_kib_per_unit']:.1f} | {b[case]['rss_kib_per_unit']:.1f} |"
            for case in a if case in b]
    return ["**Memory per idle thread or task** (claim 5; RSS KiB each, kernel stack not included):", "",
            f"| case | {na} KiB | {nb} KiB |", "| --- | --- | --- |", *rows, ""]


def draw_gil_plot(run_dir: Path, results: dict[Interpreter, Results]) -> list[Path]:
    """gil.png: hello at 64 connections (req/s, whiskers min..max of the rounds) and p99 at 500 (closed loop)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(results)
    drawn = False
    for k, (name, r) in enumerate(results.items()):
        xs = [i + k * width for i in range(len(RUNTIMES))]
        rows64 = [r.row("workloads", rt, "hello", 64) for rt in RUNTIMES]
        values = [(row or {}).get("rps") or 0 for row in rows64]
        low = [v - min((row or {}).get("rps_all") or [v]) for v, row in zip(values, rows64)]
        high = [max((row or {}).get("rps_all") or [v]) - v for v, row in zip(values, rows64)]
        left.bar(xs, values, width, yerr=[low, high], capsize=3, label=str(name))
        tails = [(r.row("workloads", rt, "hello", 500) or {}).get("p99_ms") or 0 for rt in RUNTIMES]
        right.bar(xs, tails, width, label=str(name))
        drawn = drawn or any(values) or any(tails)
    if not drawn:
        plt.close(fig)
        return []
    for ax in (left, right):
        ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(RUNTIMES))], RUNTIMES)
        ax.legend(fontsize=8)
    left.set_ylabel("requests/s (whiskers: min..max of rounds)")
    left.set_title("hello world, 64 connections", fontsize=9)
    right.set_ylabel("p99 ms (log)")
    right.set_yscale("log")
    right.set_title("hello world, 500 connections (closed loop)", fontsize=9)
    fig.tight_layout()
    path = run_dir / "gil.png"
    fig.savefig(path, dpi=110)
    with plt.rc_context({"svg.hashsalt": "astra"}):  # no date, fixed ids: the same results, the same file
        fig.savefig(path.with_suffix(".svg"), metadata={"Date": None})
    plt.close(fig)
    return [path]
