"""The cost of a switch on every interpreter, on one machine: why the two editions' claim 7 figures differ.

The first edition measured a thread switch through a lock at 30-53 us on
CPython 3.11.7 (``results/claims-20261121-*/micro/micro.json``); the second
edition's run 1 measured 8.5 us on 3.13.0 and 6.8 us on the free-threaded
3.13.5, on other machines of the same kind. Two things changed at once: the
interpreter and the machine. This runs the switch benchmarks of
:mod:`experiments.benches.micro` on every interpreter built here, on one
machine, in interleaved rounds, each both as the claims run does (unpinned:
the two threads of a switch may sit on different cores) and pinned to one
core (pyperf's ``--affinity 0``), and writes a table.

How it is read, written before its first run (the reading is printed with
the table, so a reader can check it against the numbers):

- **the interpreter**: on this one machine, 3.11's thread switch through a
  lock is at least 2x 3.13's (standard build), both pinned and unpinned,
  and the two rounds' ranges do not overlap;
- **the pinning**: unpinned is at least 2x pinned on every interpreter,
  ranges apart;
- otherwise neither explains it here: **inconclusive** (then the machine,
  or something neither run recorded).

``python -m experiments.benches.switch_across [--rounds 2] [-o FILE.md]``
(about 2 minutes per interpreter, pinning and round).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyperf

from ..harness.interpreters import Interpreter, describe, python_for

ROOT = Path(__file__).resolve().parents[2]
SWITCHES = ("switch-threads-lock", "switch-asyncio-event", "switch-threads-socket", "switch-asyncio-socket")
PINNINGS = {"unpinned": [], "one core": ["--affinity", "0"]}


def measure(python: str, pinning: list[str]) -> dict[str, float]:
    """Median microseconds per switch of each benchmark, from one pyperf run."""
    with tempfile.TemporaryDirectory(prefix="switch-across-") as tmp:
        out = Path(tmp) / "micro.json"
        subprocess.run([python, "-m", "experiments.benches.micro", "--fast", "--quiet", *pinning,
                        "--only", ",".join(SWITCHES), "-o", str(out)], cwd=ROOT, check=True, timeout=1800)
        suite = pyperf.BenchmarkSuite.load(str(out))  # pyperf's own reader: one benchmark is stored differently
    return {bench.get_name(): statistics.median(bench.get_values()) * 1e6 for bench in suite.get_benchmarks()}


def available() -> dict[str, str]:
    """Label -> python for every interpreter present: the harness's own (3.11 here) and the built ones."""
    found = {f"{sys.version.split()[0]} ({Interpreter.STANDARD})": sys.executable}
    for interpreter in (Interpreter.STANDARD_313, Interpreter.FREETHREADED):
        try:
            python = python_for(interpreter)
        except SystemExit:
            continue
        found[f"{describe(interpreter).get('version', '?')} ({interpreter})"] = python
    return found


def reading(table: dict[tuple[str, str], list[dict[str, float]]], labels: list[str]) -> str:
    """The verdict of the rule in the module's docstring, from the table."""
    def lock(label: str, pinning: str) -> tuple[float, float]:
        values = [r["switch-threads-lock"] for r in table[label, pinning]]
        return min(values), max(values)

    def apart(slow: tuple[float, float], fast: tuple[float, float]) -> bool:  # >= 2x and ranges apart
        return slow[0] > fast[1] and statistics.mean(slow) >= 2 * statistics.mean(fast)

    old = next((lb for lb in labels if lb.startswith("3.11")), None)
    new = next((lb for lb in labels if lb.startswith("3.13") and "freethreaded" not in lb), None)
    interpreter = bool(old and new) and all(apart(lock(old, p), lock(new, p)) for p in PINNINGS)
    pinning = all(apart(lock(lb, "unpinned"), lock(lb, "one core")) for lb in labels)
    if interpreter and pinning:
        return "Both: the interpreter and the pinning each explain a factor of 2 or more."
    if interpreter:
        return f"The interpreter: {old}'s thread switch is at least 2x {new}'s, pinned or not, on one machine."
    if pinning:
        return "The pinning: an unpinned thread switch costs at least 2x a pinned one on every interpreter."
    return ("Inconclusive: neither the interpreter nor the pinning gives a 2x difference clear of the rounds' "
            "ranges on this machine, so the editions' difference lies elsewhere (the machine, most likely).")


def render(table: dict[tuple[str, str], list[dict[str, float]]], labels: list[str], rounds: int) -> str:
    head = ["# Switch costs across interpreters, on one machine", "",
            f"Written by `python -m experiments.benches.switch_across` on {datetime.now():%Y-%m-%d %H:%M}: "
            f"{rounds} interleaved rounds of pyperf `--fast`, microseconds per switch, median of the rounds "
            "(min..max). The rule for reading it is in the module's docstring, fixed before the first run.", "",
            "| interpreter | pinning | " + " | ".join(SWITCHES) + " |", "| --- | --- |" + " ---: |" * len(SWITCHES)]
    rows = []
    for label in labels:
        for pinning in PINNINGS:
            runs = table[label, pinning]
            cells = [f"{statistics.median(v):.1f} ({min(v):.1f}..{max(v):.1f})"
                     for v in ([r[name] for r in runs] for name in SWITCHES)]
            rows.append(f"| {label} | {pinning} | " + " | ".join(cells) + " |")
    return "\n".join(head + rows + ["", "**Reading.** " + reading(table, labels), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benches.switch_across", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    pythons = available()
    labels = list(pythons)
    table: dict[tuple[str, str], list[dict[str, float]]] = {(lb, pn): [] for lb in labels for pn in PINNINGS}
    for round_no in range(1, args.rounds + 1):
        for label in labels:  # interleaved: every configuration once per round
            for pinning, flags in PINNINGS.items():
                print(f"round {round_no}: {label}, {pinning}", flush=True)
                table[label, pinning].append(measure(pythons[label], flags))
    text = render(table, labels, args.rounds)
    output = args.output or ROOT / "results" / f"switch-across-{datetime.now():%Y%m%d-%H%M%S}.md"
    output.write_text(text)
    print(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
