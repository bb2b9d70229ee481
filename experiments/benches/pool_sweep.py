"""The hybrid runtime's worker-pool size, swept: does a bigger pool help, with and without the GIL?

``python -m experiments.benches.pool_sweep [--sizes 4,15,30,100,300,1000] [--interpreters standard,freethreaded]``

Claim 6 compares two pool sizes; this draws the curve. For each pool size
(``--max-workers``) the harness runs hybrid on each workload and
interpreter at one level of connections. Rounds are interleaved across
sizes (round 1 of every size, then round 2, ...), so a slow minute of this
shared machine lands on every size alike. Writes ``pool-sweep.md`` (median
round, min..max over rounds) and ``pool-sweep.png`` into
``results/pool-sweep-<timestamp>/``, next to each harness run it summarizes.

What to expect, and why it is a question: with a 10 ms blocking handler, N
workers cap throughput at N / 10 ms until the CPU is the limit; with the GIL
every extra runnable thread also queues for one lock. Without it, the kernel
schedules the workers, which may preempt a worker holding a lock.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from ..harness.interpreters import Interpreter, split_label
from ..harness.report import load_run, summarize

ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, sizes: list[int], workloads: str, conc: int, interpreters: str, rounds: int,
        duration: float) -> None:
    for k in range(1, rounds + 1):
        for size in sizes:
            target = out / f"{size}-workers" / f"round-{k}"
            if list(target.glob("experiment-*/runs.jsonl")):
                continue  # measured by an earlier, interrupted sweep
            print(f"round {k}/{rounds}, {size} workers", flush=True)
            # "--conc N," is the one level N; "--conc N" would be the ladder 1, 10, ... N.
            subprocess.run([sys.executable, "-m", "experiments", "run", "--runtimes", "hybrid",
                            "--workloads", workloads, "--conc", f"{conc},", "--interpreters", interpreters,
                            "--duration", str(duration), "--warmup", "1", "--fairness", "2", "--repeat", "1",
                            "--server-args", f"--max-workers {size}", "--results-dir", str(target)],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def collect(out: Path) -> dict[tuple[str, str, int], list[dict]]:
    """(interpreter, workload, size) -> the rows of every round."""
    rows: dict[tuple[str, str, int], list[dict]] = {}
    for size_dir in out.glob("*-workers"):
        size = int(size_dir.name.split("-")[0])
        for run_dir in size_dir.glob("round-*/experiment-*"):
            for row in summarize(load_run(run_dir)):
                if row["failed"]:
                    continue
                _, interpreter = split_label(row["runtime"])
                rows.setdefault((str(interpreter), row["workload"], size), []).append(row)
    return rows


def _median_row(rows: list[dict]) -> dict:
    return sorted(rows, key=lambda r: r["rps"])[(len(rows) - 1) // 2]


def write(out: Path, rows: dict[tuple[str, str, int], list[dict]]) -> Path:
    conc = max((r["conc"] for group in rows.values() for r in group), default=0)  # from the runs, not the options
    lines = [f"# hybrid's pool size, swept ({out.name})", "",
             f"hybrid, {conc:,} connections, server on CPU 0, wrk on CPU 1; req/s is the median round with "
             "min..max over the interleaved rounds; p99 and the rest come from the median round.", "",
             "A pool that cannot take a request answers it 503 with Retry-After at once: those answers are in req/s "
             "(wrk counts responses) and in errors (wrk's non-2xx count).", "",
             "| interpreter | workload | workers | req/s | min..max | errors | p99 ms | slowest client req/s | threads | "
             "switches vol / invol | RSS MiB |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for (interpreter, workload, size), group in sorted(rows.items()):
        r, values = _median_row(group), [g["rps"] for g in group]
        slowest = "-" if r.get("fair_min_rps") is None else f"{r['fair_min_rps']:.2f}"
        lines.append(f"| {interpreter} | {workload} | {size:,} | {statistics.median(values):,.0f} | "
                     f"{min(values):,.0f}..{max(values):,.0f} | {r['errors'] or 0:,} | {r['p99_ms']:,.1f} | {slowest} | "
                     f"{r.get('peak_threads') or 0:,} | {r.get('ctx_vol') or 0:,} / {r.get('ctx_invol') or 0:,} | "
                     f"{r.get('peak_rss_mib') or 0:,.0f} |")
    path = out / "pool-sweep.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(out, rows)
    return path


def _plot(out: Path, rows: dict[tuple[str, str, int], list[dict]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for interpreter, workload in sorted({(i, w) for i, w, _ in rows}):
        sizes = sorted(s for i, w, s in rows if (i, w) == (interpreter, workload))
        groups = [rows[(interpreter, workload, s)] for s in sizes]
        med = [statistics.median(g["rps"] for g in grp) for grp in groups]
        low = [m - min(g["rps"] for g in grp) for m, grp in zip(med, groups)]
        high = [max(g["rps"] for g in grp) - m for m, grp in zip(med, groups)]
        name = f"{workload}, {interpreter}"
        left.errorbar(sizes, med, yerr=[low, high], marker="o", capsize=3, label=name)
        right.plot(sizes, [_median_row(grp)["p99_ms"] for grp in groups], marker="o", label=name)
    for ax, what in ((left, "requests/s (whiskers: min..max of rounds)"), (right, "p99 ms (median round)")):
        ax.set_xscale("log")
        ax.set_xlabel("hybrid --max-workers")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "pool-sweep.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benches.pool_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4,15,30,100,300,1000")
    p.add_argument("--workloads", default="sleep,cpu")
    p.add_argument("--conc", type=int, default=1000)
    p.add_argument("--interpreters", default="standard",
                   help="comma-separated: " + ", ".join(Interpreter) + " (servers only)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--from", dest="source", type=Path, help="summarize an earlier sweep again")
    p.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    out = args.source or args.results_dir / f"pool-sweep-{datetime.now():%Y%m%d-%H%M%S}"
    if not args.source:
        out.mkdir(parents=True, exist_ok=True)
        run(out, [int(s) for s in args.sizes.split(",")], args.workloads, args.conc, args.interpreters,
            args.rounds, args.duration)
    print(f"wrote {write(out, collect(out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
