"""Two claims runs side by side: does a rerun of ``make claims`` reproduce the report?

``python -m experiments.claims.compare FIRST SECOND [-o results/REPRODUCIBILITY.md]``

FIRST and SECOND are ``results/claims-*`` directories. Both are judged again
with the claim modules in the tree (``experiments/claims/cNN_*.py``: the same
thresholds for both; a rule changed since a run is not applied to it, as in
the report), on every interpreter both runs measured, and for every
measurement the two runs share it compares:

- the verdicts of the ten claims, per design and interpreter, naming those
  that differ and those that are inconclusive in either run;
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
import statistics
import sys
from pathlib import Path

from ..harness.compare import compare
from ..harness.interpreters import Interpreter
from ..harness.report import load_run, summarize
from . import CLAIMS
from .results import INCONCLUSIVE, Results, interpreters_of, meta_of
from .runner import judge

TOLERANCES = (0.10, 0.20)


def _pct(x: float) -> str:
    return f"{x - 1:+.0%}"


def _rate(value: float | None) -> str:
    return "none sustained" if value is None else f"{value:,.0f}"


def _spread(noise: float | None) -> str:
    return "-" if noise is None else f"{noise:.0%}"


def changed_experiments(a_dir: Path, b_dir: Path) -> set[str]:
    """Experiments whose description differs between the runs: their claims are not like for like."""
    whats = [meta_of(d).get("experiments") or {} for d in (a_dir, b_dir)]
    return {name for name in whats[0].keys() & whats[1].keys()
            if whats[0][name].get("what") != whats[1][name].get("what")}


def shared_interpreters(a_dir: Path, b_dir: Path) -> list[Interpreter]:
    second = interpreters_of(b_dir)
    return [i for i in interpreters_of(a_dir) if i in second]


def verdict_rows(a_dir: Path, b_dir: Path, interpreter: Interpreter) -> list[tuple[str, str, str]]:
    """(claim and design, first run's verdict, second's) on one interpreter, both judged by the rules in the
    tree; a rule changed since a run is not applied to it (its verdict says stale)."""
    sides = [(Results(d, interpreter), meta_of(d).get("rules")) for d in (a_dir, b_dir)]
    rows = []
    for claim in CLAIMS.values():
        first, second = (judge(claim, results, recorded) for results, recorded in sides)
        rows += [(f"{claim.number}" + (f" ({design.key})" if claim.by_design else ""),
                  first[design.key].verdict, second[design.key].verdict) for design in claim.designs()]
    return rows


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


#: A run whose calibrations (before and after, both cores) spread wider than this was not on one steady machine.
STEADY = 1.15


def _calibrations(run_dir: Path) -> list[float]:
    return [v for cpus in (meta_of(run_dir).get("calibration") or {}).values() for v in cpus.values() if v]


def unsteady(a_dir: Path, b_dir: Path) -> list[str]:
    """The runs whose machine's speed moved during the run (measured in sittings on several machines, or a
    neighbour came and went): for them no single factor describes the machine."""
    return [f"`{d.name}` ({min(v):.1f} to {max(v):.1f} us)" for d in (a_dir, b_dir)
            if (v := _calibrations(d)) and max(v) / min(v) > STEADY]


def machine_speed(a_dir: Path, b_dir: Path) -> float | None:
    """How much slower the second run's machine was (calibration time ratio), if both recorded it."""
    means = []
    for d in (a_dir, b_dir):
        values = _calibrations(d)
        if not values:
            return None
        means.append(statistics.fmean(values))
    return means[1] / means[0]


def micro_rows(a_dir: Path, b_dir: Path, interpreter: Interpreter = Interpreter.STANDARD) -> list[dict]:
    import pyperf

    files = [d / "micro" / Results(d, interpreter).named("micro.json") for d in (a_dir, b_dir)]
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
    interpreters = shared_interpreters(a_dir, b_dir)
    out = [f"# Reproducibility: `{a_dir.name}` against `{b_dir.name}`", "",
           "Written by `python -m experiments reproduce` (`experiments/claims/compare.py`). Both runs are judged with "
           "the same claim modules (`experiments/claims/cNN_*.py`); every number below comes from the two "
           "directories' files. Interpreters both runs measured: " + ", ".join(interpreters) + ".", ""]
    speed, moved = machine_speed(a_dir, b_dir), unsteady(a_dir, b_dir)
    if moved:
        speed = None  # one factor for a machine that changed under a run would correct by a made-up amount
    for section in (_verdicts_section(a_dir, b_dir, interpreters), _speed_section(speed, moved),
                    _throughput_section(harness_points(a_dir, b_dir), speed), _capacity_section(a_dir, b_dir),
                    _micro_section(a_dir, b_dir, interpreters), _memory_section(a_dir, b_dir, interpreters),
                    _slowloris_section(a_dir, b_dir, interpreters)):
        out += section
    return "\n".join(out) + "\n"


def _on(interpreter: Interpreter, interpreters: list[Interpreter]) -> str:
    return f" on {interpreter}" if len(interpreters) > 1 else ""


def _verdicts_section(a_dir: Path, b_dir: Path, interpreters: list[Interpreter]) -> list[str]:
    changed = changed_experiments(a_dir, b_dir)
    moved = {str(c.number): sorted(changed & set(c.experiments)) for c in CLAIMS.values()}
    rows = [(f"{n}{_on(i, interpreters)}", n.split()[0], v1, v2)
            for i in interpreters for n, v1, v2 in verdict_rows(a_dir, b_dir, i)]
    same = sum(v1 == v2 for _, _, v1, v2 in rows)
    differ = [name for name, _, v1, v2 in rows if v1 != v2]
    unsure = [name for name, _, v1, v2 in rows if INCONCLUSIVE in (v1, v2)]
    out = [f"## Verdicts: {same} of {len(rows)} the same", "",
           "Differ: " + ("; ".join(differ) or "none") + ".",
           "Inconclusive in either run (the rule found the difference inside the noise): "
           + ("; ".join(unsure) or "none") + ".", "",
           "| claim (design) | first | second |", "|---|---|---|"]
    out += [f"| {name} | {v1} | {v2}{'' if v1 == v2 else ' (differs)'}"
            + (f"; the experiment changed between the runs ({', '.join(moved[number])})" if moved[number] else "")
            + " |" for name, number, v1, v2 in rows]
    return out


def _speed_section(speed: float | None, moved: list[str]) -> list[str]:
    out = ["", "## Machine speed", ""]
    if moved:
        return out + ["The calibration task moved by more than " f"{STEADY - 1:.0%} within " + " and ".join(moved)
                      + " (before and after the run, CPU 0 and CPU 1): a run measured in sittings can change "
                      "machines, so no single factor describes it and none is divided out. Compare the throughput "
                      "below as measured, against the runs' own spreads; the report's \"How the run was measured\" "
                      "lists each sitting's machine."]
    if speed is None:
        return out + ["Not recorded by both runs (`experiments/harness/calibrate.py` runs before and after each run "
                      "since it was added), so throughput below is compared as measured."]
    return out + [f"The calibration task took {speed:.2f}x as long in the second run as in the first: throughput "
                  "changes of that size are the machine's, not the servers'. The throughput section also counts "
                  "points after dividing that out."]


def _throughput_section(points: list[dict], speed: float | None) -> list[str]:
    if not points:
        return []
    ratios = [abs(p["ratio"] - 1) for p in points]
    with_noise = [p for p in points if p["noise"] is not None]
    out = ["", f"## Throughput: {len(points)} points both runs measured", ""]
    out += [f"- within {tol:.0%}: {sum(r <= tol for r in ratios)} of {len(points)}" for tol in TOLERANCES]
    if with_noise:
        ok = sum(abs(p["ratio"] - 1) <= p["noise"] for p in with_noise)
        out.append(f"- within the larger of the two runs' own spreads (repeated rounds): {ok} of "
                   f"{len(with_noise)} points that have repeats")
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
    return out + ([f"| {p['experiment']} | {p['runtime']} | {p['workload']} | {p['conc']:,} | {p['first']:,.0f} | "
                   f"{p['second']:,.0f} | {_pct(p['ratio'])} | {_spread(p['noise'])} |" for p in far]
                  or ["| (none) | | | | | | | |"])


def _capacity_section(a_dir: Path, b_dir: Path) -> list[str]:
    caps = capacity_rows(a_dir, b_dir)
    if not caps:
        return []
    same = sum(c["first"] == c["second"] for c in caps)
    out = ["", f"## Open loop: the highest rate sustained, {same} of {len(caps)} the same rung of the ladder", "",
           "| experiment | runtime | workload | conns | first req/s | second req/s |", "|---|---|---|---:|---:|---:|"]
    return out + [f"| {c['experiment']} | {c['runtime']} | {c['workload']} | {c['conc']:,} | {_rate(c['first'])} | "
                  f"{_rate(c['second'])} |" for c in caps]


def _micro_section(a_dir: Path, b_dir: Path, interpreters: list[Interpreter]) -> list[str]:
    micro = [r | {"name": r["name"] + _on(i, interpreters)} for i in interpreters for r in micro_rows(a_dir, b_dir, i)]
    if not micro:
        return []
    out = ["", f"## Micro-benchmarks: {sum(r['within'] for r in micro)} of {len(micro)} within noise "
           "(means closer than their two standard deviations added)", "",
           "| benchmark | first (us) | second (us) | change |", "|---|---:|---:|---:|"]
    return out + [f"| {r['name']} | {r['first_us']:.2f} | {r['second_us']:.2f} | {_pct(r['ratio'])}"
                  f"{'' if r['within'] else ' (outside)'} |" for r in micro]


def _memory_section(a_dir: Path, b_dir: Path, interpreters: list[Interpreter]) -> list[str]:
    memory = [r | {"case": r["case"] + _on(i, interpreters)} for i in interpreters
              for r in memory_rows(Results(a_dir, i), Results(b_dir, i))]
    if not memory:
        return []
    out = ["", "## Memory per idle unit", "", "| case | first (KiB) | second (KiB) | change |", "|---|---:|---:|---:|"]
    return out + [f"| {r['case']} | {r['first']:.2f} | {r['second']:.2f} | {_pct(r['ratio'])} |" for r in memory]


def _slowloris_section(a_dir: Path, b_dir: Path, interpreters: list[Interpreter]) -> list[str]:
    out = []
    for i in interpreters:
        slow, n_first, n_second = slowloris_rows(Results(a_dir, i), Results(b_dir, i))
        out += ["", f"## Slowloris{_on(i, interpreters)}: {len(slow)} shared cases (first run {n_first}, "
                f"second {n_second})", ""]
        if not slow:
            out.append("No case is shared: the experiment is missing from a run, or changed between them "
                       "(attack size or cases).")
            continue
        out += ["| case | first: success, p99 | second: success, p99 |", "|---|---|---|"]
        for r in slow:
            cells = [f"{p.get('success_rate') or 0:.0%}, {p.get('p99_ms') or 0:,.0f} ms" for p in (r["first"], r["second"])]
            out.append(f"| {r['case']} | {cells[0]} | {cells[1]} |")
    return out


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
