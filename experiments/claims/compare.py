"""Two claims runs side by side: does a rerun of ``make claims`` reproduce the report?

``python -m experiments.claims.compare FIRST SECOND [-o results/REPRODUCIBILITY.md]``

FIRST and SECOND are ``results/claims-*`` directories. Both are judged again
with the current `claim modules (`experiments/claims/cNN_*.py`)` (same thresholds for both), and
for every measurement the two runs share it compares:

- the verdicts of the ten claims;
- harness throughput, point by point (runtime, workload, connections), as
  the ratio SECOND / FIRST, against the run-to-run noise each run measured
  itself (the spread of its repeated rounds) and against fixed 10% / 20%
  bands;
- the pyperf micro-benchmarks (mean and standard deviation of each);
- memory per idle thread and task;
- the Slowloris visitor's success and p99 per case.

What "within noise" means is printed with the numbers, so a reader can
disagree with the threshold rather than trust a word. Measurements only one
run has (an experiment that changed between them) are listed as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ..harness.compare import compare
from ..harness.report import load_run, summarize
from . import CLAIMS
from .results import Results

TOLERANCES = (0.10, 0.20)


def _pct(x: float) -> str:
    return f"{x - 1:+.0%}"


def _rate(value: float | None) -> str:
    return "none sustained" if value is None else f"{value:,.0f}"


def _spread(noise: float | None) -> str:
    return "-" if noise is None else f"{noise:.0%}"


def changed_experiments(a_dir: Path, b_dir: Path) -> set[str]:
    """Experiments whose description differs between the runs: their claims are not like for like."""
    whats = [(json.loads((d / "claims.json").read_text()).get("experiments") or {}) if (d / "claims.json").exists()
             else {} for d in (a_dir, b_dir)]
    return {name for name in whats[0].keys() & whats[1].keys()
            if whats[0][name].get("what") != whats[1][name].get("what")}


def verdict_rows(first: Results, second: Results) -> list[tuple[str, str, str]]:
    """(claim and design, first run's verdict, second's), both judged by the current rules."""
    return [(f"{claim.number}" + (f" ({design.key})" if claim.by_design else ""),
             claim.judge(first, design).verdict, claim.judge(second, design).verdict)
            for claim in CLAIMS.values() for design in claim.designs()]


def harness_points(a_dir: Path, b_dir: Path) -> list[dict]:
    """Every shared throughput point of the harness experiments, with each run's own spread."""
    points = []
    for exp in sorted(p for p in a_dir.iterdir() if p.is_dir()):
        for label_dir in sorted(p for p in exp.iterdir() if p.is_dir()):
            other = b_dir / exp.name / label_dir.name
            a_runs, b_runs = list(label_dir.glob("experiment-*")), list(other.glob("experiment-*"))
            if len(a_runs) != 1 or len(b_runs) != 1:
                continue
            spreads = {}
            for side, run in (("a", a_runs[0]), ("b", b_runs[0])):
                for row in summarize(load_run(run)):
                    if row.get("rate") is not None:
                        continue
                    key = (row["runtime"], row["workload"], row["proto"], row["conc"])
                    spreads[side, key] = row.get("spread")
            found, _ = compare(a_runs[0], b_runs[0], max_conc=10**6, tolerance=TOLERANCES[0])
            for p in found:
                key = (p["runtime"], p["workload"], p["proto"], p["conc"])
                own = [s for s in (spreads.get(("a", key)), spreads.get(("b", key))) if s is not None]
                points.append(p | {"experiment": f"{exp.name}/{label_dir.name}",
                                   "noise": max(own) if own else None})
    return points


def capacity_rows(a_dir: Path, b_dir: Path) -> list[dict]:
    """Open-loop experiments: each runtime's highest sustained rate in both runs, and the ladder's step there."""
    from ..curves import capacity, curve

    out = []
    for exp in sorted(p for p in a_dir.iterdir() if p.is_dir()):
        for label_dir in sorted(p for p in exp.iterdir() if p.is_dir()):
            runs = [sorted(d.glob("experiment-*")) for d in (label_dir, b_dir / exp.name / label_dir.name)]
            if not all(runs):
                continue
            rows = [summarize(load_run(r[-1])) for r in runs]
            if not any(r.get("rate") is not None for r in rows[0]):
                continue
            for runtime, workload, conc in sorted({(r["runtime"], r["workload"], r["conc"]) for r in rows[0]
                                                   if r.get("rate") is not None}):
                caps = [capacity(curve(side, runtime, workload, conc)) for side in rows]
                out.append({"experiment": f"{exp.name}/{label_dir.name}", "runtime": runtime, "workload": workload,
                            "conc": conc, "first": caps[0], "second": caps[1]})
    return out


def machine_speed(a_dir: Path, b_dir: Path) -> float | None:
    """How much slower the second run's machine was (calibration time ratio), if both recorded it."""
    means = []
    for d in (a_dir, b_dir):
        meta = json.loads((d / "claims.json").read_text()) if (d / "claims.json").exists() else None
        values = [v for cpus in ((meta or {}).get("calibration") or {}).values() for v in cpus.values() if v]
        if not values:
            return None
        means.append(statistics.fmean(values))
    return means[1] / means[0]


def micro_rows(a_dir: Path, b_dir: Path) -> list[dict]:
    import pyperf

    files = [d / "micro" / "micro.json" for d in (a_dir, b_dir)]
    if not all(f.exists() for f in files):
        return []
    suites = [pyperf.BenchmarkSuite.load(str(f)) for f in files]
    second = {b.get_name(): b for b in suites[1].get_benchmarks()}
    rows = []
    for bench in suites[0].get_benchmarks():
        other = second.get(bench.get_name())
        if other is None:
            continue
        m1, m2 = bench.mean(), other.mean()
        s1, s2 = (bench.stdev() if bench.get_nvalue() > 1 else 0.0), (other.stdev() if other.get_nvalue() > 1 else 0.0)
        rows.append({"name": bench.get_name(), "first_us": m1 * 1e6, "second_us": m2 * 1e6, "ratio": m2 / m1,
                     # Within noise: the means differ by less than the two standard deviations together.
                     "within": abs(m2 - m1) <= s1 + s2})
    return rows


def memory_rows(first: Results, second: Results) -> list[dict]:
    a, b = first.json("memory", "memory.json") or {}, second.json("memory", "memory.json") or {}
    return [{"case": case, "first": a[case]["rss_kib_per_unit"], "second": b[case]["rss_kib_per_unit"],
             "ratio": b[case]["rss_kib_per_unit"] / a[case]["rss_kib_per_unit"]}
            for case in a if case in b and a[case].get("rss_kib_per_unit")]


def slowloris_rows(first: Results, second: Results) -> tuple[list[dict], int, int]:
    """Shared cases (same runtime, attack, topology, timeout and attack size) and how many of each run."""
    def cases(results: Results) -> dict:
        doc = results.json("slowloris", "slowloris.json") or {}
        return {(r["runtime"], r["mode"], r["proxy"], r.get("buffering", True if r["proxy"] else None),
                 r.get("header_timeout_s"), r.get("connections")): r.get("probe") or {}
                for r in doc.get("results") or []}

    a, b = cases(first), cases(second)
    rows = [{"case": " / ".join(str(k) for k in key[:2]) + " / " + (key[2] or "direct")
             + ("" if key[3] in (None, True) else " unbuffered")
             + ("" if key[4] is None else f" / header timeout {key[4]:g} s"),
             "first": a[key], "second": b[key]} for key in a if key in b]
    return rows, len(a), len(b)


def render(a_dir: Path, b_dir: Path) -> str:
    first, second = Results(a_dir), Results(b_dir)
    out = [f"# Reproducibility: `{a_dir.name}` against `{b_dir.name}`", "",
           "Written by `python -m experiments.claims.compare`. Both runs are judged with the same "
           "claim modules (`experiments/claims/cNN_*.py`); every number below comes from the two directories' files.", ""]

    rows = verdict_rows(first, second)
    changed = changed_experiments(a_dir, b_dir)
    moved = {str(c.number): sorted(changed & set(c.experiments)) for c in CLAIMS.values()}
    same = sum(v1 == v2 for _, v1, v2 in rows)
    out += [f"## Verdicts: {same} of {len(rows)} the same", "", "| claim | first | second |", "|---|---|---|"]
    out += [f"| {n} | {v1} | {v2}{'' if v1 == v2 else ' (differs)'}"
            + (f"; the experiment changed between the runs ({', '.join(moved[n.split()[0]])})"
               if moved[n.split()[0]] else "") + " |"
            for n, v1, v2 in rows]

    speed = machine_speed(a_dir, b_dir)
    out += ["", "## Machine speed", ""]
    if speed is None:
        out.append("Not recorded by both runs (`experiments/harness/calibrate.py` runs before and after each run since "
                   "it was added), so throughput below is compared as measured.")
    else:
        out.append(f"The calibration task took {speed:.2f}x as long in the second run as in the first: throughput "
                   "changes of that size are the machine's, not the servers'. The throughput section also counts "
                   "points after dividing that out.")

    points = harness_points(a_dir, b_dir)
    if points:
        ratios = [abs(p["ratio"] - 1) for p in points]
        within_noise = [p for p in points if p["noise"] is not None]
        out += ["", f"## Throughput: {len(points)} points both runs measured", ""]
        for tol in TOLERANCES:
            out.append(f"- within {tol:.0%}: {sum(r <= tol for r in ratios)} of {len(points)}")
        if within_noise:
            ok = sum(abs(p["ratio"] - 1) <= p["noise"] for p in within_noise)
            out.append(f"- within the larger of the two runs' own spreads (repeated rounds): {ok} of "
                       f"{len(within_noise)} points that have repeats")
        out.append(f"- median difference {statistics.median(ratios):.1%}, largest {max(ratios):.0%}")
        if speed is not None:
            normalized = [abs(p["ratio"] * speed - 1) for p in points]
            out.append(f"- with the machine's speed divided out: within 10% {sum(r <= 0.10 for r in normalized)}, "
                       f"within 20% {sum(r <= 0.20 for r in normalized)} of {len(points)}; median difference "
                       f"{statistics.median(normalized):.1%}")
        out += ["", "Points outside 20% (second / first):", "",
                "| experiment | runtime | workload | conns | first req/s | second req/s | change | own spread |",
                "|---|---|---|---:|---:|---:|---:|---:|"]
        far = [p for p in points if abs(p["ratio"] - 1) > TOLERANCES[1]]
        out += [f"| {p['experiment']} | {p['runtime']} | {p['workload']} | {p['conc']:,} | {p['first']:,.0f} | "
                f"{p['second']:,.0f} | {_pct(p['ratio'])} | {_spread(p['noise'])} |"
                for p in far] or ["| (none) | | | | | | | |"]

    caps = capacity_rows(a_dir, b_dir)
    if caps:
        same = sum(c["first"] == c["second"] for c in caps)
        out += ["", f"## Open loop: the highest rate sustained, {same} of {len(caps)} the same rung of the ladder", "",
                "| experiment | runtime | workload | conns | first req/s | second req/s |", "|---|---|---|---:|---:|---:|"]
        out += [f"| {c['experiment']} | {c['runtime']} | {c['workload']} | {c['conc']:,} | {_rate(c['first'])} | "
                f"{_rate(c['second'])} |" for c in caps]

    micro = micro_rows(a_dir, b_dir)
    if micro:
        out += ["", f"## Micro-benchmarks: {sum(r['within'] for r in micro)} of {len(micro)} within noise "
                "(means closer than their two standard deviations added)", "",
                "| benchmark | first (us) | second (us) | change |", "|---|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['first_us']:.2f} | {r['second_us']:.2f} | {_pct(r['ratio'])}"
                f"{'' if r['within'] else ' (outside)'} |" for r in micro]

    memory = memory_rows(first, second)
    if memory:
        out += ["", "## Memory per idle unit", "", "| case | first (KiB) | second (KiB) | change |", "|---|---:|---:|---:|"]
        out += [f"| {r['case']} | {r['first']:.2f} | {r['second']:.2f} | {_pct(r['ratio'])} |" for r in memory]

    slow, n_first, n_second = slowloris_rows(first, second)
    out += ["", f"## Slowloris: {len(slow)} shared cases (first run {n_first}, second {n_second})", ""]
    if slow:
        out += ["| case | first: success, p99 | second: success, p99 |", "|---|---|---|"]
        for r in slow:
            cells = [f"{p.get('success_rate') or 0:.0%}, {p.get('p99_ms') or 0:,.0f} ms" for p in (r["first"], r["second"])]
            out.append(f"| {r['case']} | {cells[0]} | {cells[1]} |")
    else:
        out.append("The experiment changed between the runs (attack size or cases), so no case is shared.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.claims.compare", description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    text = render(args.first, args.second)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
