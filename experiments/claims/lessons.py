"""The lessons: one per claim, each answered with the numbers of a claims run, not with fixed text.

``make claims`` writes ``LESSONS.md`` next to ``REPORT.md``; a complete run
also replaces ``docs/lessons.md`` (links rebased), so the lessons a student
reads always quote the reference run. Each lesson is: the question, the
answer measured here (the verdict on the seeds' design and on ours, with the
figures it rests on), why (the claim's explanation, and the primers it
needs: the GIL, the scheduler, Little's law, coordinated omission, each with
a picture drawn from measured data), and one command that reproduces it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .claim import Claim
from .results import ASYNC, DESIGNS, Design, Results, Verdict
from .report import reproduction

__all__ = ["LESSONS", "PRIMERS", "write_lessons"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Lesson:
    claim: int
    title: str
    primers: tuple[str, ...]
    look: str  # what to look at in the picture, and what to ask of it
    #: Which of the verdict's measured rows answer the question (all of them, up to ROWS, unless this says).
    rows: Callable[[str, Design], bool] | None = None


ROWS = 8


def _at_25k(row: str, design: Design) -> bool:
    return " at 25,000:" in row


def _slow_readers_of(row: str, design: Design) -> bool:
    runtime, _, rest = row.partition(" / ")
    return runtime in design.runtimes + ASYNC and rest.startswith("read / ")


LESSONS = [
    Lesson(1, "Hello world: are threads faster?", ("littles-law",),
           "the CPU-per-request panel next to the throughput: on one core each is nearly the inverse of the "
           "other, so which runtime runs less Python per request?"),
    Lesson(2, "Heavier requests: does the difference fade?", (),
           "the CPU per request of each workload: where it grows the same on both sides (cpu), the runtimes' "
           "fixed cost is a smaller share; where the async side does the work differently (file), it does not"),
    Lesson(3, "Tail latency at the same offered load", ("coordinated-omission", "littles-law", "gil"),
           "where each curve leaves its floor (the knee), and p99 at a rate below every knee"),
    Lesson(4, "25,000 connections", ("scheduler",),
           "the fewest connections the kernel counted during the minute, against 25,000, runtime by runtime",
           rows=_at_25k),
    Lesson(5, "What a thread costs", (),
           "RSS per idle thread with the default and the 64 KiB stack: equal means the stack is not committed"),
    Lesson(6, "How many threads?", ("scheduler", "gil"),
           "throughput with 30 and with 1,000 workers, and the share of voluntary context switches"),
    Lesson(7, "The cost of a switch", ("gil",),
           "the ratio thread/task switch against the seed's 8.5x, and each figure against the seed's microseconds"),
    Lesson(8, "Are threads a 2-3x hit?", (),
           "async/threads throughput at 64 connections against the bare switch ratio of lesson 7"),
    Lesson(9, "Scaling with processes", ("littles-law",),
           "the highest rate sustained with one process and with two, and how sharply p99 rises past it"),
    Lesson(10, "Slowloris", (),
           "which runtime's normal visitor suffers under 2,000 slow connections, alone and behind nginx",
           rows=_slow_readers_of),
]


@dataclass(frozen=True)
class Primer:
    title: str
    text: str


PRIMERS = {
    "gil": Primer("The GIL", (
        "CPython with a GIL runs Python bytecode on one thread at a time. A thread that wants to run waits on "
        "a condition variable until the holder blocks (I/O, sleep, a lock) or has held it for the switch "
        "interval (5 ms by default, `sys.setswitchinterval`), then asks for it to be handed over. So a thread "
        "per connection does not run connections in parallel: it queues them for one lock, in an order nobody "
        "chose, and every hand-over is a futex wake plus a reacquire. The picture: thread per connection at 100 "
        "connections with switch intervals of 0.5, 5 and 50 ms (the switch-interval experiment).")),
    "scheduler": Primer("The scheduler and context switches", (
        "Linux switches a core between threads either because the running thread blocked (a voluntary switch: "
        "it waits on a socket, a sleep, a futex) or because its time slice ended while another thread was "
        "runnable (involuntary: preemption). A server whose threads mostly wait is dominated by voluntary "
        "switches; many runnable threads on few cores show up as involuntary ones. The picture: the pool "
        "runtimes with 30 and 1,000 workers on a 10 ms blocking handler.")),
    "littles-law": Primer("Little's law", (
        "In a steady system, the number of requests inside it equals the arrival rate times the time each "
        "spends there: N = X x W. A closed-loop load generator (wrk) keeps exactly N connections busy, so the "
        "mean latency it reports is N / throughput, whatever the server does: more connections means more "
        "latency, by arithmetic. That is why latency claims are judged open loop here, where the rate is fixed "
        "and the latency is free to show the server. The picture: every closed-loop point of the run, mean "
        "latency against connections / throughput, on the diagonal.")),
    "coordinated-omission": Primer("Coordinated omission", (
        "A closed-loop generator sends a request only when the previous one on its connection came back. When "
        "the server stalls, it stops sending: the requests a real client would have sent during the stall are "
        "never made, so they are never measured, and the stall costs one slow sample per connection. An open-"
        "loop generator (openload) keeps to its schedule and measures each request from when it was due. wrk 4 "
        "back-fills its histogram after a run to compensate (stats_correct), which helps for long stalls. The "
        "picture: a server that freezes 1 s every 10 s, as predicted, as openload measured it, and as wrk did "
        "(results/openload-validation-*.json).")),
}


def write_lessons(run_dir: Path, claims: list[Claim], judged: dict, results: dict[str, Results],
                  second: tuple[str, dict] | None = None) -> Path:
    """LESSONS.md in ``run_dir``, answered from this run's verdicts (first interpreter's); with a second run,
    each answer says whether it reproduced."""
    first = next(iter(judged))
    again = second[1].get(first) if second else None
    by_number = {claim.number: (claim, judged[first][k], again[k] if again else None) for k, claim in enumerate(claims)}
    pictures = draw_primer_pictures(run_dir, results[first])
    out = ["# Lessons: one per claim, answered by a run", "",
           f"Every answer below is read from `{run_dir.name}` (the verdicts and figures of its REPORT.md; "
           "interpreter: " + str(first) + "). Your machine's absolute numbers will differ; the ratios between "
           "runtimes measured in the same run are what travels. Each lesson ends with the one command that "
           "measures it again; `make claims FROM=<run>` judges a run again without measuring."
           + (f" Each answer says whether a second full run of the same rules (`{second[0]}`) gave the same "
              "verdict; one it did not is not settled." if again else ""), "",
           "Start with `make test` (it builds the environment and the load tools), then `docs/tour.md` for the "
           "request path on each runtime.", ""]
    for lesson in LESSONS:
        if lesson.claim not in by_number:
            continue
        claim, verdicts, repeated = by_number[lesson.claim]
        out += _lesson(lesson, claim, verdicts, run_dir, results[first], list(judged), repeated)
    out += ["## Primers", ""]
    for key, primer in PRIMERS.items():
        out += [f"### {primer.title}", "", primer.text, ""]
        if pictures.get(key):
            out += [f"![{primer.title}](./{pictures[key]})", ""]
    path = run_dir / "LESSONS.md"
    path.write_text("\n".join(out) + "\n")
    return path


def _lesson(lesson: Lesson, claim: Claim, verdicts: dict[str, Verdict], run_dir: Path, results: Results,
            interpreters: list, repeated: dict[str, Verdict] | None = None) -> list[str]:
    out = [f"## {lesson.claim}. {lesson.title}", "", f"*Question.* {claim.question} The seeds say: \"{claim.claim}\" "
           f"(seed {claim.source}).", "", "*Answer, measured here.*", ""]
    for key, verdict in verdicts.items():
        who = {"seeds": "The seeds' design", "ours": "Ours"}.get(key, key) if claim.by_design else "Threads"
        out.append(f"- {who}: **{verdict.verdict}**: {verdict.summary}."
                   + (f" R{reproduction(verdict, repeated, key)[1:]}." if repeated is not None else ""))
        design = next((d for d in DESIGNS if d.key == key), DESIGNS[0])
        rows = [n for n in verdict.numbers if lesson.rows is None or lesson.rows(n, design)]
        out += [f"  - {n}" for n in rows[:ROWS]] + ([f"  - ({len(rows) - ROWS} more rows in the report)"]
                                                    if len(rows) > ROWS else [])
        out += [f"  - Read it with this: {c}" for c in claim.read_with(results, design)]
    some = next(iter(verdicts.values()))
    out += ["", f"*Why.* {some.why}" if some.why else "*Why.* See the report.", ""]
    if lesson.primers:
        out += ["Primers: " + ", ".join(f"[{PRIMERS[p].title}](#{_anchor(PRIMERS[p].title)})"
                                        for p in lesson.primers) + ".", ""]
    plot = next((p for p in some.plots if p and (run_dir / p).exists()), None)
    if plot:
        stop = "" if lesson.look.endswith(("?", ".")) else "."
        out += [f"![claim {lesson.claim}](./{plot})", "", f"Look at {lesson.look}{stop}", ""]
    measure, judge = claim.commands(run_dir, interpreters)
    out += [f"*Rerun.* `{measure}` (the rule: `{claim.module.relative_to(ROOT)}`); judge this run again without "
            f"measuring: `{judge}`.", ""]
    return out


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


# Pictures ------------------------------------------------------------------------------

def draw_primer_pictures(run_dir: Path, results: Results) -> dict[str, str]:
    """primer key -> picture file (relative to ``run_dir``), drawn from measured data where there is any."""
    pictures = {}
    if (run_dir / results.named("switch-interval.png")).exists():
        pictures["gil"] = results.named("switch-interval.png")
    if (run_dir / results.named("pool-size.png")).exists():
        pictures["scheduler"] = results.named("pool-size.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return pictures
    rows = [r for r in results.rows("workloads") if r.get("mean_ms") and r["rps"]]
    if rows:
        fig, ax = plt.subplots(figsize=(5, 4.2))
        x = [r["conc"] / r["rps"] * 1000 for r in rows]
        ax.scatter(x, [r["mean_ms"] for r in rows], s=14)
        top = max(x + [r["mean_ms"] for r in rows])
        ax.plot([0.01, top], [0.01, top], color="grey", linestyle=":", label="N / X")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("connections / throughput (ms)")
        ax.set_ylabel("mean latency wrk measured (ms)")
        ax.set_title("Little's law in every closed-loop point", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / "primer-littles-law.png", dpi=110)
        plt.close(fig)
        pictures["littles-law"] = "primer-littles-law.png"
    validation = sorted((ROOT / "results").glob("openload-validation-*.json"))
    if validation:
        stall = json.loads(validation[-1].read_text())[0]
        keys = ("p50", "p99", "p99.9")
        series = {"expected": [0.0, stall["expected"]["p99"], stall["expected"]["p99.9"]],
                  "openload": [stall["openload"]["latency_ms"][k] for k in keys],
                  "wrk": [stall["wrk"]["latency_ms"].get(k) or 0 for k in keys]}
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        width = 0.25
        for i, (name, values) in enumerate(series.items()):
            ax.bar([k + i * width for k in range(len(keys))], values, width, label=name)
        ax.set_xticks([k + width for k in range(len(keys))], keys)
        ax.set_ylabel("latency, ms")
        ax.set_title(f"a server frozen 1 s every 10 s ({os.path.basename(validation[-1])})", fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / "primer-coordinated-omission.png", dpi=110)
        plt.close(fig)
        pictures["coordinated-omission"] = "primer-coordinated-omission.png"
    return pictures
