"""Latency against offered load: what an open-loop run (``--rates``) shows, and how it is read.

A closed-loop run answers "how fast can it go"; this answers "how long does
a request wait at a given arrival rate", which is what a user of a server
feels and what a latency claim is about. For each runtime the curve is p99
(and p50, p99.9) against the offered rate, from light load up to and past
the *knee*, where queueing takes over.

Definitions, used by the report and by the claims:

- a rate is **sustained** when at least 95% of it is answered 2xx/3xx inside
  the measured window and p99 stays under the run's bound
  (``--p99-bound-ms``, 100 ms by default; see :func:`experiments.harness.run.sustained`);
- a runtime's **capacity under the bound** is the highest rate it sustained;
- its **floor** is p99 at the lowest rate offered, and its **knee** the first
  rate at which p99 passes :data:`KNEE_FACTOR` times the floor.

``python -m experiments.harness.report RUN_DIR`` renders an open-loop run with this
module: ``REPORT.md``, ``report.csv`` and ``curves-<workload>-<proto>.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .harness.plots import is_peer, runtime_styles, tables

__all__ = ["KNEE_FACTOR", "capacity", "curve", "knee", "p99_at", "render_curves", "rounds_at_capacity", "summary"]

KNEE_FACTOR = 3.0


def curve(rows: list[dict], runtime: str, workload: str, conc: int | None = None) -> list[dict]:
    """The measured points of one runtime's curve, by offered rate (failed and skipped rates left out)."""
    pts = [r for r in rows if r["runtime"] == runtime and r["workload"] == workload and r["rate"] is not None
           and not r["failed"] and (conc is None or r["conc"] == conc)]
    return sorted(pts, key=lambda r: r["rate"])


def capacity(points: list[dict]) -> float | None:
    """The highest offered rate sustained (95% answered, p99 in bound); None if none was."""
    return max((r["rate"] for r in points if r["sustained"]), default=None)


def knee(points: list[dict], factor: float = KNEE_FACTOR) -> float | None:
    """The first offered rate whose p99 is over ``factor`` times the lowest rate's: None while it never is."""
    if not points or points[0]["p99_ms"] is None:
        return None
    floor = points[0]["p99_ms"]
    return next((r["rate"] for r in points if r["p99_ms"] is not None and r["p99_ms"] > factor * floor), None)


def rounds_at_capacity(points: list[dict]) -> str:
    """Each round's p99 at the capacity and at the next rate: with few rounds, one slow round moves a capacity."""
    cap = capacity(points)
    at = [r for r in points if cap is not None and r["rate"] >= cap][:2] or points[:1]
    return "; ".join(f"{r['rate']:,.0f} req/s: {', '.join(f'{v:,.1f}' for v in r['p99_all'])} ms"
                     + ("" if r["sustained"] else " (not sustained)") for r in at)


def p99_at(points: list[dict], rate: float) -> dict | None:
    return next((r for r in points if r["rate"] == rate), None)


def summary(rows: list[dict]) -> list[dict]:
    """Per (workload, proto, conc, runtime): floor, knee, capacity under the bound, CPU at the lightest rate."""
    out = []
    keys = sorted({(r["workload"], r["proto"], r["conc"], r["runtime"]) for r in rows if r["rate"] is not None},
                  key=lambda k: (str(k[0]), str(k[1]), k[2], is_peer(k[3]), str(k[3])))
    for workload, proto, conc, runtime in keys:
        pts = [r for r in curve(rows, runtime, workload, conc) if r["proto"] == proto]
        out.append({"workload": workload, "proto": proto, "conc": conc, "runtime": runtime,
                    "floor_p99_ms": pts[0]["p99_ms"] if pts else None, "knee_rps": knee(pts),
                    "capacity_rps": capacity(pts), "cpu_us_light": pts[0]["cpu_us_per_request"] if pts else None,
                    "rates_measured": len(pts)})
    return out


# Rendering ---------------------------------------------------------------------------

def _f(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(row: dict | None) -> str:
    """p99 (ms) at one rate, with the spread over rounds; marked when the rate was not sustained."""
    if row is None:
        return ""
    if row["failed"]:
        return "past knee" if "past the knee" in str(row["error"]) else "failed"
    p99s = row["p99_all"]
    text = _f(row["p99_ms"], ".1f" if (row["p99_ms"] or 0) < 100 else ",.0f")
    if len(p99s) > 1:
        text += f" ({min(p99s):.1f}..{max(p99s):.1f})"
    return text + ("" if row["sustained"] else " ✗")


def _table(group: list[dict]) -> list[str]:
    rates = sorted({r["rate"] for r in group})
    runtimes = sorted({r["runtime"] for r in group}, key=lambda rt: (is_peer(rt), str(rt)))
    lines = ["| runtime \\ offered req/s | " + " | ".join(f"{r:,g}" for r in rates) + " |",
             "| --- |" + " ---: |" * len(rates)]
    for rt in runtimes:
        cells = [_cell(next((r for r in group if r["runtime"] == rt and r["rate"] == rate), None)) for rate in rates]
        lines.append(f"| {rt} | " + " | ".join(cells) + " |")
    return lines


def _summary_table(items: list[dict]) -> list[str]:
    lines = ["| runtime | connections | p99 floor ms | knee (p99 > 3x floor) | highest rate sustained | "
             "CPU us/request at the lightest rate |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in items:
        lines.append(f"| {s['runtime']} | {s['conc']:,} | {_f(s['floor_p99_ms'], '.2f')} | "
                     f"{_f(s['knee_rps'], ',.0f')} | {_f(s['capacity_rps'], ',.0f')} | {_f(s['cpu_us_light'], '.0f')} |")
    return lines


def plot_curves(rows: list[dict], out_dir: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Per workload and protocol: p99 and p50 against offered rate (whiskers: p99's min..max over rounds),
    answered against offered, and CPU per request; hollow markers are rates not sustained."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    style = runtime_styles([r for r in rows if r["rate"] is not None])
    paths = []
    for (workload, proto), group in tables([r for r in rows if r["rate"] is not None]).items():
        fig = Figure(figsize=(14, 9), layout="constrained")
        FigureCanvasAgg(fig)
        (p99_ax, p50_ax), (done_ax, cpu_ax) = fig.subplots(2, 2, sharex=True)
        top = max((r["rate"] for r in group), default=1)
        for rt, (color, marker, line) in style.items():
            for conc in sorted({r["conc"] for r in group}):
                pts = curve(group, rt, workload, conc)
                if not pts:
                    continue
                label = rt if len({r["conc"] for r in group}) == 1 else f"{rt}, {conc:,} conns"
                x = [r["rate"] for r in pts]
                lat = [r["p99_ms"] for r in pts]
                low = [v - min(r["p99_all"] or [v]) for v, r in zip(lat, pts)]
                high = [max(r["p99_all"] or [v]) - v for v, r in zip(lat, pts)]
                p99_ax.errorbar(x, lat, yerr=[low, high], marker=marker, color=color, linestyle=line, capsize=3,
                                label=label)
                p50_ax.plot(x, [r["p50_ms"] for r in pts], marker=marker, color=color, linestyle=line)
                done_ax.plot(x, [r["ok_rps"] for r in pts], marker=marker, color=color, linestyle=line)
                cpu_ax.plot(x, [r["cpu_us_per_request"] for r in pts], marker=marker, color=color, linestyle=line)
                missed = [r for r in pts if not r["sustained"]]
                for ax, key in ((p99_ax, "p99_ms"), (p50_ax, "p50_ms"), (done_ax, "ok_rps")):
                    ax.scatter([r["rate"] for r in missed], [r[key] for r in missed], s=90, marker=marker,
                               facecolors="white", edgecolors=color, linewidths=1.5, zorder=3)
        done_ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":")
        for ax, title in ((p99_ax, "p99 latency from the due time, ms (log; whiskers: min..max over rounds)"),
                          (p50_ax, "p50 latency, ms (log)"),
                          (done_ax, "answered 2xx/3xx per second inside the window (dotted: all of it)"),
                          (cpu_ax, "server CPU us per request")):
            ax.set_title(title, fontsize=10)
            ax.grid(True, alpha=0.35)
        for ax in (p99_ax, p50_ax):
            ax.set_yscale("log")
        for ax in (done_ax, cpu_ax):
            ax.set_xlabel("offered requests/s (open loop)")
        handles, labels = p99_ax.get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, title="runtime (dashed: peers)", loc="outside right upper")
        fig.suptitle(f"{workload} ({proto}): latency against offered load; hollow: rate not sustained")
        for fmt in formats:
            path = Path(out_dir) / f"curves-{workload}-{proto}.{fmt}"
            fig.savefig(path, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
            paths.append(path)
    return paths


def render_curves(target: Path, doc: dict, rows: list[dict]) -> list[Path]:
    """Print and write an open-loop run's report: the curves, the table of p99 by rate, the summary."""
    from .harness.report import _setup, write_csv

    plots = plot_curves(rows, target)
    items = summary(rows)
    meta = doc.get("metadata") or {}
    load = meta.get("load") or {}
    out = [f"# {target.resolve().name}: latency against offered load", "",
           "Open loop (openload): requests fall due at the offered rate whatever the server does, and each one's "
           "latency runs from its due time, so a server that falls behind shows it in every request that waited. "
           f"A rate is *sustained* when 95% of it is answered 2xx/3xx inside the window with p99 under "
           f"{load.get('p99_bound_ms', 100):g} ms; a runtime stops two rates after it stops sustaining. ✗: not "
           "sustained. Cells: p99 ms of the median round (min..max over rounds).", ""]
    for (workload, proto), group in tables([r for r in rows if r["rate"] is not None]).items():
        out += [f"## {workload} ({proto})", ""]
        for conc in sorted({r["conc"] for r in group}):
            out += [f"### {conc:,} connections", "", *_table([r for r in group if r["conc"] == conc]), ""]
        out += _summary_table([s for s in items if (s["workload"], s["proto"]) == (workload, proto)]) + [""]
        out += [f"![{workload} ({proto})]({os.path.relpath(p, target)})" for p in plots
                if p.suffix == ".png" and p.stem == f"curves-{workload}-{proto}"] + [""]
    out += ["## Setup", "", *_setup(meta), ""]
    md, table = target / "REPORT.md", target / "report.csv"
    md.write_text("\n".join(out))
    write_csv(rows, table)
    print("\n".join(out[: out.index("## Setup")]))
    return [md, table, *plots]
