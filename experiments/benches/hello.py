"""``make bench``: hello world, astra on every runtime and both HTTP/1 parsers, against its peers.

``python -m experiments.benches.hello [--conns 1,64,1000] [--repeat 3] [--runtimes threaded] [--parsers h11]``

Every server is started fresh in its own subprocess, polled until it answers
a GET with 200, and driven with ``wrk -t1 -cN`` for each connection count N:
astra on each runtime with ``--http1-parser h11`` and ``httptools``
(``astra-threaded/h11``, ...), the peers a user would pick instead (uvicorn
with httptools and uvloop, and with h11; granian's WSGI and ASGI, one
worker; hypercorn; waitress) and the raw-socket floors. ``--dry-run`` prints
the plan and its duration. ``experiments/benches/servers.py`` has the server
table, how each peer is configured and which floor is each runtime's own;
``experiments/benches/report.py`` the report and the targets. The method, and why:

* Pinning. The server runs on CPU 0 and wrk on CPU 1 (``taskset -c``), so the
  load generator never steals the server's core and the numbers say what one
  core of server buys. Without taskset we run unpinned and say so.
* One wrk thread, also at 1,000 connections. wrk has one core; a second
  thread would share it, adding switches and no CPU. Instead wrk's own CPU
  time is measured per run (``wrk_cpu_share``): a run where wrk was busy 90%
  of its core or more is flagged, since the server may be faster than it
  shows. On the project's 2-core machine wrk reached 82-93% of its core
  against floor-threads at 51,000-55,000 req/s (64 connections), so the
  floors' requests/s, and perhaps granian's, are lower bounds; their CPU per
  request, which the floor multiples use, is not affected.
* Warm-up. Each measured run follows a discarded run (``--warmup`` s) at the
  same concurrency: imports, caches, thread pools and the CPU's clocks settle.
* Rounds, interleaved. Round 1 goes through every server, then round 2...: a
  noisy minute on a shared machine lands on all of them rather than on one.
  Each server is restarted every round. Medians are reported with their
  range, and every ratio (the targets, CPU over the floor) is taken within a
  round first: two servers minutes apart on the same box.
* Same-run peers. Absolute requests/s depend on the machine and its load;
  ratios between servers measured in the same run much less so.

wrk reports through ``experiments/load/wrk_json.lua`` (one ``JSON {...}`` line).
Server CPU time (user+sys from /proc/PID/stat, over the server's process tree)
is sampled around each measured run to give CPU-microseconds per request. The
pause before each measured run, when neither server nor wrk works, doubles as
a check on the box: CPUs busy then (``other``) belong to someone else.
Results go to ``results/hello_bench-<timestamp>.json`` and ``.md`` (and
``-latest.json`` / ``-latest.md``).

``--against REF`` (repeatable, or comma-separated) measures astra as it was at
commit REF in the same run: REF's tree is checked out with ``git worktree
add --detach`` in a temporary directory (removed at exit), and each runtime
measured that REF's registry also has runs from there as
``astra-<runtime>/<parser>@<short REF>`` (``astra-<runtime>@<short REF>``, h11
only, for a commit without ``--http1-parser``), on this interpreter and venv,
right after today's server in every round. The report adds, per runtime,
today's req/s and CPU-us per request over REF's: the median of the per-round
ratios and their range (``experiments/benches/against.py``). The regression check::

    python -m experiments.benches.hello --conns 64 --repeat 3 --against 6c80265 --peers ''
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from astra import available_runtimes

from ..harness.servers import ServerProcess, busy_cpus, cpu_us
from ..load.tools import LUA_SCRIPT
# OldTree and old_server are re-exported: tests reach the --against machinery through this module.
from .against import (OldTree, compare_against, inside, isolation_note, materialize, old_server,  # noqa: F401
                      report_against, resolve_refs, sigterm_exits)
from .report import check_targets, markdown, print_report, summarise
from .servers import (DEFAULT_PEERS, FLOOR_OF, PACKAGES, PARSERS, PEERS, VARIANTS, choose_servers,
                      variant_available)

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
SERVER_CPU, WRK_CPU = 0, 1
START_STOP_S = 2.5  # a server's start, readiness poll and stop, roughly (granian and hypercorn are the slow ones)


def run_wrk(url: str, conns: int, seconds: int, pin: bool) -> dict:
    """One wrk run; adds wrk's own CPU share of the run (its children's rusage: wrk is our only child waited)."""
    cmd = (["taskset", "-c", str(WRK_CPU)] if pin else []) + [
        "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(LUA_SCRIPT), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in out.stdout.splitlines():
        if line.startswith("JSON "):
            result = json.loads(line[5:])
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            result["wrk_cpu_share"] = round(used / max(result["duration_us"] / 1e6, 1e-3), 3)
            return result
    raise RuntimeError(f"no JSON line from wrk (status {out.returncode}): {out.stderr.strip()[-300:]}")


def measure_levels(name: str, server: ServerProcess, args, pin: bool) -> list[dict]:
    rows = []
    for conns in args.conns:
        run_wrk(server.url, conns, args.warmup, pin)  # warm-up, discarded
        other = busy_cpus(args.pause)  # the server idles, wrk is gone: who else is busy?
        before = cpu_us(server.proc.pid)
        r = run_wrk(server.url, conns, args.duration, pin)
        cpu = cpu_us(server.proc.pid) - before
        r.update(server=name, conns=conns, server_cpu_us=round(cpu), other_cpus=round(other, 2),
                 cpu_us_per_request=cpu / r["requests"] if r["requests"] else None)
        rows.append(r)
        print(f"  c={conns}: {r['requests_per_s']:,.0f} req/s, p99 {r['latency_us']['p99']:,} us, "
              f"{r['cpu_us_per_request'] or 0:.1f} cpu-us/req, wrk {r['wrk_cpu_share']:.0%}", flush=True)
        if server.proc.poll() is not None:
            print(f"  ! {name} died during the run (status {server.proc.returncode})")
            break
        time.sleep(args.pause)
    return rows


def measure(name: str, argv: list[str], args, pin: bool, **spawn) -> list[dict]:
    """Every connection count on one fresh server. ``spawn``: ServerProcess's ``cwd`` and ``env``,
    for a server run from an old tree."""
    rows: list[dict] = []
    with tempfile.TemporaryFile("w+") as log:
        server = ServerProcess(argv, cpus=[SERVER_CPU] if pin else None, log=log, **spawn)
        try:
            server.wait_ready()
            rows = measure_levels(name, server, args, pin)
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


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# The machine ---------------------------------------------------------------------

def ensure_limits(conns: int) -> list[str]:
    """Raise our open-file limit (wrk and the servers inherit it) and say what could still cap ``conns``."""
    notes = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # RLIM_INFINITY is -1
    if 0 <= soft < conns + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if 0 <= soft < conns + 256:
        notes.append(f"open-file limit {soft} is below {conns} connections plus headroom: expect connect errors")
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        somaxconn = None
    if somaxconn is not None and somaxconn < conns:
        notes.append(f"somaxconn is {somaxconn} (< {conns}): listen backlogs are capped there, and a burst of "
                     f"{conns} connections may wait out SYN retransmits")
    notes.append(f"limits: open files {soft}, somaxconn {somaxconn}; astra and the floors listen with a backlog "
                 "of 4096, hypercorn is given 4096, uvicorn has 2048, granian and waitress 1024")
    return notes


def method_notes(args) -> list[str]:
    floors = ", ".join(f"{rt} -> {FLOOR_OF[rt]}" for rt in args.runtimes if rt in FLOOR_OF)
    notes = [f"own floors: {floors}; why: experiments/benches/servers.py. floor-selectors is the least any "
             "selector design costs (hybrid's floor minus its hand-off to a worker thread)",
             "wrk -t1 at every level, also at 1,000 connections: wrk has CPU 1 only, and a second thread "
             "would share that core; 'wrk CPU' says when wrk itself may have been the limit (the floors "
             "can be: their requests/s is then a lower bound, their CPU per request is not affected)",
             "astra's asyncio runtime runs with --loop asyncio, the loop floor-asyncio runs on, and as "
             "asyncio+uvloop with --loop uvloop (floor-uvloop's); granian uses its --loop auto default "
             f"(uvloop {'installed' if version('uvloop') else 'not installed'})",
             "astra's handler: " + ("async def on the event loops, def on the thread runtimes"
                                     if args.handler == "async" else
                                     "a plain def everywhere (on the event loops it runs on a worker thread)")]
    if "waitress" in args.peers and any(c > 100 for c in args.conns):
        notes.append("waitress keeps its connection_limit of 100 (its default): past 100 open connections it "
                     "stops accepting, so at more connections the others wait in its backlog")
    return notes


# Command line -------------------------------------------------------------------

def split(value: str | None) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


def add_method_arguments(p: argparse.ArgumentParser, default_conns: str) -> None:
    """The options of the method (levels, durations, rounds), shared with ``benches.apps``."""
    p.add_argument("--conns", default=default_conns, help=f"comma-separated connection counts (default {default_conns})")
    p.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of discarded warm-up per run (default 1)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of rest before and after a run (default 1)")
    p.add_argument("--repeat", type=int, default=3, help="rounds over all servers (default 3); medians reported")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.benches.hello", description=__doc__.split("\n")[0])
    add_method_arguments(p, default_conns="1,64,1000")
    p.add_argument("--runtimes", help="comma-separated astra runtimes (default: all available)")
    p.add_argument("--parsers", default=",".join(PARSERS),
                   help=f"comma-separated HTTP/1 parsers for astra (default {','.join(PARSERS)})")
    p.add_argument("--peers", default=",".join(DEFAULT_PEERS),
                   help=f"comma-separated peers ('' for none; known: {', '.join(PEERS)})")
    p.add_argument("--handler", choices=["sync", "async"], default="async",
                   help="astra's hello handler: async def on runtimes that await it, def elsewhere "
                        "(default), or plain def everywhere (sync)")
    p.add_argument("--against", action="append", default=[], metavar="REF",
                   help="also measure astra as of git commit-ish REF, in the same rounds "
                        "(repeat, or comma-separate, for several)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results go (default results/)")
    p.add_argument("--dry-run", action="store_true", help="print the servers and the expected duration, and stop")
    args = p.parse_args(argv)
    args.conns = [int(c) for c in split(args.conns)]
    available = [*available_runtimes(), *VARIANTS]
    measured = [rt for rt in available if variant_available(rt)]
    args.runtimes = split(args.runtimes) or measured
    if unknown := set(args.runtimes) - set(available):
        p.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; available: {', '.join(available)}")
    args.parsers = split(args.parsers)
    if unknown := set(args.parsers) - set(PARSERS):
        p.error(f"unknown parser(s) {', '.join(sorted(unknown))}; known: {', '.join(PARSERS)}")
    args.peers = split(args.peers)
    if unknown := set(args.peers) - set(PEERS):
        p.error(f"unknown peer(s) {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")
    try:
        args.trees = resolve_refs(args.against)
    except RuntimeError as exc:
        p.error(f"--against: {exc}")
    return args


def expected_seconds(args, servers: int) -> float:
    """servers x rounds x (start/stop + conns x (warm-up + pause + measured + pause))."""
    level = args.warmup + args.duration + 2 * args.pause + 0.5  # + wrk's start and its connections
    return servers * args.repeat * (START_STOP_S + len(args.conns) * level)


def git_state() -> tuple[str | None, bool]:
    def git(*argv: str) -> str | None:
        out = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD"), bool(status)


def metadata(args, pin: bool, notes: list[str]) -> dict:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)  # exits 1, prints to stdout
    commit, dirty = git_state()
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"), "commit": commit, "dirty": dirty,
        "wrk_version": next(iter((wrk_v.stdout + wrk_v.stderr).splitlines()), "").strip(),
        "python_version": sys.version, "cpu_count": os.cpu_count(), "uname": " ".join(platform.uname()),
        "versions": {p: version(p) for p in PACKAGES}, "h11_version": version("h11"),
        "pinned": pin, "server_cpu": SERVER_CPU if pin else None, "wrk_cpu": WRK_CPU if pin else None,
        "conns": args.conns, "duration_s": args.duration, "warmup_s": args.warmup, "pause_s": args.pause,
        "repeat": args.repeat, "runtimes": args.runtimes, "parsers": args.parsers, "peers": args.peers,
        "handler": args.handler, "own_floors": FLOOR_OF,
        "wrk_command": "wrk -t1 -cN -dDs --latency --timeout 10s -s experiments/load/wrk_json.lua URL",
        "against_trees": [tree.describe() for tree in args.trees], "notes": notes,
    }


def write_results(results_dir: Path, document: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"hello_bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    text, report = json.dumps(document, indent=2) + "\n", markdown(document)
    for name in (stem, "hello_bench-latest"):
        (results_dir / f"{name}.json").write_text(text)
        (results_dir / f"{name}.md").write_text(report)
    shown = results_dir.relative_to(ROOT) if inside(results_dir, ROOT) else results_dir
    print(f"\nwrote {shown}/{stem}.json and .md (and hello_bench-latest.json, .md)")


def run_rounds(servers: dict[str, tuple[list[str], dict]], args, pin: bool) -> list[dict]:
    """Round 1 through every server, then round 2...: a noisy minute on a shared machine lands on
    all of them rather than on one; an old astra comes right after today's, so each pair shares its minute."""
    runs: list[dict] = []
    for round_no in range(1, args.repeat + 1):
        for name, (server_argv, spawn) in servers.items():
            print(f"measuring {name} (round {round_no}/{args.repeat}) ...", flush=True)
            for row in measure(name, server_argv, args, pin, **spawn):
                runs.append(row | {"round": round_no})
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and not args.dry_run:
        print("wrk is not installed (`make tools` installs it)", file=sys.stderr)
        return 2
    pin = shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    print(f"pinning: server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}" if pin else
          "NOTE: taskset or CPUs 0-1 unavailable: running UNPINNED, server and wrk share the CPUs")
    notes = ensure_limits(max(args.conns, default=1)) + method_notes(args)
    print("\n".join(f"note: {n}" for n in notes))
    # The worktrees live as long as this block: removed on return, error, Ctrl-C or SIGTERM.
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_exits())
        if args.trees:
            isolation_note()
        for tree in args.trees:
            materialize(tree, stack)
        servers, pairs = choose_servers(args.runtimes, args.parsers, args.peers, args.handler, args.trees)
        minutes = expected_seconds(args, len(servers)) / 60
        print(f"plan: {len(servers)} servers x {len(args.conns)} levels x {args.repeat} rounds, "
              f"~{minutes:.0f} min: {', '.join(servers)}", flush=True)
        if args.dry_run:
            return 0
        runs = run_rounds(servers, args, pin)
    rows = summarise(runs)
    checks = check_targets(runs, args.runtimes, set(servers), args.conns)
    print_report(rows, checks)
    against = compare_against(runs, pairs)
    report_against(against)
    write_results(args.results_dir, {"metadata": metadata(args, pin, notes), "results": rows, "checks": checks,
                                     "against": against, "runs": runs})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
