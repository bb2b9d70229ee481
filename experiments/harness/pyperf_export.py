"""Export a run's throughput as pyperf benchmark suites, for ``python -m pyperf compare_to``.

One file per runtime, ``<out_dir>/<runtime>.json`` (``:`` in the runtime's
name becomes ``_``: ``peer:waitress`` -> ``peer_waitress.json``), holding one
benchmark per (workload, protocol, concurrency), named like ``hello-h1-c100``.
Each successful round of that point is one pyperf run with one value: the
seconds per request, ``1 / requests_per_s`` as wrk measured it, with
``loops`` = the requests wrk counted (so pyperf's raw value is the measured
window). That is the inverse of the throughput, not a latency: with 100
connections in flight a request takes far longer than that. Lower is better,
as pyperf assumes. With one round per point pyperf cannot test significance
(``compare_to`` prints "ERROR when testing if values are significant"); run
the harness with ``--repeat 3`` or more for that.

Comparing two runtimes of one run, or one runtime across two runs::

    python -m pyperf compare_to results/RUN/pyperf/threaded.json results/RUN/pyperf/hybrid.json
    python -m pyperf compare_to --table OLD/pyperf/hybrid.json NEW/pyperf/hybrid.json
    python -m pyperf show --metadata results/RUN/pyperf/hybrid.json

The metadata of each pyperf run is taken from the harness's ``env.json`` and
the run record (date, CPU model, kernel, Python, wrk, git commit, round,
requests, errors, latency, CPU and memory cost), never from the machine doing
the export, so a file can be re-exported anywhere.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

__all__ = ["benchmark_name", "export", "suite_filename"]

UNIT = "second"


def benchmark_name(workload, proto, conc) -> str:
    return f"{workload}-{proto}-c{conc}"


def suite_filename(runtime) -> str:
    # ':' as asked (peer:waitress -> peer_waitress); path separators could never make a file name.
    return re.sub(r"[:/\\]", "_", str(runtime)) + ".json"


def _rps(run: dict):
    load = run.get("load")
    value = load.get("requests_per_s") if isinstance(load, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ok(run: dict) -> bool:
    """A round pyperf can take: no error (as report.summarize decides) and a throughput > 0."""
    rps = _rps(run)
    return not run.get("error") and rps is not None and rps > 0


def _clean(metadata: dict) -> dict:
    """What pyperf accepts: str (non-empty, one line), int or float values."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, str):
            value = " ".join(value.split())
            if not value:
                continue
        elif not isinstance(value, (int, float)):
            continue
        out[key] = value
    return out


def _date(value) -> str | None:
    """pyperf parses run dates with datetime.fromisoformat: pass only those that parse."""
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return value


def _common(meta: dict, run_id: str | None) -> dict:
    tools = meta.get("tools") or {}
    return {
        "date": _date(meta.get("date")),
        "cpu_count": meta.get("cpus") if isinstance(meta.get("cpus"), int) and meta.get("cpus") > 0 else None,
        "cpu_model_name": meta.get("cpu_model"),
        "platform": meta.get("kernel"),
        "python_version": meta.get("python"),
        "run_id": run_id or meta.get("run_id"),
        "git_commit": meta.get("git_commit") or meta.get("revision"),
        "load_generator": tools.get("wrk") if isinstance(tools, dict) else None,
        "server_cpus": ",".join(map(str, meta.get("server_cpus") or [])),
        "client_cpus": ",".join(map(str, meta.get("client_cpus") or [])),
        "command": meta.get("command"),
    }


def _run_metadata(run: dict, common: dict) -> dict:
    load, cost = run.get("load") or {}, run.get("cost") or {}
    latency = load.get("latency_us") or {}
    errors = load.get("errors") or {}
    workload, proto, conc = run.get("workload"), run.get("proto"), run.get("conc")
    duration, requests = load.get("duration_s"), load.get("requests")
    tags = {"tags": [str(workload)]} if str(workload) not in ("", "all") else {}  # compare_to --table groups by tag
    return tags | _clean(common | {
        "name": benchmark_name(workload, proto, conc),
        "unit": UNIT,
        "description": (f"server {run.get('runtime')}, workload {workload}, {proto}, {conc} concurrent "
                        f"connections: seconds per request = 1 / wrk req/s, one value per round (lower is better)"),
        "duration": duration if isinstance(duration, (int, float)) and duration >= 0 else None,
        # pyperf's raw value is value * loops: with loops = requests it is the measured window
        # (requests / req/s), which is what wrk timed, so pyperf does not call 200 us "unstable".
        "loops": requests if isinstance(requests, int) and not isinstance(requests, bool) and requests > 0 else None,
        "runtime": run.get("runtime"), "workload": workload, "proto": proto, "conc": conc,
        "round": run.get("round"), "servers": run.get("servers"), "handler": run.get("handler"),
        "requests": requests, "requests_per_s": _rps(run),
        "errors": sum(v for v in errors.values() if isinstance(v, (int, float))) if errors else None,
        "latency_p50_us": latency.get("p50"), "latency_p99_us": latency.get("p99"),
        "cpu_us_per_request": cost.get("cpu_us_per_request"), "peak_rss_kib": cost.get("peak_rss_kib"),
        "peak_threads": cost.get("peak_threads"), "other_cpus": run.get("other_cpus"),
    })


def export(doc: dict, rows: list[dict], out_dir: Path, *, run_id: str | None = None) -> list[Path]:
    """Write one pyperf suite per runtime into ``out_dir``; return the files written.

    ``rows`` (``report.summarize(doc)``) choose the points and their order;
    the values come from every successful round of each point in ``doc``.
    A point with no successful round is left out (pyperf needs values > 0),
    and so is a runtime with none at all.
    """
    import pyperf

    out_dir = Path(out_dir)
    common = _common(doc.get("metadata") or {}, run_id)
    rounds: dict[tuple, list[dict]] = {}
    for run in doc.get("runs") or []:
        if _ok(run):
            key = (run.get("runtime"), run.get("workload"), run.get("proto"), run.get("conc"))
            rounds.setdefault(key, []).append(run)
    suites: dict[str, list] = {}
    for row in rows:
        key = (row["runtime"], row["workload"], row["proto"], row["conc"])
        good = sorted(rounds.get(key, []), key=lambda r: (r.get("round") or 0))
        if row.get("failed") or not good:
            continue
        runs = [pyperf.Run([1.0 / _rps(r)], metadata=_run_metadata(r, common), collect_metadata=False)
                for r in good]
        suites.setdefault(str(row["runtime"]), []).append(pyperf.Benchmark(runs))
    written = []
    if suites:
        out_dir.mkdir(parents=True, exist_ok=True)
    for runtime, benchmarks in sorted(suites.items()):
        path = out_dir / suite_filename(runtime)
        pyperf.BenchmarkSuite(benchmarks).dump(str(path), replace=True)
        written.append(path)
    return written
