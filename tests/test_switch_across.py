"""The switch micro-benchmarks run one at a time, and the cross-interpreter reading follows its written rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyperf

from experiments.benches.switch_across import PINNINGS, SWITCHES, reading, render

ROOT = Path(__file__).resolve().parents[1]


def test_micro_runs_only_the_benchmarks_named(tmp_path):
    out = tmp_path / "micro.json"
    done = subprocess.run([sys.executable, "-m", "experiments.benches.micro", "--processes", "1", "--values", "1",
                           "--warmups", "0", "--loops", "4", "--quiet", "--only", "switch-threads-lock",
                           "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = [b.get_name() for b in pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()]
    assert names == ["switch-threads-lock"]
    wrong = subprocess.run([sys.executable, "-m", "experiments.benches.micro", "--only", "switch-nothing"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "unknown benchmarks switch-nothing" in wrong.stderr


def _table(lock: dict[tuple[str, str], tuple[float, float]]) -> dict:
    """Two rounds per configuration; only the lock switch matters to the rule."""
    return {key: [{name: value for name in SWITCHES} for value in values] for key, values in lock.items()}


LABELS = ["3.11.7 (standard)", "3.13.0 (standard-3.13)"]


def test_the_reading_names_the_interpreter_when_it_alone_explains_a_factor_of_two():
    table = _table({(LABELS[0], "unpinned"): (40, 44), (LABELS[0], "one core"): (38, 41),
                    (LABELS[1], "unpinned"): (9, 10), (LABELS[1], "one core"): (8, 9)})
    assert reading(table, LABELS).startswith("The interpreter")
    assert "| 3.11.7 (standard) | unpinned | 42.0 (40.0..44.0)" in render(table, LABELS, 2)


def test_the_reading_names_the_pinning_and_is_inconclusive_inside_the_noise():
    pinning = _table({(lb, p): (30, 32) if p == "unpinned" else (9, 10) for lb in LABELS for p in PINNINGS})
    assert reading(pinning, LABELS).startswith("The pinning")
    overlapping = _table({(LABELS[0], p): (10, 30) for p in PINNINGS} | {(LABELS[1], p): (9, 12) for p in PINNINGS})
    assert reading(overlapping, LABELS).startswith("Inconclusive")
