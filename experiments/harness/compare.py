"""Compare two experiment runs: is the second within a tolerance of the first?

``python -m experiments.harness.compare RUN_A RUN_B [--max-conc 1000] [--tolerance 0.10]``

For every (runtime, workload, protocol, concurrency) point both runs
measured, up to ``--max-conc``, it prints the median requests/s of each and
their ratio, marks points outside the tolerance, and ends with how many
points agree. It is the check behind "a second identical run gives median
throughput within 10% of the first". (``python -m pyperf compare_to`` on the
runs' ``pyperf/`` files gives the same comparison with pyperf's statistics.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import load_run, summarize


def compare(a: Path, b: Path, max_conc: int, tolerance: float) -> tuple[list[dict], int]:
    # Closed-loop points only: in open loop throughput is the offered rate below the knee, so agreeing there
    # says nothing (experiments.claims.compare compares open-loop capacities instead).
    rows_a = {_key(r): r for r in summarize(load_run(a)) if not r.get("failed") and r.get("rate") is None}
    rows_b = {_key(r): r for r in summarize(load_run(b)) if not r.get("failed") and r.get("rate") is None}
    points = []
    for key in sorted(set(rows_a) & set(rows_b), key=lambda k: (k[1], k[2], k[3], k[0])):
        if key[3] > max_conc:
            continue
        first, second = rows_a[key]["rps"], rows_b[key]["rps"]
        if not first or not second:
            continue
        ratio = second / first
        points.append({"runtime": key[0], "workload": key[1], "proto": key[2], "conc": key[3],
                       "first": first, "second": second, "ratio": ratio,
                       "within": abs(ratio - 1) <= tolerance})
    return points, sum(p["within"] for p in points)


def _key(row: dict) -> tuple:
    return (row["runtime"], row["workload"], row["proto"], row["conc"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.harness.compare", description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--max-conc", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args(argv)
    points, agreeing = compare(args.first, args.second, args.max_conc, args.tolerance)
    print(f"{'workload':<9}{'conc':>6}  {'runtime':<10}{'first':>10}{'second':>10}{'ratio':>8}")
    for p in points:
        mark = "" if p["within"] else f"  outside {args.tolerance:.0%}"
        print(f"{p['workload']:<9}{p['conc']:>6}  {p['runtime']:<10}{p['first']:>10,.0f}{p['second']:>10,.0f}"
              f"{p['ratio']:>8.2f}{mark}")
    print(f"\n{agreeing} of {len(points)} points within {args.tolerance:.0%} "
          f"(up to {args.max_conc:,} connections)")
    return 0 if points and agreeing == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
