"""The walking-skeleton benchmark: hello world, astra against its peers.

``python -m experiments.hello_bench [--conns 1,64] [--duration 5] [--runtimes threaded]``

Every server (astra on each of its runtimes, then the peers: the standard
library's ThreadingHTTPServer, hypercorn, waitress and uvicorn with h11) is
started fresh in its own subprocess, polled until it answers a GET with 200,
and driven with ``wrk -t1 -cN`` for each connection count N. The method, and why:

* Pinning. The server runs on CPU 0 and wrk on CPU 1 (``taskset -c``), so the
  load generator never steals the server's core and the numbers say what one
  core of server buys. Without taskset we run unpinned and say so.
* Warm-up. Each measured run follows a discarded 1 s run at the same
  concurrency: imports, caches, thread pools and the CPU's clocks settle first.
* Same-run peers. Absolute requests/s depend on the machine, its load and its
  mood; ratios between servers measured minutes apart on the same box much
  less so. So the peers are measured in every run, and the ratios are the result.

wrk reports through ``experiments/wrk_json.lua`` (one ``JSON {...}`` line).
Server CPU time (user+sys from /proc/PID/stat, over the server's process tree)
is sampled around each measured run to give CPU-microseconds per request. The
pause before each measured run, when neither server nor wrk works, doubles as
a check on the box: CPUs busy then (``other``) belong to someone else, and
numbers measured next to them are suspect.
Results go to ``results/hello_bench-<timestamp>.json`` and ``-latest.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from astra import available_runtimes
from astra.runtimes import load_runtime

from .servers import ServerProcess, busy_cpus, cpu_us

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().with_name("wrk_json.lua")
RESULTS_DIR = ROOT / "results"
BASELINE = "astra-threaded"
PEERS = ("stdlib", "stdlib-tuned", "hypercorn", "hypercorn-trio", "waitress", "uvicorn-h11",
         "floor-threads", "floor-asyncio", "floor-trio")
DEFAULT_PEERS = ("stdlib", "stdlib-tuned", "hypercorn", "waitress", "uvicorn-h11")
SERVER_CPU, WRK_CPU = 0, 1


def handler_for(runtime: str, kind: str) -> str:
    """The hello handler to serve: ``async def`` where asked for and the runtime can await it."""
    if kind == "async" and load_runtime(runtime).supports_async:
        return "experiments.apps:hello_async"
    return "experiments.apps:hello"


def server_table(runtimes: list[str], handler: str = "sync") -> dict[str, tuple[str | None, list[str]]]:
    """name -> (package it needs, argv with "{port}"). Peers run as ``python -m``
    with this interpreter: the entry points of the hypercorn / waitress-serve /
    uvicorn scripts, without a PATH lookup."""
    py, bind = sys.executable, "127.0.0.1:{port}"
    astra = {f"astra-{name}": (None, [py, "-m", "astra", handler_for(name, handler), "--bind", bind,
                                      "--runtime", name]) for name in runtimes}
    return astra | {
        "stdlib": (None, [py, "-m", "experiments.peers", "stdlib", "{port}"]),
        "stdlib-tuned": (None, [py, "-m", "experiments.peers", "stdlib-tuned", "{port}"]),
        # asyncio worker, h11 for HTTP/1.1; hypercorn's access log is off unless asked for.
        "hypercorn": ("hypercorn", [py, "-m", "hypercorn", "experiments.peers:asgi_hello", "-b", bind,
                                    "-k", "asyncio"]),
        "hypercorn-trio": ("hypercorn", [py, "-m", "hypercorn", "experiments.peers:asgi_hello", "-b", bind,
                                         "-k", "trio"]),
        "waitress": ("waitress", [py, "-m", "waitress", f"--listen={bind}", "experiments.peers:wsgi_hello"]),
        **{floor: (None, [py, "-m", "experiments.peers", floor, "{port}"])
           for floor in ("floor-threads", "floor-asyncio", "floor-trio")},
        "uvicorn-h11": ("uvicorn", [py, "-m", "uvicorn", "experiments.peers:asgi_hello", "--host", "127.0.0.1",
                                    "--port", "{port}", "--http", "h11", "--loop", "asyncio",
                                    "--no-access-log", "--log-level", "warning"]),
    }



def run_wrk(url: str, conns: int, seconds: int, pin: bool) -> dict:
    cmd = (["taskset", "-c", str(WRK_CPU)] if pin else []) + [
        "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise RuntimeError(f"no JSON line from wrk (status {out.returncode}): {out.stderr.strip()[-300:]}")


def measure(name: str, argv: list[str], args, pin: bool) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryFile("w+") as log:
        server = ServerProcess(argv, cpus=[SERVER_CPU] if pin else None, log=log)
        try:
            server.wait_ready()
            for conns in args.conns:
                run_wrk(server.url, conns, args.warmup, pin)  # warm-up, discarded
                other = busy_cpus(args.pause)  # the server idles, wrk is gone: who else is busy?
                before = cpu_us(server.proc.pid)
                r = run_wrk(server.url, conns, args.duration, pin)
                cpu = cpu_us(server.proc.pid) - before
                r.update(server=name, conns=conns, server_cpu_us=round(cpu), other_cpus=round(other, 2),
                         cpu_us_per_request=cpu / r["requests"] if r["requests"] else None)
                rows.append(r)
                print(f"  c={conns}: {r['requests_per_s']:,.0f} req/s", flush=True)
                if server.proc.poll() is not None:
                    print(f"  ! {name} died during the run (status {server.proc.returncode})")
                    break
                time.sleep(args.pause)
        except Exception as exc:  # one failed server must not sink the comparison
            print(f"  ! {name}: {exc}")
        finally:
            how = server.stop()
            log.seek(0)
            lines = log.read().splitlines()
    noteworthy = [line for line in lines if re.search(r"error|warn|traceback|exception", line, re.I)]
    if noteworthy:
        print(f"  log: {len(noteworthy)} warning/error lines, e.g. {noteworthy[0][:160]!r}")
    print(f"  stopped: {how}")
    for r in rows:
        r.update(server_stop=how, server_log_tail=lines[-20:])
    return rows


# Reporting -----------------------------------------------------------------------

def median_rows(runs: list[dict]) -> list[dict]:
    """One row per (server, conns): the run with the median requests/s, plus the spread."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["conns"]), []).append(run)
    rows = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r["requests_per_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["rounds"] = len(group)
        median["requests_per_s_all"] = [r["requests_per_s"] for r in group]
        rows.append(median)
    return rows


def spread(row: dict) -> str:
    values = row.get("requests_per_s_all") or []
    if len(values) < 2 or not row["requests_per_s"]:
        return "-"
    return f"{(max(values) - min(values)) / row['requests_per_s']:.0%}"


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def report(rows: list[dict]) -> list[dict]:
    base = {r["conns"]: r["requests_per_s"] for r in rows if r["server"] == BASELINE}
    print(f"\n{'server':<16}{'conns':>6}{'req/s':>10}{'p50':>10}{'p99':>10}{'errors':>8}"
          f"{'cpu-us/req':>12}{'astra/x':>9}{'other':>7}{'spread':>8}")
    for r in rows:
        ratio = f"{base[r['conns']] / r['requests_per_s']:.2f}x" if r["requests_per_s"] and r["conns"] in base else "-"
        cpu = "-" if r["cpu_us_per_request"] is None else f"{r['cpu_us_per_request']:.1f}"
        print(f"{r['server']:<16}{r['conns']:>6}{r['requests_per_s']:>10,.0f}{fmt_us(r['latency_us']['p50']):>10}"
              f"{fmt_us(r['latency_us']['p99']):>10}{sum(r['errors'].values()):>8}{cpu:>12}{ratio:>9}"
              f"{r['other_cpus']:>7.2f}{spread(r):>8}")
    print(f"(astra/x: {BASELINE} req/s over this server's at the same conns; "
          "other: CPUs busy just before the run, server idle, no wrk; "
          "spread: (max - min) / median req/s over the rounds)\n")
    # The targets the issues set: (astra server, peer, conns, metric, target).
    # "rps" is astra's requests/s over the peer's; "p99" the peer's p99 over astra's.
    checks = [
        ("astra-threaded", "hypercorn", 64, "rps", 2.0),
        ("astra-threaded", "waitress", 64, "rps", 1.0),
        ("astra-threaded", "stdlib", 1, "rps", None),
        ("astra-threaded", "stdlib-tuned", 64, "rps", None),
        ("astra-hybrid", "waitress", 64, "rps", 1.0),
        ("astra-hybrid", "waitress", 1000, "rps", 1.0),
        ("astra-hybrid", "waitress", 1000, "p99", 10.0),
        ("astra-asyncio", "hypercorn", 64, "rps", 2.0),
        ("astra-asyncio", "hypercorn", 1000, "rps", 2.0),
        ("astra-trio", "hypercorn-trio", 64, "rps", 2.0),
        ("astra-trio", "hypercorn-trio", 1000, "rps", 2.0),
        ("astra-threaded", "floor-threads", 64, "rps", None),
        ("astra-asyncio", "floor-asyncio", 64, "rps", None),
        ("astra-trio", "floor-trio", 64, "rps", None),
    ]
    found = {(r["server"], r["conns"]): r for r in rows}
    ratios = []
    for ours, peer, conns, metric, target in checks:
        mine, theirs = found.get((ours, conns)), found.get((peer, conns))
        label = f"{ours} vs {peer} @ {conns} conns ({metric}):"
        if not mine or not theirs:
            continue
        if metric == "rps":
            ratio = mine["requests_per_s"] / theirs["requests_per_s"] if theirs["requests_per_s"] else float("inf")
        else:
            ratio = theirs["latency_us"]["p99"] / max(mine["latency_us"]["p99"], 1)
        verdict = "" if target is None else f"  (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"
        print(f"{label:<52} {ratio:.2f}x{verdict}")
        ratios.append({"astra": ours, "peer": peer, "conns": conns, "metric": metric,
                       "ratio": ratio, "target": target})
    if any(r["other_cpus"] > 0.2 for r in rows):
        print("WARNING: something else was using the machine around some runs (see 'other'): "
              "treat those rows with care, or run again on a quiet box")
    return ratios


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.hello_bench", description=__doc__.split("\n")[0])
    p.add_argument("--conns", default="1,64", help="comma-separated connection counts (default 1,64)")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of discarded warm-up per run (default 1)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of rest between runs (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="rounds over all servers; the median is reported")
    p.add_argument("--runtimes", help="comma-separated astra runtimes (default: all available)")
    p.add_argument("--peers", default=",".join(DEFAULT_PEERS),
                   help=f"comma-separated peers ('' for none; known: {', '.join(PEERS)})")
    p.add_argument("--handler", choices=["sync", "async"], default="sync",
                   help="astra's hello handler: plain def, or async def on runtimes that await it")
    args = p.parse_args(argv)
    args.conns = [int(c) for c in args.conns.split(",") if c.strip()]
    if shutil.which("wrk") is None:
        print("wrk is not installed (`make tools` installs it)", file=sys.stderr)
        return 2
    runtimes = available_runtimes()
    if args.runtimes:
        wanted = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        if unknown := set(wanted) - set(runtimes):
            p.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; available: {', '.join(runtimes)}")
        runtimes = wanted
    peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    if unknown := set(peers) - set(PEERS):
        p.error(f"unknown peer(s) {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")

    pin = shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    print(f"pinning: server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}" if pin else
          "NOTE: taskset or CPUs 0-1 unavailable: running UNPINNED, server and wrk share the CPUs")
    servers = {}
    for name, (package, server_argv) in server_table(runtimes, args.handler).items():
        if not name.startswith("astra-") and name not in peers:
            continue
        if package and importlib.util.find_spec(package) is None:
            print(f"skipping {name}: package {package!r} is not installed")
            continue
        servers[name] = server_argv
    # Rounds go through every server in turn, so a noisy minute on a shared
    # machine lands on all of them rather than on one.
    runs: list[dict] = []
    for round_no in range(1, args.repeat + 1):
        for name, server_argv in servers.items():
            print(f"measuring {name} (round {round_no}/{args.repeat}) ...", flush=True)
            for row in measure(name, server_argv, args, pin):
                runs.append(row | {"round": round_no})
    rows = median_rows(runs)
    ratios = report(rows)

    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)  # exits 1, prints to stdout
    metadata = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "wrk_version": next(iter((wrk_v.stdout + wrk_v.stderr).splitlines()), "").strip(),
        "python_version": sys.version, "cpu_count": os.cpu_count(), "uname": " ".join(platform.uname()),
        "h11_version": version("h11"), "peer_versions": {p: version(p) for p in ("hypercorn", "waitress", "uvicorn")},
        "pinned": pin, "server_cpu": SERVER_CPU if pin else None, "wrk_cpu": WRK_CPU if pin else None,
        "conns": args.conns, "duration_s": args.duration, "warmup_s": args.warmup, "repeat": args.repeat,
        "handler": args.handler,
        "wrk_command": "wrk -t1 -cN -dDs --latency --timeout 10s -s experiments/wrk_json.lua URL",
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    document = json.dumps({"metadata": metadata, "results": rows, "ratios": ratios, "runs": runs}, indent=2) + "\n"
    path = RESULTS_DIR / f"hello_bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(document)
    (RESULTS_DIR / "hello_bench-latest.json").write_text(document)
    print(f"\nwrote {path.relative_to(ROOT)} and results/hello_bench-latest.json")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
