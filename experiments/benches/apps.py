"""``make bench-apps``: the same WSGI and ASGI applications on astra and on the servers users run them on.

``python -m experiments.benches.apps [--conns 64] [--repeat 3] [--runtimes threaded,asyncio+uvloop]``

What it answers: put a Flask (WSGI) or Starlette (ASGI) application on astra
instead of gunicorn, waitress, uvicorn, hypercorn or granian: what changes?
And what does the interface layer cost astra itself, next to its native
handler on the same runtime? The method is ``make bench``'s
(``experiments/benches/hello.py``: server pinned to CPU 0, ``wrk -t1`` on CPU 1,
a discarded warm-up, interleaved rounds, ratios taken within a round and
judged met / NOT met / inconclusive); only the servers and targets differ.

Servers (``experiments/apps/bench.py`` has the apps):

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

HTTP/2 (``--protos h1,h2``, both by default): the framework apps again, over
h2c with prior knowledge, driven by ``h2load -t1 -c16 -m4`` (64 streams in
flight, as many as HTTP/1.1's 64 connections) on CPU 1, on every astra
runtime and on the peers that speak it: gunicorn (gthread, ``--http-protocols
h2,h1 --http2-cleartext both``), hypercorn and granian. waitress and
uvicorn have no HTTP/2. These rows carry ``/h2`` in their names; latency
percentiles come from h2load's per-request log.

Results: ``results/app_bench-<timestamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from astra import available_runtimes
from astra.registry import load_runtime

from ..harness.servers import ServerProcess, busy_cpus, cpu_us
from ..load.tools import parse_h2load, parse_h2load_log, percentiles
from .hello import add_method_arguments, expected_seconds, git_state, measure, split, version
from .report import checks_markdown, judge_targets, print_report, summarise, table_markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
SERVER_CPU, WRK_CPU = 0, 1
#: astra runtime variants measured here: name -> (runtime, extra CLI options).
VARIANTS = {"asyncio+uvloop": ("asyncio", ["--loop", "uvloop"])}
PACKAGES = ("flask", "werkzeug", "starlette", "gunicorn", "waitress", "granian", "uvicorn", "hypercorn",
            "httptools", "uvloop")
APPS = "experiments.apps.bench"


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


def astra_h2_servers(runtime: str) -> dict[str, list[str]]:
    """The framework apps of :func:`astra_servers`, for the HTTP/2 rows (same argv: astra speaks both)."""
    return {f"{name}/h2": argv for name, argv in astra_servers(runtime).items()
            if name.endswith(("/flask", "/starlette"))}


def peer_h2_servers() -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """The peers that speak h2c with prior knowledge, serving the same apps."""
    peers = peer_servers()
    h2 = {name: peers[name] for name in ("hypercorn/starlette", "granian-wsgi/flask", "granian-asgi/starlette")}
    packages, argv = peers["gunicorn-gthread/flask"]
    # "both": prior knowledge and Upgrade, and HTTP/1.1 still answered (the readiness probe's GET).
    h2["gunicorn-gthread/flask"] = (packages, [*argv[:-1], "--http-protocols", "h2,h1",
                                               "--http2-cleartext", "both", argv[-1]])
    return {f"{name}/h2": spec for name, spec in h2.items()}


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
    # HTTP/2: reported, not judged (issue 16 sets no HTTP/2 target).
    for peer in ("gunicorn-gthread/flask", "granian-wsgi/flask"):
        checks.append((f"best astra Flask vs {peer}, HTTP/2", [f"{s}/h2" for s in flask], [f"{peer}/h2"],
                       64, "rps", ">=", None))
    for peer in ("hypercorn/starlette", "granian-asgi/starlette"):
        checks.append((f"best astra Starlette vs {peer}, HTTP/2",
                       [f"astra-{rt}/starlette/h2" for rt in asgi_runtimes], [f"{peer}/h2"], 64, "rps", ">=", None))
    return checks


def judge(runs: list[dict], runtimes: list[str], planned: set[str], conns_run: list[int]) -> list[dict]:
    return judge_targets(runs, targets(runtimes), planned, conns_run)


def choose(args) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, protocol "h1" or "h2")."""
    servers: dict[str, tuple[list[str], str]] = {}
    for proto, ours, peers in (("h1", astra_servers, peer_servers()), ("h2", astra_h2_servers, peer_h2_servers())):
        if proto not in args.protos:
            continue
        for runtime in args.runtimes:
            for name, argv in ours(runtime).items():
                servers[name] = (argv, proto)
        for name, (packages, argv) in peers.items():
            if args.peers is not None and name.removesuffix("/h2") not in args.peers:
                continue
            if missing := [p for p in packages if importlib.util.find_spec(p) is None]:
                print(f"skipping {name}: {', '.join(missing)} not installed (pip install -e '.[experiments]')")
                continue
            servers[name] = (argv, proto)
    return servers


# HTTP/2 rows: h2load instead of wrk, the rest of the method the same ---------------

H2_CONNS, H2_STREAMS = 16, 4


def run_h2load(url: str, seconds: float, pin: bool, log: Path | None = None) -> dict:
    """One h2load run at H2_CONNS x H2_STREAMS; adds its CPU share of the run and, with ``log``,
    latency percentiles from its per-request log."""
    cmd = (["taskset", "-c", str(WRK_CPU)] if pin else []) + [
        "h2load", "-t1", f"-c{H2_CONNS}", f"-m{H2_STREAMS}", f"-D{seconds:g}"]
    if log is not None:
        cmd.append(f"--log-file={log}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse_h2load(out.stdout)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["wrk_cpu_share"] = round(used / max(result["finished_in_s"], 1e-3), 3)
    if log is not None:
        with open(log) as lines:
            result["latency_us"] = percentiles(parse_h2load_log(lines)) or {"p50": None, "p99": None}
    return result


def measure_h2(name: str, argv: list[str], args, pin: bool) -> list[dict]:
    """One fresh server, a discarded warm-up, one measured h2load run: a row shaped like wrk's."""
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "server.log", "w+") as server_log:
        server = ServerProcess(argv, cpus=[SERVER_CPU] if pin else None, log=server_log)
        try:
            server.wait_ready()
            run_h2load(server.url, args.warmup, pin)
            other = busy_cpus(args.pause)
            before = cpu_us(server.proc.pid)
            r = run_h2load(server.url, args.duration, pin, log=Path(tmp) / "h2load.log")
            cpu = cpu_us(server.proc.pid) - before
        except Exception as exc:  # one failed server must not sink the comparison
            print(f"  ! {name}: {exc}")
            return []
        finally:
            how = server.stop()
    ok = r["succeeded"]
    row = {"server": name, "conns": H2_CONNS * H2_STREAMS, "requests_per_s": r["requests_per_s"],
           "requests": ok, "latency_us": r["latency_us"], "wrk_cpu_share": r["wrk_cpu_share"],
           "errors": {"failed": r["failed"], "errored": r["errored"], "timeout": r["timeout"],
                      "non2xx": sum(r["status"].values()) - r["status"]["2xx"]},
           "protocol": r["protocol"], "server_cpu_us": round(cpu), "other_cpus": round(other, 2),
           "cpu_us_per_request": cpu / ok if ok else None, "server_stop": how,
           "load": f"h2load -t1 -c{H2_CONNS} -m{H2_STREAMS}"}
    print(f"  h2 {H2_CONNS}x{H2_STREAMS}: {r['requests_per_s']:,.0f} req/s, p99 {r['latency_us']['p99']} us, "
          f"{row['cpu_us_per_request'] or 0:.1f} cpu-us/req, h2load {r['wrk_cpu_share']:.0%}, "
          f"protocol {r['protocol']}", flush=True)
    return [row]


def run_all_rounds(servers: dict[str, tuple[list[str], str]], args, pin: bool) -> list[dict]:
    """Interleaved rounds (see benches.hello.run_rounds), each server measured by its protocol's tool."""
    runs: list[dict] = []
    for round_no in range(1, args.repeat + 1):
        for name, (argv, proto) in servers.items():
            print(f"measuring {name} (round {round_no}/{args.repeat}) ...", flush=True)
            rows = measure(name, argv, args, pin) if proto == "h1" else measure_h2(name, argv, args, pin)
            runs += [row | {"round": round_no} for row in rows]
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.benches.apps", description=__doc__.split("\n\n")[0])
    add_method_arguments(p, default_conns="64")
    p.add_argument("--runtimes", help="comma-separated astra runtimes (default: all, and asyncio+uvloop)")
    p.add_argument("--peers", help="comma-separated peers (default: all installed)")
    p.add_argument("--protos", default="h1,h2", help="h1, h2 or both (default)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    args.conns = [int(c) for c in split(args.conns)]
    known = runtime_names()
    args.runtimes = split(args.runtimes) or known
    if unknown := set(args.runtimes) - set(known):
        p.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; available: {', '.join(known)}")
    args.peers = None if args.peers is None else split(args.peers)
    args.protos = split(args.protos)
    if set(args.protos) - {"h1", "h2"}:
        p.error("--protos takes h1, h2 or h1,h2")
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
             f"{meta['warmup_s']} s of warm-up. Method: experiments/benches/apps.py.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".", ""]
    lines += checks_markdown(document["checks"])
    for conns in meta["conns"]:
        lines += table_markdown([r for r in rows if r["conns"] == conns and not r["server"].endswith("/h2")], conns)
    if h2 := [r for r in rows if r["server"].endswith("/h2")]:
        lines += [f"## HTTP/2, h2c with prior knowledge ({h2[0]['load']}: "
                  f"{H2_CONNS * H2_STREAMS} streams in flight; *wrk CPU* is h2load's)", ""]
        lines += table_markdown(h2, H2_CONNS * H2_STREAMS)[2:]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed = ["wrk"] * ("h1" in args.protos) + ["h2load"] * ("h2" in args.protos)
    if (missing := [t for t in needed if shutil.which(t) is None]) and not args.dry_run:
        print(f"{', '.join(missing)} not installed (`make tools` installs them)", file=sys.stderr)
        return 2
    pin = shutil.which("taskset") is not None and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    servers = choose(args)
    print(f"plan: {len(servers)} servers, {', '.join(args_levels(args))}, "
          f"~{expected_seconds(args, len(servers)) / 60:.0f} min: {', '.join(servers)}", flush=True)
    if args.dry_run:
        return 0
    runs = run_all_rounds(servers, args, pin)
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
