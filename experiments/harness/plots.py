"""The harness's figures: one per workload and protocol, six panels against concurrency."""

from __future__ import annotations

import re
from pathlib import Path

def _safe(name) -> str:
    return re.sub(r"[^\w.-]+", "_", str(name))


PEER_PREFIX = "peer:"  # runtimes named peer:<server> are reference servers, drawn dashed

# (row key, panel title, y scale): 2 rows x 3 columns, against concurrency on a log x axis.
PANELS = [("rps", "throughput (req/s; whiskers: min..max of the rounds)", "linear"),
          ("p50_ms", "p50 latency (ms, log scale)", "log"),
          ("p99_ms", "p99 latency (ms, log scale)", "log"),
          ("peak_rss_mib", "peak resident memory (MiB)", "linear"),
          ("peak_threads", "peak OS threads (log scale)", "log"),
          ("cpu_us_per_request", "server CPU µs per request", "linear")]


def is_peer(runtime) -> bool:
    return str(runtime).startswith(PEER_PREFIX)


def runtime_styles(rows: list[dict]) -> dict[str, tuple[str, str, str]]:
    """runtime -> (colour, marker, line style), the same in every figure of a run.

    astra's runtimes come first (alphabetically), then the peers; peers' lines are dashed.
    """
    runtimes = sorted({str(r["runtime"]) for r in rows}, key=lambda rt: (is_peer(rt), rt))
    return {rt: (f"C{i % 10}", "osD^v<>ph*"[i % 10], "--" if is_peer(rt) else "-")
            for i, rt in enumerate(runtimes)}


def _whiskers(ax, pts: list[dict], color) -> None:
    if pts:
        ax.errorbar([r["conc"] for r in pts], [r["rps"] for r in pts], fmt="none", ecolor=color, capsize=3,
                    alpha=0.7, yerr=[[r["rps"] - min(r["rps_all"]) for r in pts],
                                     [max(r["rps_all"]) - r["rps"] for r in pts]])


def plot(doc: dict, rows: list[dict], out_dir: Path, stem: str | None,
         formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """One figure per (workload, protocol), saved once per format; returns the files written.

    Files are ``<stem>-<workload>-<proto>.<format>``, or ``<workload>-<proto>.<format>``
    when ``stem`` is None (a run directory).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display, no pyplot state
    from matplotlib.figure import Figure

    style = runtime_styles(rows)
    paths = []
    for (workload, proto), group in tables(rows).items():
        fig = Figure(figsize=(16, 8.6), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.subplots(2, 3, sharex=True)
        for ax, panel in zip(grid.flat, PANELS):
            _draw_panel(ax, group, style, *panel)
        _shared_axes(fig, grid, group, style)
        fig.suptitle(_title(workload, proto, group))
        base = Path(out_dir) / figure_stem(stem, workload, proto)
        for fmt in formats:
            path = base.with_name(f"{base.name}.{fmt}")
            # No date in the file: rendering the same results twice gives the same SVG.
            fig.savefig(path, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
            paths.append(path)
    return paths


def _draw_panel(ax, group: list[dict], style: dict, key: str, label: str, yscale: str) -> None:
    """One measure against concurrency, a line per runtime; a run with errors gets a hollow marker."""
    ax.set_xmargin(0.08)
    top = 0
    for rt, (color, marker, line) in style.items():
        pts = [r for r in group if str(r["runtime"]) == rt and not r["failed"] and r[key] is not None
               and (yscale == "linear" or r[key] > 0)]
        if not pts:
            continue
        top = max(top, *(r[key] for r in pts))
        ax.plot([r["conc"] for r in pts], [r[key] for r in pts], marker=marker, color=color,
                linestyle=line, label=rt)
        if key == "rps":  # whiskers: the rounds' min..max, where there were several
            _whiskers(ax, [r for r in pts if len(r.get("rps_all") or []) > 1], color)
        bad = [r for r in pts if r["errors"]]
        ax.scatter([r["conc"] for r in bad], [r[key] for r in bad], s=90, marker=marker,
                   facecolors="white", edgecolors=color, linewidths=1.5, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale(yscale)
    if yscale == "linear" and top > 0:
        ax.set_ylim(0, top * 1.1)  # from zero, with room for the markers at the top
    ax.set_title(label)
    ax.grid(True, which="major", alpha=0.35)


def _shared_axes(fig, grid, group: list[dict], style: dict) -> None:
    """The concurrency ticks every panel shares, and one legend for the figure."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axes = list(grid.flat)
    for ax in grid[-1]:
        ax.set_xlabel("concurrent connections (log scale)")
    concs = sorted({r["conc"] for r in group if r["conc"]})
    if concs:
        axes[0].set_xticks(concs)  # shared: every panel gets them
    axes[0].xaxis.set_major_formatter(ScalarFormatter())
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    handles = {lab: h for ax in axes for h, lab in zip(*ax.get_legend_handles_labels())}
    if handles:
        ordered = [rt for rt in style if rt in handles]
        legend_title = "runtime" + ("\n(dashed: peer servers,\nfor reference)" if any(map(is_peer, ordered))
                                    else "")
        fig.legend([handles[rt] for rt in ordered], ordered, title=legend_title, loc="outside right upper")


def _title(workload, proto, group: list[dict]) -> str:
    title = f"{workload} ({proto})"
    failed = [f"{r['runtime']}@{r['conc']}" for r in group if r["failed"]]
    if failed:
        title += f"\nnot plotted, run failed: {', '.join(failed)}"
    if any(r["errors"] for r in group if not r["failed"]):
        title += "\nhollow marker: the run had errors, its latency is not trustworthy"
    return title


def tables(rows: list[dict]) -> dict[tuple, list[dict]]:
    tables: dict[tuple, list[dict]] = {}
    for row in rows:
        tables.setdefault((row["workload"], row["proto"]), []).append(row)
    return tables


def figure_stem(stem: str | None, workload, proto) -> str:
    """``<workload>-<proto>`` in a run directory, ``<stem>-<workload>-<proto>`` next to a .json document."""
    name = f"{_safe(workload)}-{_safe(proto)}"
    return f"{stem}-{name}" if stem else name
