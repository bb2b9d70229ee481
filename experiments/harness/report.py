"""Render the harness's results: a summary table, a Markdown report, a CSV, plots and pyperf files.

Pure: it reads what ``python -m experiments run`` wrote and starts no servers
and no load, so old results can be rendered again at any time. A run is a
directory (see ``experiments/SCHEMA.md``)::

    python -m experiments.harness.report results/experiment-XXXX/

reads ``env.json`` and ``runs.jsonl`` there, prints the table and writes, in
that directory, ``REPORT.md``, ``report.csv``, ``<workload>-<proto>.png`` and
``.svg``, and ``pyperf/<runtime>.json`` (compare two with ``python -m pyperf
compare_to``). The older single-document form still renders::

    python -m experiments.harness.report results/experiment-XXXX.json

and writes ``experiment-XXXX.md``, ``experiment-XXXX.csv`` and
``experiment-XXXX-<workload>-<proto>.png`` next to the JSON file.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
from pathlib import Path

from .plots import figure_stem, plot, tables

#: A row is one (runtime, workload, protocol, connections, offered rate); the rate is None in closed loop.
KEY = ("runtime", "workload", "proto", "conc", "rate")
METRICS = ("rps", "p50_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "errors", "cpu_us_per_request", "peak_rss_mib",
           "rss_per_conn_kib", "peak_threads", "ctx_vol", "ctx_invol", "conns_established",
           "fair_min_rps", "fair_max_rps", "fair_mean_rps", "steady_rps", "other_cpus",
           # open loop only (None in closed loop)
           "ok_rps", "censored", "sustained", "generator_cpu_share", "conns_steady_min")
CSV_FIELDS = ("workload", "proto", "conc", "rate", "runtime", "failed", "error", "rounds", "rounds_ok", "round",
              "servers", *METRICS, "spread", "rps_all", "p99_all")


ENV_FILE, RUNS_FILE = "env.json", "runs.jsonl"


# Reading --------------------------------------------------------------------------

def read_runs(path: Path) -> tuple[list[dict], list[str]]:
    """The objects of a runs.jsonl file, and a note for each line that had to be skipped.

    The harness appends one line per finished run, so a run interrupted (or
    still going) can leave a last line cut short: it is skipped, as is any
    other line that is not a JSON object, each with a note saying so.
    """
    runs, skipped = [], []
    lines = Path(path).read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except ValueError:
            run = None
        if isinstance(run, dict):
            runs.append(run)
        elif number == len(lines):
            skipped.append(f"{Path(path).name}: last line ({len(line)} characters) is incomplete "
                           "(the run was interrupted or is still going); skipped")
        else:
            skipped.append(f"{Path(path).name}: line {number} is not a JSON object; skipped")
    return runs, skipped


def load_run(target: Path) -> dict:
    """``{"metadata": ..., "runs": [...]}`` from a run directory or a single results .json document."""
    target = Path(target)
    if not target.is_dir():
        return json.loads(target.read_text())
    env, runs_file = target / ENV_FILE, target / RUNS_FILE
    if not env.exists() and not runs_file.exists():
        raise FileNotFoundError(f"{target} is not a run directory: it has neither {ENV_FILE} nor {RUNS_FILE}")
    metadata = json.loads(env.read_text()) if env.exists() else {}
    runs, skipped = read_runs(runs_file) if runs_file.exists() else ([], [f"no {RUNS_FILE}: no run finished"])
    if not env.exists():
        skipped.append(f"no {ENV_FILE}: the setup is unknown")
    if skipped:
        metadata = metadata | {"notes": [*(metadata.get("notes") or []), *skipped]}
    return {"metadata": metadata, "runs": runs}


def dig(d, *keys):
    """d[k1][k2]... or None as soon as a level is missing (failed runs lack whole sections)."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _div(value, by):
    return None if value is None else value / by


def _rps(run: dict):
    value = dig(run, "load", "requests_per_s")
    return value if isinstance(value, (int, float)) else None


def _errors(run: dict) -> int:
    wrk = dig(run, "load", "errors") or {}
    total = sum(v for v in wrk.values() if isinstance(v, (int, float)))
    fair = run.get("fairness") or {}
    # h2load's "errored" is a subset of "failed" (failed also counts non-2xx/3xx
    # answers) and its timed-out requests are failed ones too: adding the three
    # would count a request up to three times, so take the largest.
    return int(total + max(fair.get(k) or 0 for k in ("failed", "errored", "timeout")))


def _flatten(run: dict) -> dict:
    lat = dig(run, "load", "latency_us") or {}
    cost = run.get("cost") or {}
    fair = dig(run, "fairness", "client_rps") or {}
    return {
        "rps": _rps(run),
        "p50_ms": _div(lat.get("p50"), 1000), "p99_ms": _div(lat.get("p99"), 1000),
        "p999_ms": _div(lat.get("p99.9"), 1000), "max_ms": _div(lat.get("max"), 1000),
        "mean_ms": _div(lat.get("mean"), 1000),
        "errors": _errors(run),
        "cpu_us_per_request": cost.get("cpu_us_per_request"),
        "peak_rss_mib": _div(cost.get("peak_rss_kib"), 1024),
        "rss_per_conn_kib": _div(cost.get("rss_per_connection_bytes"), 1024),
        "peak_threads": cost.get("peak_threads"),
        "ctx_vol": cost.get("ctx_voluntary"), "ctx_invol": cost.get("ctx_involuntary"),
        "conns_established": cost.get("connections_established"),
        "fair_min_rps": fair.get("min"), "fair_max_rps": fair.get("max"), "fair_mean_rps": fair.get("mean"),
        # The fairness run's clock starts once every client has connected (h2load): throughput without
        # the connect storm, which at 25,000 fresh connections fills much of wrk's window.
        "steady_rps": dig(run, "fairness", "requests_per_s") if run.get("proto") != "h2" else None,
        "other_cpus": run.get("other_cpus"),  # CPUs something else kept busy just before the run
        "ok_rps": dig(run, "load", "ok_rps"), "censored": dig(run, "load", "censored"),
        "sustained": run.get("sustained"), "generator_cpu_share": dig(run, "load", "generator", "cpu_share_max"),
        "conns_steady_min": cost.get("connections_steady_min"),
    }


def _p99(run: dict):
    value = dig(run, "load", "latency_us", "p99")
    return value if isinstance(value, (int, float)) else None


def summarize(doc: dict) -> list[dict]:
    """One row per (runtime, workload, proto, conc, rate), from the round with the median req/s.

    With an even number of good rounds the lower of the two middle ones is
    taken, so every field of a row (rps included) comes from one real run.
    In open loop (a rate is offered) the throughput is the rate while the
    server keeps up, so the median round is the one with the median p99 (the
    higher of the two middle ones for an even count), and
    ``p99_all`` lists every round's p99 for the whiskers.
    ``spread`` is (max - min) / median req/s over the good rounds, None with
    fewer than two. A row whose every round errored has ``failed`` True,
    ``error`` set and None metrics; errors of some rounds only are listed in
    ``round_errors``.
    """
    groups: dict[tuple, list[dict]] = {}
    for run in doc.get("runs") or []:
        groups.setdefault(tuple(run.get(k) for k in KEY), []).append(run)
    rows = []
    for key, group in groups.items():
        ok = [r for r in group if not r.get("error") and _rps(r) is not None]
        bad = [f"round {r.get('round', '?')}: {r.get('error') or 'no requests_per_s'}"
               for r in group if r not in ok]
        row = dict(zip(KEY, key), rounds=len(group), rounds_ok=len(ok), failed=not ok,
                   error="; ".join(bad) if not ok else None, round_errors=bad)
        if not ok:
            rows.append(row | dict.fromkeys(METRICS) | {"round": None, "servers": None, "rps_all": [],
                                                        "spread": None, "p99_all": []})
            continue
        open_loop = key[KEY.index("rate")] is not None
        # The median round; with an even count, the worse of the two middle ones either way (lower req/s,
        # higher p99), so that a figure never flatters the server.
        by = (lambda r: _p99(r) if _p99(r) is not None else float("inf")) if open_loop else _rps
        pick = sorted(ok, key=by)[len(ok) // 2 if open_loop else (len(ok) - 1) // 2]
        rps_all = [_rps(r) for r in ok]
        median = statistics.median(rps_all)
        spread = (max(rps_all) - min(rps_all)) / median if len(ok) > 1 and median else None
        rows.append(row | _flatten(pick) | {"round": pick.get("round"), "servers": pick.get("servers"),
                                            "rps_all": rps_all, "spread": spread,
                                            "p99_all": [_p99(r) / 1000 for r in ok if _p99(r) is not None]})
    rows.sort(key=lambda r: (str(r["workload"]), str(r["proto"]), r["conc"] or 0, r["rate"] or 0, str(r["runtime"])))
    return rows


# Tables ---------------------------------------------------------------------------

def _f(value, spec: str) -> str:
    if value is None:
        return "-"
    return format(int(value) if spec.endswith("d") else value, spec)


def _fair(r: dict) -> str:
    if r["fair_min_rps"] is None and r["fair_max_rps"] is None:
        return "-"
    return f"{_f(r['fair_min_rps'], '.2f')}..{_f(r['fair_max_rps'], '.2f')}"


# (header, what it means, cell) -- shared by the printed table, the Markdown and its legend.
COLUMNS = [
    ("conc", "concurrent connections the load generator keeps open", lambda r: str(r["conc"])),
    ("runtime", "the astra runtime serving (peer:NAME: another server, for reference)", lambda r: str(r["runtime"])),
    ("req/s", "responses per second wrk completed (the median round)", lambda r: _f(r["rps"], ",.0f")),
    ("p50 ms", "median latency in ms of the requests wrk saw complete", lambda r: _f(r["p50_ms"], ".2f")),
    ("p99 ms", "99th percentile latency, ms", lambda r: _f(r["p99_ms"], ".2f")),
    ("p99.9 ms", "99.9th percentile latency, ms", lambda r: _f(r["p999_ms"], ".2f")),
    ("errors", "wrk connect/read/write/timeout errors and non-2xx/3xx answers, plus the requests "
               "h2load's fairness run saw fail", lambda r: _f(r["errors"], "d")),
    ("cpu-us/req", "server CPU time (user + system, all its processes) per completed request, microseconds",
     lambda r: _f(r["cpu_us_per_request"], ".1f")),
    ("RSS MiB", "peak resident memory of the server processes, MiB", lambda r: _f(r["peak_rss_mib"], ".1f")),
    ("KiB/conn", "growth of resident memory over the idle server, per connection open at the peak, KiB",
     lambda r: _f(r["rss_per_conn_kib"], ".1f")),
    ("threads", "peak OS threads of the server processes", lambda r: _f(r["peak_threads"], "d")),
    ("ctx vol/invol", "voluntary / involuntary context switches of the server during the run",
     lambda r: f"{_f(r['ctx_vol'], 'd')}/{_f(r['ctx_invol'], 'd')}"),
    ("conns", "peak connections the server had open (from astra's stats)",
     lambda r: _f(r["conns_established"], "d")),
    ("fair req/s/client", "h2load --h1 per-client req/s, slowest..fastest client: 0.00 is a starved client",
     _fair),
    ("steady req/s", "req/s of the fairness run, whose clock starts once every client has connected: "
                     "throughput without the connect storm that wrk's window includes",
     lambda r: _f(r["steady_rps"], ",.0f")),
    ("spread", "(max - min) / median req/s over the rounds: the run-to-run noise ('-' with one round)",
     lambda r: _f(r["spread"], ".0%")),
]


def _cells(row: dict) -> list[str]:
    if row["failed"]:
        return [str(row["conc"]), str(row["runtime"]), "FAILED"] + ["-"] * (len(COLUMNS) - 3)
    return [cell(row) for _, _, cell in COLUMNS]




def _notes(rows: list[dict]) -> list[str]:
    notes = []
    for r in rows:
        where = f"{r['runtime']} @ {r['conc']}"
        if r["failed"]:
            notes.append(f"{where}: FAILED, every round errored ({r['error']})")
        elif r["round_errors"]:
            notes.append(f"{where}: reported from the rounds that ran; {'; '.join(r['round_errors'])}")
    if erred := [f"{r['runtime']} @ {r['conc']} ({r['errors']})" for r in rows if r["errors"]]:
        notes.append(f"with errors, so latency not trustworthy: {', '.join(erred)}")
    if busy := [f"{r['runtime']} @ {r['conc']}" for r in rows if (r.get("other_cpus") or 0) > 0.2]:
        notes.append(f"something else was busy on the machine just before: {', '.join(busy)}")
    return notes


def print_table(rows: list[dict]) -> None:
    for (workload, proto), group in tables(rows).items():
        lines = [[h for h, _, _ in COLUMNS]] + [_cells(r) for r in group]
        widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
        print(f"\n{workload} ({proto})")
        for line in lines:
            print("  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        for note in _notes(group):
            print(f"  note: {note}")
    print("(fair req/s/client: h2load's per-client rates, slowest..fastest client; "
          "spread: (max - min) / median req/s over the rounds)")


# Markdown and CSV -------------------------------------------------------------------

def _inline(value) -> str:
    """A metadata value on one Markdown line: dicts as ``key=value, ...``, lists comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_inline(v) for v in value) or "-"
    return " ".join(str(value).split()) or "-"


def _setup(meta: dict) -> list[str]:
    tools = meta.get("tools") or {}
    if meta.get("server_cpus") and meta.get("client_cpus"):
        pinned = f"server on CPUs {meta['server_cpus']}, load generator on CPUs {meta['client_cpus']}"
    else:
        pinned = "not recorded" if "server_cpus" not in meta else "none: server and load share the CPUs"
    model = f" ({meta['cpu_model']})" if meta.get("cpu_model") else ""
    lines = [
        f"- **Date:** {meta.get('date', '?')}",
        f"- **Machine:** {meta.get('cpus', '?')} CPUs{model}; {meta.get('kernel', '?')}",
        f"- **Pinning:** {pinned}",
        f"- **Python:** {meta.get('python', '?')}",
        *(f"- **{name}:** `{version}`" for name, version in tools.items()),
        f"- **Each run:** {meta.get('warmup_s', '?')} s warm-up, then {meta.get('duration_s', '?')} s measured; "
        f"{meta.get('repeat', '?')} round(s) per point, the round with the median req/s reported",
    ]
    if meta.get("command"):
        lines.append(f"- **Command:** `{meta['command']}`")
    if meta.get("git_commit"):
        lines.append(f"- **Git commit:** `{meta['git_commit']}`")
    if isinstance(meta.get("packages"), dict) and meta["packages"]:
        have = [f"{name} {version}" for name, version in meta["packages"].items() if version]
        missing = [name for name, version in meta["packages"].items() if not version]
        lines.append(f"- **Packages:** {', '.join(have) or '-'}"
                     + (f"; not installed: {', '.join(missing)}" if missing else ""))
    for key, label in (("limits", "Limits"), ("plan", "Plan")):
        if meta.get(key):
            lines.append(f"- **{label}:** {_inline(meta[key])}")
    known = {"date", "cpus", "cpu_model", "kernel", "server_cpus", "client_cpus", "python", "tools", "warmup_s",
             "duration_s", "repeat", "command", "git_commit", "limits", "plan", "notes"}
    known |= {"packages"} if isinstance(meta.get("packages"), dict) else set()
    lines += [f"- **{k}:** {_inline(v)}" for k, v in meta.items() if k not in known]
    lines += [f"- {note}" for note in meta.get("notes") or []]
    return lines


def _md_table(rows: list[dict]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return [line([h for h, _, _ in COLUMNS]), "|" + "|".join("---:" if i != 1 else "---" for i in
                                                              range(len(COLUMNS))) + "|",
            *(line(_cells(r)) for r in rows)]


HOW_TO_READ = """\
- Ratios between runtimes are only meaningful within one run (one results
  directory): one machine, one session, the same tools. Do not compare
  figures across runs made on different machines or with different tools.
- `peer:...` rows are other servers (not astra) measured the same way, as a
  reference; their plot lines are dashed.
- wrk only reports the requests that complete. A server that leaves some
  connections waiting forever can still show high req/s and low latency.
  The fairness columns come from a separate `h2load --h1` run with the same
  concurrency. They give the slowest and fastest client's req/s, and a
  minimum of 0.00 means at least one client was starved: it got nothing.
- A row with errors or timeouts has latency figures you cannot trust: they
  describe only the requests that succeeded.
- `spread` shows how noisy the measurement was. Differences smaller than the
  spread are not differences."""




def _comparing(path: Path, pyperf_files: list[Path]) -> list[str]:
    rel = [os.path.relpath(f, path.parent) for f in pyperf_files]
    out = ["## Comparing runs", "",
           "Each runtime's req/s is also exported as a pyperf suite (one benchmark per workload, protocol and "
           "concurrency, e.g. `hello-h1-c100`; value: seconds per request = 1 / req/s of each round, lower is "
           "better): " + ", ".join(f"`{r}`" for r in rel) + ".", "",
           "From this directory:", "", "```"]
    if len(rel) > 1:
        out.append(f"python -m pyperf compare_to --table {rel[0]} {' '.join(rel[1:])}   # runtimes of this run")
    out += [f"python -m pyperf compare_to ../OTHER-RUN/{rel[0]} {rel[0]}   # one runtime, two runs",
            f"python -m pyperf show --metadata {rel[0]}", "```", "",
            "`report.csv` has one row per point with every column above; `experiments/SCHEMA.md` describes "
            "every file and field. Figures are only comparable between runs made on the same machine with the "
            "same tools: compare `env.json` first.", ""]
    return out


def write_markdown(doc: dict, rows: list[dict], path: Path, plots: list[Path], *, title: str | None = None,
                   pyperf_files: list[Path] = ()) -> None:
    """The report; ``plots`` are linked under their table (PNGs inline, SVGs as links)."""
    path = Path(path)
    out = [f"# Results: {title or path.stem}", "", "## Setup", "", *_setup(doc.get("metadata") or {}), ""]
    for (workload, proto), group in tables(rows).items():
        out += [f"## {workload} ({proto})", "", *_md_table(group), ""]
        out += [f"- {note}" for note in _notes(group)] + ([""] if _notes(group) else [])
        stems = {figure_stem(None, workload, proto), figure_stem(path.stem, workload, proto)}
        mine = [Path(p) for p in plots if Path(p).stem in stems]
        svgs = {p.stem: p for p in mine if p.suffix == ".svg"}
        for png in (p for p in mine if p.suffix == ".png"):
            out.append(f"![{workload} ({proto})]({os.path.relpath(png, path.parent)})")
            if png.stem in svgs:
                out.append(f"([SVG]({os.path.relpath(svgs[png.stem], path.parent)}))")
            out.append("")
    if pyperf_files:
        out += _comparing(path, list(pyperf_files))
    out += ["## How to read this", "", *(f"- **{h}**: {meaning}" for h, meaning, _ in COLUMNS), "",
            HOW_TO_READ, ""]
    path.write_text("\n".join(out))


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row | {"rps_all": ";".join(f"{v:g}" for v in row["rps_all"]),
                                   "p99_all": ";".join(f"{v:g}" for v in row["p99_all"])})


def render(target: Path) -> list[Path]:
    """Print the table and write the report files for a run directory or a .json document.

    A directory gets REPORT.md, report.csv, ``<workload>-<proto>.png`` and
    ``.svg``, and ``pyperf/<runtime>.json``; a document ``<stem>.md``,
    ``<stem>.csv`` and ``<stem>-<workload>-<proto>.png`` next to it.
    Returns the files written.
    """
    target = Path(target)
    doc = load_run(target)
    rows = summarize(doc)
    if target.is_dir() and any(r["rate"] is not None for r in rows):
        from ..curves import render_curves  # open loop: latency against offered load, not against connections

        return render_curves(target, doc, rows)
    print_table(rows)
    if not target.is_dir():
        plots = plot(doc, rows, target.parent, target.stem)
        md, table = target.with_suffix(".md"), target.with_suffix(".csv")
        write_markdown(doc, rows, md, plots)
        write_csv(rows, table)
        return [md, table, *plots]
    plots = plot(doc, rows, target, None, formats=("png", "svg"))
    from . import pyperf_export
    try:
        perf = pyperf_export.export(doc, rows, target / "pyperf", run_id=target.resolve().name)
    except ImportError as exc:  # pyperf missing: the rest of the report still stands
        print(f"pyperf files not written: {exc}", file=sys.stderr)
        perf = []
    md, table = target / "REPORT.md", target / "report.csv"
    write_markdown(doc, rows, md, plots, title=target.resolve().name, pyperf_files=perf)
    write_csv(rows, table)
    return [md, table, *plots, *perf]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m experiments.harness.report RUN_DIR | RESULTS.json", file=sys.stderr)
        return 2
    for written in render(Path(argv[0])):
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
