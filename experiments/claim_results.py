"""The measured files of one claims run, the verdicts' vocabulary, and the helpers that read them.

:class:`Verdict` and the verdict words are what every judgement returns
(``experiments/verdicts.py``, ``experiments/verdict_slowloris.py``).
:class:`Results` loads what :mod:`experiments.claims` wrote (harness runs,
summarized to one row per runtime, workload and level; pyperf and JSON
files) on demand; the helpers pick and format figures for
:mod:`experiments.verdicts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .interpreters import Interpreter, label, split_label
from .report import load_run, summarize

__all__ = ["ASYNC", "CAVEAT", "FAILS", "HOLDS", "PENDING", "THREADS", "Results", "Verdict", "best", "fmt",
           "missing", "ratio", "rps", "spread"]


THREADS = ("threaded", "hybrid")
ASYNC = ("asyncio", "trio")
HOLDS, CAVEAT, FAILS, PENDING = "holds", "holds with a caveat", "does not hold in Python", "not measured yet"


@dataclass
class Verdict:
    verdict: str
    summary: str  # one line for the table at the top
    numbers: list[str] = field(default_factory=list)  # measured figures, with spread
    why: str = ""  # the causal explanation, backed by cost metrics
    plots: list[str] = field(default_factory=list)  # paths relative to the claims directory
    sources: list[str] = field(default_factory=list)  # files the numbers come from


def missing(what: str) -> Verdict:
    return Verdict(PENDING, f"no data: {what}", why="The experiment did not produce this measurement.")


class Results:
    """The measured files of one claims run as one interpreter saw them, loaded on demand.

    A run on several interpreters holds rows labelled ``threaded`` and
    ``threaded+ft`` in the same files, and ``micro.json`` next to
    ``micro+ft.json``: each :class:`Results` sees only its interpreter's, under
    the runtimes' plain names, so one judgement serves every interpreter.
    """

    def __init__(self, root: Path, interpreter: Interpreter = Interpreter.STANDARD) -> None:
        self.root = root
        self.interpreter = interpreter
        self._rows: dict[tuple[str, str], list[dict]] = {}

    def rows(self, experiment: str, label: str = "all") -> list[dict]:
        """Summarized harness rows (median round, spread) of one harness invocation."""
        key = (experiment, label)
        if key not in self._rows:
            runs = sorted((self.root / experiment / label).glob("experiment-*"))
            mine = []
            for row in summarize(load_run(runs[-1])) if runs else []:
                runtime, interpreter = split_label(row["runtime"])
                if interpreter is self.interpreter:
                    mine.append({**row, "runtime": runtime})
            self._rows[key] = mine
        return self._rows[key]

    def named(self, name: str) -> str:
        """A per-interpreter file's name: ``micro.json``, ``micro+ft.json``."""
        stem, dot, ext = name.partition(".")
        return label(stem, self.interpreter) + dot + ext

    def run_dir(self, experiment: str, label: str = "all") -> str | None:
        runs = sorted((self.root / experiment / label).glob("experiment-*"))
        return runs[-1].relative_to(self.root).as_posix() if runs else None

    def row(self, experiment: str, runtime: str, workload: str, conc: int, label: str = "all") -> dict | None:
        for r in self.rows(experiment, label):
            if (r["runtime"], r["workload"], r["conc"]) == (runtime, workload, conc) and not r["failed"]:
                return r
        return None

    def json(self, experiment: str, name: str) -> dict | None:
        path = self.root / experiment / self.named(name)
        return json.loads(path.read_text()) if path.exists() else None

    def micro(self) -> dict[str, tuple[float, float, float]]:
        """pyperf benchmark -> (median, min, max) seconds."""
        doc = self.json("micro", "micro.json")
        out = {}
        for bench in (doc or {}).get("benchmarks", []):
            values = sorted(v for run in bench.get("runs", []) for v in run.get("values", []))
            if values:
                out[bench["metadata"]["name"]] = (values[len(values) // 2], values[0], values[-1])
        return out


# Helpers -----------------------------------------------------------------------------

def spread(row: dict | None) -> str:
    if row is None or row.get("spread") is None:
        return "single round"
    return f"spread {row['spread']:.0%} over {row['rounds_ok']} rounds"


def rps(row: dict | None) -> str:
    return "failed" if row is None else f"{row['rps']:,.0f} req/s ({spread(row)})"


def best(results: Results, runtimes: tuple[str, ...], workload: str, conc: int,
         experiment: str = "workloads") -> tuple[str | None, dict | None]:
    rows = [(n, results.row(experiment, n, workload, conc)) for n in runtimes]
    rows = [(n, r) for n, r in rows if r is not None and r["rps"]]
    return max(rows, key=lambda nr: nr[1]["rps"]) if rows else (None, None)


def ratio(a: dict | None, b: dict | None, key: str = "rps") -> float | None:
    if a is None or b is None or not a.get(key) or not b.get(key):
        return None
    return a[key] / b[key]


def fmt(value: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"
