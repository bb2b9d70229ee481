"""The measured files of one claims run, the verdicts' vocabulary, the designs, and the helpers that read them.

:class:`Verdict` and the verdict words are what every claim's judgement
returns (``experiments/claims/cNN_*.py``). :class:`Results` loads what the
runner wrote (harness runs, summarized to one row per runtime, workload,
level and rate; pyperf and JSON files) on demand. A :class:`Design` names the
thread runtimes a claim is judged on: the seeds' own design (``pinned``: a
worker keeps its connection) or ours (``threaded`` and ``hybrid``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..harness.interpreters import Interpreter, label, split_label
from ..harness.report import load_run, summarize

__all__ = ["ASYNC", "CAVEAT", "DESIGNS", "Design", "FAILS", "HOLDS", "INCONCLUSIVE", "OURS", "PENDING", "SEEDS",
           "THREADS", "Results", "Verdict", "band", "best", "combine", "fmt", "hello_pairs", "missing", "noise", "ratio", "rps",
           "spread", "interpreters_of", "meta_of"]


def meta_of(run_dir: Path) -> dict:
    """A claims run's metadata (claims.json): its rules, interpreters, experiments and calibration."""
    path = run_dir / "claims.json"
    return json.loads(path.read_text()) if path.exists() else {}


def interpreters_of(run_dir: Path) -> list[Interpreter]:
    """The servers' interpreters a run measured (runs before there was a choice measured the standard one)."""
    return [Interpreter(name) for name in meta_of(run_dir).get("interpreters") or {"standard": {}}]


ASYNC = ("asyncio", "trio")
HOLDS, CAVEAT, FAILS, PENDING = "holds", "holds with a caveat", "does not hold in Python", "not measured yet"
INCONCLUSIVE = "inconclusive"
#: Given when the rule in force is newer than the data it would judge: a new run is needed.
STALE = "rule newer than the data: not judged"


@dataclass(frozen=True)
class Design:
    """The thread runtimes that stand for "threads" in a claim."""

    key: str
    title: str
    runtimes: tuple[str, ...]


#: The seeds' design is judged with a pool large enough for the connections (``pinned~1000``: seed 002 puts the
#: cap in the thousands); with its default pool (30 here) a worker kept by each of 30 keep-alive clients leaves
#: every other client waiting, which claims 4 and 6 judge and every table shows (``pinned``).
SEEDS = Design("seeds", "the seeds' design (pinned~1000: a pool worker keeps each connection; 1,000 workers)",
               ("pinned~1000",))
OURS = Design("ours", "ours (threaded: a thread per connection; hybrid: a reactor hands requests to a pool)",
              ("threaded", "hybrid"))
DESIGNS = (SEEDS, OURS)
THREADS = ("threaded", "pinned", "pinned~1000", "hybrid")  # every thread runtime, for tables


@dataclass
class Verdict:
    verdict: str
    summary: str  # one line for the table at the top
    numbers: list[str] = field(default_factory=list)  # measured figures, with spread
    why: str = ""  # the causal explanation, backed by cost metrics
    plots: list[str] = field(default_factory=list)  # paths relative to the claims directory
    sources: list[str] = field(default_factory=list)  # files the numbers come from
    rule_state: str = ""  # rules.status: pre-registered, uncommitted, stale, unrecorded
    rule_note: str = ""


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

    def row(self, experiment: str, runtime: str, workload: str, conc: int, label: str = "all",
            rate: float | None = None) -> dict | None:
        for r in self.rows(experiment, label):
            if (r["runtime"], r["workload"], r["conc"], r.get("rate")) == (runtime, workload, conc, rate) \
                    and not r["failed"]:
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
         experiment: str = "workloads", label: str = "all") -> tuple[str | None, dict | None]:
    """The runtime with the highest throughput among ``runtimes`` (closed loop), and its row."""
    rows = [(n, results.row(experiment, n, workload, conc, label)) for n in runtimes]
    rows = [(n, r) for n, r in rows if r is not None and r["rps"]]
    return max(rows, key=lambda nr: nr[1]["rps"]) if rows else (None, None)


#: The workloads experiment's labels by HTTP/1 parser.
PARSERS = {"all": "h11", "httptools": "httptools"}


def hello_pairs(results: Results, design: Design, conc: int = 64) -> dict[str, tuple[str, dict, str, dict]]:
    """parser -> (best thread runtime, its row, best async runtime, its row), hello world, closed loop."""
    out = {}
    for run_label, parser in PARSERS.items():
        t_name, t = best(results, design.runtimes, "hello", conc, label=run_label)
        a_name, a = best(results, ASYNC, "hello", conc, label=run_label)
        if t is not None and a is not None:
            out[parser] = (t_name, t, a_name, a)
    return out


def ratio(a: dict | None, b: dict | None, key: str = "rps") -> float | None:
    if a is None or b is None or not a.get(key) or not b.get(key):
        return None
    return a[key] / b[key]


def fmt(value: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def noise(*rows: dict | None, floor: float = 0.05) -> float:
    """The run-to-run noise of a comparison: the largest round spread of its rows, at least ``floor``."""
    return max([floor] + [r["spread"] for r in rows if r and r.get("spread") is not None])


def band(value: float, n: float) -> tuple[float, float]:
    """A ratio's noise band: what it could have read on another round."""
    return value * (1 - n), value * (1 + n)


def combine(parts: list[str]) -> str:
    """A claim of several parts: each part is HOLDS, FAILS or INCONCLUSIVE (inside the noise).

    All held: holds. None held and none inconclusive: does not hold. Some
    held, some not: holds with a caveat. Otherwise (nothing held, something
    inconclusive): inconclusive.
    """
    if parts and all(p == HOLDS for p in parts):
        return HOLDS
    if HOLDS in parts:
        return CAVEAT
    if INCONCLUSIVE in parts:
        return INCONCLUSIVE
    return FAILS
