"""The soak's judgement, figure and README: written before any run, applied to every run alike.

The verdict rule for "flat" is fixed here, in code, so that no run can
nudge it. A server under a rotating set of hostile clients may grow while
they run (buffers, threads, descriptors held for the attackers); what must
not happen is that it *keeps* what it grew once they stop. So every series
is compared at two moments: ``start``, the median of the last five
one-second samples of the warm-up (normal load only, every lazy allocation
made), and ``end``, the median of the last five samples of the cool-down
(normal load only again, the attackers gone for at least the cool-down):

- RSS is flat if ``end <= start + max(10% of start, 16 MiB)``. Python's
  allocator keeps freed arenas, so some high-water mark may remain; a leak
  does not stay within that.
- threads are flat if ``end <= start + 2`` and file descriptors if
  ``end <= start + 2``: a pool worker may linger, a held connection may not.
- the normal visitors' p99 (per protocol, from the last interval of each
  phase) is flat if ``end <= max(2 x start, start + 10 ms)``.

``slope`` (least squares over the hostile phase, per minute) and ``max``
are reported beside, not judged: a rotation of attacks is not steady enough
for a slope to mean a leak on its own.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
#: The verdict rules, as data: the README prints them, ``verdict`` applies them.
FLAT_RULES = {
    "rss_mib": "end <= start + max(0.10 * start, 16 MiB)",
    "threads": "end <= start + 2",
    "fds": "end <= start + 2",
    "p99_ms": "end <= max(2 * start, start + 10 ms), per protocol",
}
WINDOW = 5  # samples (seconds) in the medians that make "start" and "end"
SERIES = [("rss_mib", "resident memory (MiB)"), ("threads", "OS threads"), ("fds", "open file descriptors"),
          ("cpu_pct", "CPU (% of one core)")]


def is_flat(key: str, start: float | None, end: float | None) -> bool | None:
    if start is None or end is None:
        return None
    if key == "rss_mib":
        return end <= start + max(0.10 * start, 16.0)
    if key in ("threads", "fds"):
        return end <= start + 2
    if key == "p99_ms":
        return end <= max(2 * start, start + 10.0)
    return None


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else None


def summarize_samples(samples: list[dict], phases: dict[str, float]) -> dict[str, dict]:
    """start / end / max / hostile-phase slope / flat, per sampled series."""
    warm_end, hostile_end = phases["warmup_end"], phases["hostile_end"]
    out = {}
    for key, _ in SERIES:
        points = [(s["t"], s[key]) for s in samples if s.get(key) is not None]
        if not points:
            continue
        warm = [v for t, v in points if t < warm_end][-WINDOW:] or [points[0][1]]
        start, end = statistics.median(warm), statistics.median([v for _, v in points[-WINDOW:]])
        slope = slope_per_minute([(t, v) for t, v in points if warm_end <= t < hostile_end])
        out[key] = {"start": round(start, 2), "end": round(end, 2), "max": round(max(v for _, v in points), 2),
                    "slope_per_min": None if slope is None else round(slope, 3), "flat": is_flat(key, start, end)}
    return out


def summarize_latency(intervals: list[dict], phases: dict[str, float]) -> dict[str, Any]:
    """For one protocol's normal visitors: start / end / max p99, errors, and the worst interval."""
    rows = [r for r in intervals if r.get("p99_ms") is not None]
    if not rows:
        return {"flat": None, "requests": sum(r.get("requests", 0) for r in intervals)}
    warm = [r for r in rows if r["t"] <= phases["warmup_end"] + 0.5] or rows[:1]
    start, end = warm[-1]["p99_ms"], rows[-1]["p99_ms"]
    worst = max(rows, key=lambda r: r["p99_ms"])
    errors: dict[str, int] = {}
    for r in intervals:
        for kind, n in r.get("errors", {}).items():
            errors[kind] = errors.get(kind, 0) + n
    service = [r["service_p99_ms"] for r in rows if r.get("service_p99_ms") is not None]
    return {"start": start, "end": end, "max": worst["p99_ms"], "worst_at_s": worst["t"],
            "service_p99_max": max(service, default=None),
            "worst_during": worst.get("attacks", []), "flat": is_flat("p99_ms", start, end),
            "requests": sum(r.get("requests", 0) for r in intervals), "errors": errors,
            "errors_in_last_interval": sum(intervals[-1].get("errors", {}).values()) if intervals else 0}


def combine_outcomes(hostile: list[dict]) -> dict[str, dict]:
    """attack -> its runs' outcomes added up (and how many runs)."""
    out: dict[str, dict] = {}
    for run in hostile:
        entry = out.setdefault(run["attack"], {"runs": 0, "outcomes": {}, "statuses": {}, "goaway_codes": {}})
        entry["runs"] += 1
        for field in ("outcomes", "statuses"):
            for k, n in run.get(field, {}).items():
                entry[field][k] = entry[field].get(k, 0) + n
        for k, n in (run.get("details", {}).get("goaway_codes") or {}).items():
            entry["goaway_codes"][k] = entry["goaway_codes"].get(k, 0) + n
    return out


def attack_impact(run: dict, interval: float) -> dict[str, dict[str, Any]]:
    """attack -> per protocol: the normal visitors' worst p99, failed requests, and intervals in which
    not one request was answered, over the intervals whose middle falls within the attack's runs.

    The middle, not any overlap: an interval straddling two attacks belongs to the one it mostly saw
    (an attack shorter than half an interval gets none). With one attack at a time (``--lanes 1``) this
    is the attack's own effect, plus whatever the previous one left behind; with several it is shared.
    """
    out: dict[str, dict[str, Any]] = {}
    for h in run.get("hostile", []):
        entry = out.setdefault(h["attack"], {})
        for proto, rows in run.get("latency", {}).items():
            during = [r for r in rows if h["started"] <= r["t"] - interval / 2 <= h["ended"]]
            if not during:
                continue
            acc = entry.setdefault(proto, {"p99_ms": None, "errors": 0, "silent": 0})
            worst = [r["p99_ms"] for r in during if r.get("p99_ms") is not None]
            acc["p99_ms"] = max(worst + ([acc["p99_ms"]] if acc["p99_ms"] is not None else []), default=None)
            acc["errors"] += sum(sum(r.get("errors", {}).values()) for r in during)
            acc["silent"] += sum(1 for r in during if not r.get("ok"))
    return out


def impact_cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    cells = []
    for v in entry.values():
        text = f"{v['p99_ms']:,.0f}" if v["p99_ms"] is not None else "no answer"
        notes = ([f"{v['errors']} err"] if v["errors"] else []) + ([f"{v['silent']} silent"] if v["silent"] else [])
        cells.append(text + (f" ({', '.join(notes)})" if notes else ""))
    return " / ".join(cells)


def outcome_cell(entry: dict | None) -> str:
    if not entry:
        return "not run"
    parts = []
    for outcome, n in sorted(entry["outcomes"].items(), key=lambda kv: -kv[1]):
        label = outcome
        if outcome in ("4xx", "5xx", "served"):
            codes = [s for s in entry["statuses"] if s[0] == {"served": "2", "4xx": "4", "5xx": "5"}[outcome]]
            label = "/".join(sorted(codes)) or outcome
        elif outcome == "goaway" and entry["goaway_codes"]:
            label = "GOAWAY " + "/".join(sorted(entry["goaway_codes"]))
        parts.append(f"{label} x{n}")
    # Answers the outcomes do not name (an idle connection's 200, a 408 before the close): listed after.
    named = sum(entry["outcomes"].get(k, 0) for k in ("served", "4xx", "5xx"))
    if sum(entry["statuses"].values()) > named:
        parts.append("answers: " + ", ".join(f"{code} x{n}" for code, n in sorted(entry["statuses"].items())))
    return ", ".join(parts) + (f" ({entry['runs']} runs)" if entry["runs"] > 1 else "")


# The figure --------------------------------------------------------------------------------

def plot(doc: dict, path: Path) -> Path:
    """One panel per series (RSS, threads, fds, CPU, normal p99) against time; a line per runtime.

    An interval in which no normal request was answered has no p99: it is
    drawn as an x along the top of the p99 panel, so an outage is not a gap.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no display, no pyplot state
    from matplotlib.figure import Figure

    panels = SERIES + [("p99_ms", "normal visitors' p99 (ms, log; h1 solid, h2 dashed; x at the top: "
                                  "an interval with no normal request answered)")]
    fig = Figure(figsize=(12, 2.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True)
    ceiling = 2 * max((r["p99_ms"] for run in doc["runtimes"].values() for rows in run.get("latency", {}).values()
                       for r in rows if r.get("p99_ms")), default=1000.0)
    for i, (runtime, run) in enumerate(doc["runtimes"].items()):
        color = f"C{i % 10}"
        for ax, (key, _) in zip(axes, panels):
            if key == "p99_ms":
                _plot_latency(ax, run, color, ceiling)
                continue
            pts = [(s["t"], s[key]) for s in run.get("samples", []) if s.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), color=color, label=runtime)
    phases = doc["plan"]["phases"]
    for ax, (key, title) in zip(axes, panels):
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(True, alpha=0.35)
        for edge in (phases["warmup_end"], phases["hostile_end"]):
            ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("seconds since the server started (dotted: hostile clients start, stop)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title="runtime", loc="outside right upper")
    fig.suptitle(f"soak: {doc['plan']['minutes']:g} min per runtime, protocols {','.join(doc['plan']['protocols'])}"
                 + ("" if doc["plan"]["lanes"] == 1 else f", {doc['plan']['lanes']} attacks at a time"))
    fig.savefig(path, dpi=100)
    return path


def _plot_latency(ax: Any, run: dict, color: str, ceiling: float) -> None:
    for proto, rows in run.get("latency", {}).items():
        style = "--" if proto == "h2" else "-"
        pts = [(r["t"], r["p99_ms"]) for r in rows if r.get("p99_ms")]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle=style)
        silent = [r["t"] for r in rows if r.get("requests") and not r.get("ok")]
        if silent:
            ax.scatter(silent, [ceiling] * len(silent), color=color, marker="x" if proto == "h1" else "+", s=30)


# The README ----------------------------------------------------------------------------------

def readme(doc: dict) -> str:
    plan = doc["plan"]
    lines = [f"# Soak {doc['when']}", "",
             f"`python -m experiments.hostile.soak {doc['argv']}`: {plan['minutes']:g} min per runtime "
             f"(warm-up to {plan['phases']['warmup_end']:g} s, hostile clients to {plan['phases']['hostile_end']:g} s, "
             f"cool-down to {plan['phases']['total']:g} s), {plan['lanes']} attacks at a time, each up to "
             f"{plan['attack_seconds']:g} s; normal visitors {plan['rate']:g} req/s per protocol "
             f"({', '.join(plan['protocols'])}); server defaults (header 10 s, keep-alive 15 s, io 30 s, "
             f"max_workers {plan.get('max_workers', '15 x CPUs')}). Code: commit {doc.get('code', {}).get('commit', '?')}, "
             f"tree digest {doc.get('code', {}).get('tree_sha256', '?')} (uncommitted changes in code.diff).", "",
             "Verdict rule for flat (fixed in `experiments/hostile/soak_report.py` before any run): start = median of the "
             "last 5 warm-up samples, end = median of the last 5 cool-down samples;",
             *(f"- {k}: {rule}" for k, rule in FLAT_RULES.items()), "", "![soak](soak.png)", "",
             "## Server series (start / end / max, slope per minute during the attacks)", "",
             "| runtime | RSS MiB | threads | fds | CPU % | p99 ms h1 | p99 ms h2 | flat? | server |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for runtime, run in doc["runtimes"].items():
        lines.append(_series_row(runtime, run))
    lines += ["", "## Hostile clients: what each attack saw, per runtime", "",
              "Outcomes count connections (or HTTP/2 streams, for the stream attacks); status codes and GOAWAY "
              "codes are named. `still-open`: the server still tolerated the attacker when its time ran out.", ""]
    lines += _outcome_table(doc)
    shared = "" if plan["lanes"] == 1 else (f" {plan['lanes']} attacks ran at a time, so an interval's p99 is "
                                               "shared by the attacks running then: read the columns as an upper bound.")
    lines += ["", "## Normal visitors while each attack ran", "",
              f"Worst p99 in ms ({' / '.join(plan['protocols'])}) over the {plan['interval']:g} s intervals "
              "whose middle falls in the attack's runs (`-`: none did, the attack was shorter); `err`: normal requests that failed then, `silent`: intervals in which "
              "not one normal request was answered." + shared, ""]
    lines += _impact_table(doc)
    lines += ["", "## Normal visitors", ""]
    for runtime, run in doc["runtimes"].items():
        for proto, s in run.get("latency_summary", {}).items():
            lines.append(f"- {runtime} {proto}: {s.get('requests', 0)} requests, errors {s.get('errors') or 'none'}; "
                         f"worst p99 {s.get('max')} ms at {s.get('worst_at_s')} s"
                         + (f" (service time p99 at worst {s['service_p99_max']} ms)" if s.get("service_p99_max") else "")
                         + (f" while {', '.join(s['worst_during'])} ran" if s.get("worst_during") else ""))
    return "\n".join(lines) + "\n"


def _fmt(entry: dict | None, unit: str = "") -> str:
    if not entry:
        return "-"
    slope = entry.get("slope_per_min")
    tail = f", {slope:+g}/min" if slope is not None else ""
    return f"{entry['start']:g} / {entry['end']:g} / {entry['max']:g}{unit}{tail}"


def _series_row(runtime: str, run: dict) -> str:
    if run.get("error"):
        return f"| {runtime} | error: {run['error']} | | | | | | | |"
    series, lat = run.get("series", {}), run.get("latency_summary", {})
    judged = {k: v.get("flat") for k, v in series.items() if k != "cpu_pct"}
    judged.update({f"p99 {p}": s.get("flat") for p, s in lat.items()})
    bad = [k for k, ok in judged.items() if ok is False]
    verdict = "flat" if not bad and judged else "NOT flat: " + ", ".join(bad) if bad else "?"
    cells = [_fmt(series.get(k)) for k in ("rss_mib", "threads", "fds", "cpu_pct")]
    cells += [_fmt(lat.get(p)) for p in ("h1", "h2")]
    return f"| {runtime} | " + " | ".join(cells) + f" | {verdict} | {run.get('server_end', '?')} |"


def _outcome_table(doc: dict) -> list[str]:
    runtimes = list(doc["runtimes"])
    attacks = []
    for run in doc["runtimes"].values():
        attacks += [a for a in run.get("outcomes", {}) if a not in attacks]
    rows = ["| attack | " + " | ".join(runtimes) + " |", "| --- |" + " --- |" * len(runtimes)]
    for attack in doc["plan"]["attacks"]:
        cells = [outcome_cell(doc["runtimes"][rt].get("outcomes", {}).get(attack)) for rt in runtimes]
        rows.append(f"| {attack} | " + " | ".join(cells) + " |")
    return rows


def _impact_table(doc: dict) -> list[str]:
    runtimes = list(doc["runtimes"])
    impacts = {rt: attack_impact(doc["runtimes"][rt], doc["plan"]["interval"]) for rt in runtimes}
    rows = ["| attack | " + " | ".join(runtimes) + " |", "| --- |" + " --- |" * len(runtimes)]
    for attack in doc["plan"]["attacks"]:
        rows.append(f"| {attack} | " + " | ".join(impact_cell(impacts[rt].get(attack)) for rt in runtimes) + " |")
    return rows
