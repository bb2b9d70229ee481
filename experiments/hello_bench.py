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

``--against REF`` (repeatable, or comma-separated) measures astra as it was at
commit REF in the same run: REF's tree is checked out with ``git worktree
add --detach`` in a temporary directory (removed at exit), and each runtime
measured that REF's registry also has runs from there as
``astra-<runtime>@<short REF>``, on this interpreter and venv (the same
dependencies), right after today's server in every round. The report adds,
per runtime, today's req/s and CPU-us per request over REF's: the median of
the per-round ratios and their range (the machinery, and how the old tree
is kept from importing today's code: ``experiments/against.py``). The
regression check, e.g.::

    python -m experiments.hello_bench --conns 64 --repeat 3 --against 6c80265 --peers ''
"""

from __future__ import annotations

import argparse
import contextlib
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
from astra.registry import load_runtime

from .against import (OldTree, compare_against, inside, isolation_note, materialize, old_server,
                      report_against, resolve_refs, sigterm_exits)
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


def measure(name: str, argv: list[str], args, pin: bool, **spawn) -> list[dict]:
    """``spawn``: ServerProcess's ``cwd`` and ``env``, for a server run from an old tree."""
    rows: list[dict] = []
    with tempfile.TemporaryFile("w+") as log:
        server = ServerProcess(argv, cpus=[SERVER_CPU] if pin else None, log=log, **spawn)
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
    w = max([16, *(len(r["server"]) + 1 for r in rows)])  # astra-threaded@6c80265 is longer than 16
    print(f"\n{'server':<{w}}{'conns':>6}{'req/s':>10}{'p50':>10}{'p99':>10}{'errors':>8}"
          f"{'cpu-us/req':>12}{'astra/x':>9}{'other':>7}{'spread':>8}")
    for r in rows:
        ratio = f"{base[r['conns']] / r['requests_per_s']:.2f}x" if r["requests_per_s"] and r["conns"] in base else "-"
        cpu = "-" if r["cpu_us_per_request"] is None else f"{r['cpu_us_per_request']:.1f}"
        print(f"{r['server']:<{w}}{r['conns']:>6}{r['requests_per_s']:>10,.0f}{fmt_us(r['latency_us']['p50']):>10}"
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


# Choosing the servers ------------------------------------------------------------

def choose_servers(runtimes: list[str], peers: list[str], handler: str,
                   trees: list[OldTree]) -> dict[str, tuple[list[str], dict]]:
    """name -> (argv, spawn options), in round order: each old astra right after today's."""
    table = server_table(runtimes, handler)
    servers: dict[str, tuple[list[str], dict]] = {}
    for runtime in runtimes:
        servers[f"astra-{runtime}"] = (table[f"astra-{runtime}"][1], {})
        for tree in trees:
            if old := old_server(tree, runtime, handler):
                servers[tree.server(runtime)] = old
    for name, (package, server_argv) in table.items():
        if name.startswith("astra-") or name not in peers:
            continue
        if package and importlib.util.find_spec(package) is None:
            print(f"skipping {name}: package {package!r} is not installed")
            continue
        servers[name] = (server_argv, {})
    return servers


# Command line -------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    p.add_argument("--against", action="append", default=[], metavar="REF",
                   help="also measure astra as of git commit-ish REF, in the same rounds "
                        "(repeat, or comma-separate, for several)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes (default results/)")
    args = p.parse_args(argv)
    args.conns = [int(c) for c in args.conns.split(",") if c.strip()]
    available = available_runtimes()
    args.runtimes = [r.strip() for r in (args.runtimes or "").split(",") if r.strip()] or available
    if unknown := set(args.runtimes) - set(available):
        p.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; available: {', '.join(available)}")
    args.peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    if unknown := set(args.peers) - set(PEERS):
        p.error(f"unknown peer(s) {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")
    try:
        args.trees = resolve_refs(args.against)
    except RuntimeError as exc:
        p.error(f"--against: {exc}")
    return args


def metadata(args, pin: bool) -> dict:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)  # exits 1, prints to stdout
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "wrk_version": next(iter((wrk_v.stdout + wrk_v.stderr).splitlines()), "").strip(),
        "python_version": sys.version, "cpu_count": os.cpu_count(), "uname": " ".join(platform.uname()),
        "h11_version": version("h11"), "peer_versions": {p: version(p) for p in ("hypercorn", "waitress", "uvicorn")},
        "pinned": pin, "server_cpu": SERVER_CPU if pin else None, "wrk_cpu": WRK_CPU if pin else None,
        "conns": args.conns, "duration_s": args.duration, "warmup_s": args.warmup, "repeat": args.repeat,
        "handler": args.handler,
        "wrk_command": "wrk -t1 -cN -dDs --latency --timeout 10s -s experiments/wrk_json.lua URL",
        "against_trees": [tree.describe() for tree in args.trees],
    }


def write_results(results_dir: Path, document: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    path = results_dir / f"hello_bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(text)
    (results_dir / "hello_bench-latest.json").write_text(text)
    shown = path.relative_to(ROOT) if inside(path, ROOT) else path
    print(f"\nwrote {shown} and {shown.with_name('hello_bench-latest.json')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (`make tools` installs it)", file=sys.stderr)
        return 2
    pin = shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    print(f"pinning: server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}" if pin else
          "NOTE: taskset or CPUs 0-1 unavailable: running UNPINNED, server and wrk share the CPUs")
    runs: list[dict] = []
    # The worktrees live as long as this block: removed on return, error, Ctrl-C or SIGTERM.
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_exits())
        if args.trees:
            isolation_note()
        for tree in args.trees:
            materialize(tree, stack)
        servers = choose_servers(args.runtimes, args.peers, args.handler, args.trees)
        # Rounds go through every server in turn, so a noisy minute on a shared
        # machine lands on all of them rather than on one; an old astra comes
        # right after today's, so each pair shares its minute.
        for round_no in range(1, args.repeat + 1):
            for name, (server_argv, spawn) in servers.items():
                print(f"measuring {name} (round {round_no}/{args.repeat}) ...", flush=True)
                for row in measure(name, server_argv, args, pin, **spawn):
                    runs.append(row | {"round": round_no})
    rows = median_rows(runs)
    ratios = report(rows)
    against = compare_against(runs, args.runtimes, args.trees)
    report_against(against)
    write_results(args.results_dir, {"metadata": metadata(args, pin), "results": rows, "ratios": ratios,
                                     "against": against, "runs": runs})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
