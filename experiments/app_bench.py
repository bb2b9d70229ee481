"""``make bench-apps``: the same WSGI and ASGI applications on astra and on the servers users run them on.

``python -m experiments.app_bench [--conns 64] [--repeat 3] [--runtimes threaded,asyncio+uvloop]``

What it answers: put a Flask (WSGI) or Starlette (ASGI) application on astra
instead of gunicorn, waitress, uvicorn, hypercorn or granian: what changes?
And what does the interface layer cost astra itself, next to its native
handler on the same runtime? The method is ``make bench``'s
(``experiments/hello_bench.py``: server pinned to CPU 0, ``wrk -t1`` on CPU 1,
a discarded warm-up, interleaved rounds, ratios taken within a round and
judged met / NOT met / inconclusive); only the servers and targets differ.

Servers (``experiments/bench_apps.py`` has the apps):

* ``astra-RT/native``: the native ``def`` hello on runtime RT (on the event
  loops a ``def`` handler runs on a worker thread, as a WSGI app does).
* ``astra-RT/wsgi``: the bare WSGI hello through ``--interface wsgi``.
* ``astra-RT/flask``: the Flask app.
* ``astra-RT/native-async``, ``astra-RT/asgi``, ``astra-RT/starlette``: the
  same on the event loops, ``async def`` / ASGI, on the loop itself.
* ``gunicorn-gthread/flask``: one worker process with 8 threads (``-k gthread
  --threads 8``), a common production setting for one core; ``waitress/flask``
  and ``granian-wsgi/flask`` with their defaults (granian one worker).
* ``uvicorn/starlette`` (httptools + uvloop, no access log),
  ``hypercorn/starlette``, ``granian-asgi/starlette``.

Results: ``results/app_bench-<timestamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
from datetime import datetime
from pathlib import Path

from astra import available_runtimes
from astra.registry import load_runtime

from .bench_report import checks_markdown, judge_targets, print_report, summarise, table_markdown
from .hello_bench import add_method_arguments, expected_seconds, git_state, run_rounds, split, version

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "results"
SERVER_CPU, WRK_CPU = 0, 1
#: astra runtime variants measured here: name -> (runtime, extra CLI options).
VARIANTS = {"asyncio+uvloop": ("asyncio", ["--loop", "uvloop"])}
PACKAGES = ("flask", "werkzeug", "starlette", "gunicorn", "waitress", "granian", "uvicorn", "hypercorn",
            "httptools", "uvloop")
APPS = "experiments.bench_apps"


def runtime_names() -> list[str]:
    names = list(available_runtimes())
    if importlib.util.find_spec("uvloop"):
        names.append("asyncio+uvloop")
    return names


def astra_servers(runtime: str) -> dict[str, list[str]]:
    """name -> argv for one runtime: native, bare interface and framework, WSGI and (event loops) ASGI."""
    base, extra = VARIANTS.get(runtime, (runtime, []))
    if base == "asyncio" and not extra:
        extra = ["--loop", "asyncio"]
    argv = [sys.executable, "-m", "astra", "--bind", "127.0.0.1:{port}", "--runtime", base, *extra]
    servers = {
        f"astra-{runtime}/native": [*argv, "experiments.apps:hello"],
        f"astra-{runtime}/wsgi": [*argv, "--interface", "wsgi", f"{APPS}:wsgi_hello"],
        f"astra-{runtime}/flask": [*argv, "--interface", "wsgi", f"{APPS}:flask_app"],
    }
    if load_runtime(base).supports_async:
        servers |= {
            f"astra-{runtime}/native-async": [*argv, "experiments.apps:hello_async"],
            f"astra-{runtime}/asgi": [*argv, "--interface", "asgi", f"{APPS}:asgi_hello"],
            f"astra-{runtime}/starlette": [*argv, "--interface", "asgi", f"{APPS}:starlette_app"],
        }
    return servers


def peer_servers() -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """name -> (packages it needs, argv)."""
    py, host, port = sys.executable, "127.0.0.1", "{port}"
    flask, starlette = f"{APPS}:flask_app", f"{APPS}:starlette_app"
    granian = [py, "-m", "granian", "--host", host, "--port", port, "--workers", "1"]
    return {
        "gunicorn-gthread/flask": (("gunicorn", "flask"), [
            py, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "1", "-b", f"{host}:{port}",
            "--backlog", "4096", "--log-level", "warning", flask]),
        "waitress/flask": (("waitress", "flask"), [py, "-m", "waitress", f"--listen={host}:{port}", flask]),
        "granian-wsgi/flask": (("granian", "flask"), [*granian, "--interface", "wsgi", flask]),
        "uvicorn/starlette": (("uvicorn", "httptools", "uvloop", "starlette"), [
            py, "-m", "uvicorn", starlette, "--host", host, "--port", port, "--http", "httptools",
            "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]),
        "hypercorn/starlette": (("hypercorn", "starlette"), [
            py, "-m", "hypercorn", starlette, "-b", f"{host}:{port}", "--backlog", "4096", "-k", "asyncio"]),
        "granian-asgi/starlette": (("granian", "starlette"), [*granian, "--interface", "asgi", starlette]),
    }


def targets(runtimes: list[str]) -> list[tuple]:
    """(label, ours, theirs, conns, metric, op, target), issue 16's, at 64 connections."""
    flask = [f"astra-{rt}/flask" for rt in runtimes]
    checks = [(f"best astra Flask vs {peer}", flask, [peer], 64, "rps", ">=", 1.2)
              for peer in ("gunicorn-gthread/flask", "waitress/flask")]
    checks.append(("best astra Flask vs granian-wsgi/flask", flask, ["granian-wsgi/flask"], 64, "rps", ">=", None))
    # The interface's overhead: CPU per request of the bare WSGI app over the native handler's, same runtime.
    checks += [(f"astra-{rt}/wsgi CPU/request vs astra-{rt}/native", [f"astra-{rt}/wsgi"],
                [f"astra-{rt}/native"], 64, "cpu", "<=", 1.25) for rt in runtimes]
    asgi_runtimes = [rt for rt in runtimes if load_runtime(VARIANTS.get(rt, (rt,))[0]).supports_async]
    for rt in asgi_runtimes:
        need = 1.0 if rt.startswith("asyncio") else None
        checks.append((f"astra-{rt}/starlette vs uvicorn/starlette", [f"astra-{rt}/starlette"],
                       ["uvicorn/starlette"], 64, "rps", ">=", need))
        checks.append((f"astra-{rt}/asgi CPU/request vs astra-{rt}/native-async", [f"astra-{rt}/asgi"],
                       [f"astra-{rt}/native-async"], 64, "cpu", "<=", None))
    checks.append(("best astra Starlette vs granian-asgi/starlette", [f"astra-{rt}/starlette" for rt in asgi_runtimes],
                   ["granian-asgi/starlette"], 64, "rps", ">=", None))
    return checks


def judge(runs: list[dict], runtimes: list[str], planned: set[str], conns_run: list[int]) -> list[dict]:
    return judge_targets(runs, targets(runtimes), planned, conns_run)


def choose(args) -> dict[str, tuple[list[str], dict]]:
    servers: dict[str, tuple[list[str], dict]] = {}
    for runtime in args.runtimes:
        for name, argv in astra_servers(runtime).items():
            servers[name] = (argv, {})
    for name, (packages, argv) in peer_servers().items():
        if args.peers is not None and name not in args.peers:
            continue
        if missing := [p for p in packages if importlib.util.find_spec(p) is None]:
            print(f"skipping {name}: {', '.join(missing)} not installed (pip install -e '.[experiments]')")
            continue
        servers[name] = (argv, {})
    return servers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.app_bench", description=__doc__.split("\n\n")[0])
    add_method_arguments(p, default_conns="64")
    p.add_argument("--runtimes", help="comma-separated astra runtimes (default: all, and asyncio+uvloop)")
    p.add_argument("--peers", help="comma-separated peers (default: all installed)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    args.conns = [int(c) for c in split(args.conns)]
    known = runtime_names()
    args.runtimes = split(args.runtimes) or known
    if unknown := set(args.runtimes) - set(known):
        p.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; available: {', '.join(known)}")
    args.peers = None if args.peers is None else split(args.peers)
    if args.peers and (unknown := set(args.peers) - set(peer_servers())):
        p.error(f"unknown peer(s) {', '.join(sorted(unknown))}; known: {', '.join(peer_servers())}")
    return args


def args_levels(args) -> list[str]:
    return [f"{len(args.conns)} level(s) x {args.repeat} round(s)"]


def markdown(document: dict) -> str:
    meta, rows = document["metadata"], document["results"]
    lines = [f"# app_bench, {meta['date']}", "",
             f"Commit {meta['commit']}{' (with uncommitted changes)' if meta['dirty'] else ''}; Python "
             f"{meta['python_version'].split()[0]}; " + ("server on CPU 0, wrk on CPU 1" if meta["pinned"]
                                                          else "UNPINNED")
             + f"; {meta['repeat']} round(s), interleaved; {meta['duration_s']} s measured after "
             f"{meta['warmup_s']} s of warm-up. Method: experiments/app_bench.py.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".", ""]
    lines += checks_markdown(document["checks"])
    for conns in meta["conns"]:
        lines += table_markdown([r for r in rows if r["conns"] == conns], conns)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and not args.dry_run:
        print("wrk is not installed (`make tools` installs it)", file=sys.stderr)
        return 2
    pin = shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    servers = choose(args)
    print(f"plan: {len(servers)} servers, {', '.join(args_levels(args))}, "
          f"~{expected_seconds(args, len(servers)) / 60:.0f} min: {', '.join(servers)}", flush=True)
    if args.dry_run:
        return 0
    runs = run_rounds(servers, args, pin)
    rows = summarise(runs)
    checks = judge(runs, args.runtimes, set(servers), args.conns)
    print_report(rows, checks)
    commit, dirty = git_state()
    document = {"metadata": {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"), "commit": commit, "dirty": dirty,
        "python_version": sys.version, "uname": " ".join(platform.uname()), "pinned": pin,
        "versions": {p: version(p) for p in PACKAGES}, "conns": args.conns, "duration_s": args.duration,
        "warmup_s": args.warmup, "repeat": args.repeat, "runtimes": args.runtimes,
        "servers": {name: argv for name, (argv, _) in servers.items()}},
        "results": rows, "checks": checks, "runs": runs}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"app_bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    (args.results_dir / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.results_dir / f"{stem}.md").write_text(markdown(document))
    print(f"\nwrote {args.results_dir}/{stem}.json and .md")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
