"""``python -m experiments COMMAND``: one entry point for every experiment.

``run`` is the harness (what ``make experiment`` runs, below); the other
commands hand their arguments to the module that does the work:

=================  ==================================================================
``run``            the harness: servers, load, cost, one directory per run
``report DIR``     render a run again (tables, plots, CSV), no measuring
``compare A B``    two harness runs point by point
``claims``         the seeds' claims: measure and judge (``make claims``)
``reproduce A B``  two claims runs: do the verdicts and figures reproduce?
``bench``          hello world against the peers and raw floors (``make bench``)
``bench-apps``     WSGI and ASGI apps on astra and the peers (``make bench-apps``)
``bench-h2``       HTTP/2 against the peers
``bench-tls``      handshakes and requests over HTTPS against the peers (``make bench-tls``)
``pool-sweep``     hybrid's pool size, swept
``soak``           long run under mixed and hostile load (``make soak``)
``validate-load``  openload against servers with a known behaviour, and wrk
=================  ==================================================================

Examples::

    python -m experiments run                          # the default sweep (< 30 min)
    python -m experiments run --conc 25000             # 1, 10, 100, 1000, 10000, 25000
    python -m experiments run --conc 1,64,1000 --runtimes hybrid,asyncio --workloads sleep
    python -m experiments run --dry-run                # the plan and how long it will take
    python -m experiments run --conc 64, --rates 1000,2000,4000,8000   # open loop: latency vs offered load
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from astra import available_runtimes

from .harness.plan import Plan, ladder
from .harness.workloads import DEFAULT_WORKLOADS, WORKLOADS

PROTOCOLS = ("h1", "h2")


def parse_cpus(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def names(text: str | None, known: list[str], what: str) -> list[str]:
    if not text:
        return list(known)
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := [n for n in chosen if n not in known]:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(known)}")
    return chosen


#: command -> module whose ``main(argv)`` takes the rest of the command line.
COMMANDS = {
    "report": "experiments.harness.report", "compare": "experiments.harness.compare", "claims": "experiments.claims.runner",
    "reproduce": "experiments.claims.compare", "bench": "experiments.benches.hello",
    "bench-apps": "experiments.benches.apps", "bench-h2": "experiments.benches.h2",
    "bench-tls": "experiments.benches.tls", "pool-sweep": "experiments.benches.pool_sweep",
    "soak": "experiments.hostile.soak", "validate-load": "experiments.load.openload.validate",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        import importlib

        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    plan = plan_from(args)
    check_limits(plan)
    if args.dry_run:
        return 0
    check_tools_and_cpus(plan)
    return measure(plan, args, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0],
                                     epilog="other commands: " + ", ".join(COMMANDS) + " (each takes --help)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment")
    run.add_argument("--conc", default="1000", help="N (ladder 1, 10, ... N) or a list 1,64,1000 (default 1000)")
    run.add_argument("--runtimes", help=f"comma-separated (default all: {', '.join(available_runtimes())}); "
                                        "NAME~N is a pool runtime with --max-workers N, e.g. pinned~1000")
    run.add_argument("--workloads", help=f"comma-separated from {', '.join(WORKLOADS)} "
                                         f"(default {', '.join(DEFAULT_WORKLOADS)}; db brings up PostgreSQL)")
    run.add_argument("--proto", default="h1", choices=PROTOCOLS,
                     help="h1: HTTP/1.1, driven by wrk; h2: HTTP/2 with prior knowledge, driven by h2load")
    run.add_argument("--streams", type=int, default=10, help="h2: concurrent streams per connection (default 10)")
    run.add_argument("--duration", type=float, default=5.0, help="measured seconds per level (default 5)")
    run.add_argument("--warmup", type=float, default=1.0, help="discarded warm-up seconds per level (default 1)")
    run.add_argument("--repeat", type=int, default=1, help="rounds; the median is reported (default 1)")
    run.add_argument("--pause", type=float, default=1.0, help="seconds between levels (default 1)")
    run.add_argument("--rates", default="",
                     help="open loop: offered requests/s, comma-separated, at each connection level (openload; "
                          "latency from each request's due time). Default: closed loop (wrk)")
    run.add_argument("--arrivals", choices=["uniform", "poisson"], default="uniform",
                     help="open loop: evenly spaced or Poisson arrivals (default uniform)")
    run.add_argument("--p99-bound-ms", type=float, default=100.0,
                     help="open loop: a rate is sustained with 95%% answered and p99 under this (default 100)")
    run.add_argument("--rtt-ms", type=float, default=0.0,
                     help="open loop: a network round trip between client and server, played by the load "
                          "generator (this kernel has no netem); default 0 (loopback)")
    run.add_argument("--fairness", type=float, default=3.0,
                     help="seconds of h2load --h1 per level from 100 connections (0: skip; default 3)")
    run.add_argument("--server-cpus", default="0", help="CPUs the servers are pinned to (default 0)")
    run.add_argument("--client-cpus", default="1", help="CPUs the load generators are pinned to (default 1)")
    run.add_argument("--sleep-ms", type=float, default=10.0, help="the sleep workload's sleep (default 10 ms)")
    run.add_argument("--handlers", choices=["auto", "sync"], default="auto",
                     help="auto: async def forms on runtimes that await them; sync: blocking forms everywhere")
    run.add_argument("--servers", type=int, default=1,
                     help="server processes at every level, at least (default 1; levels above 9,000 "
                          "connections get more): a control for the sharded levels")
    run.add_argument("--server-args", default="", help="extra astra CLI options, e.g. '--max-workers 200'")
    run.add_argument("--peers", default="",
                     help="reference servers through the same workloads: hypercorn,uvicorn,waitress,stdlib")
    run.add_argument("--interpreters", default="standard",
                     help="the servers' interpreters: standard, freethreaded (CPython without the GIL: "
                          "`make freethreaded`), or both; a free-threaded run is labelled RUNTIME+ft")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR")
    run.add_argument("--results-dir", default=None, help="where results go (default: results/)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its estimated duration")
    return parser


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan the command line asks for, checked: unknown names and impossible combinations stop here."""
    peers = []
    if args.peers:
        from .apps.peer_workloads import H2_PEERS, PEERS, peer_available

        chosen = names(args.peers, list(PEERS), "peer")
        if args.proto == "h2" and (h1_only := [p for p in chosen if p not in H2_PEERS]):
            print(f"note: {', '.join(h1_only)} do not speak HTTP/2 and are left out")
            chosen = [p for p in chosen if p in H2_PEERS]
        peers = [f"peer:{p}" for p in chosen if peer_available(p)]
    from .harness.interpreters import Interpreter, label, python_for

    interpreters = [Interpreter(n) for n in names(args.interpreters, list(Interpreter), "interpreter")]
    for interpreter in interpreters:
        python_for(interpreter)  # built, or a clear message now rather than a failed run later
    known = available_runtimes()
    chosen = [n.strip() for n in (args.runtimes or ",".join(known)).split(",") if n.strip()]
    from .harness.plan import variant

    try:
        names(",".join(variant(n)[0] for n in chosen), known, "runtime")
        astra_runtimes = [n for n in chosen if variant(n)]
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    plan = Plan(
        # Peers run on the standard build only: their packages are not installed on the other.
        runtimes=[label(rt, i) for i in interpreters for rt in astra_runtimes] + peers,
        workloads=names(args.workloads, list(WORKLOADS), "workload") if args.workloads else list(DEFAULT_WORKLOADS),
        levels=ladder(args.conc), proto=args.proto, streams=args.streams, duration=args.duration, warmup=args.warmup,
        pause=args.pause, repeat=args.repeat, fairness_duration=args.fairness,
        server_cpus=parse_cpus(args.server_cpus), client_cpus=parse_cpus(args.client_cpus),
        min_servers=args.servers,
        rates=sorted(float(r) for r in args.rates.split(",") if r.strip()), arrivals=args.arrivals,
        p99_bound_ms=args.p99_bound_ms, rtt_ms=args.rtt_ms,
    )
    if args.rtt_ms and not plan.open_loop:
        raise SystemExit("--rtt-ms needs open loop (--rates): wrk cannot play a network")
    if plan.open_loop and plan.proto != "h1":
        raise SystemExit("open loop (--rates) drives HTTP/1.1 only: openload has no HTTP/2")
    return plan


def check_limits(plan: Plan) -> None:
    """Print the plan and the machine's limits; stop if the plan cannot fit them."""
    from .harness import machine

    print(plan.describe(), flush=True)
    limits = machine.system_limits()
    problems, notes = machine.check_limits(plan, limits)
    print("limits:     " + ", ".join(f"{k} {v:,}" for k, v in limits.items()))
    for note in notes:
        print(f"note:       {note}")
    if problems:
        raise SystemExit("this plan cannot run here: " + "; ".join(problems))


def check_tools_and_cpus(plan: Plan) -> None:
    missing = [tool for tool in ("wrk", "h2load", "taskset") if shutil.which(tool) is None]
    if missing:
        packages = {"wrk": "wrk", "h2load": "nghttp2-client", "taskset": "util-linux"}
        raise SystemExit("missing tools: " + ", ".join(missing) + "; install the Debian packages "
                         + " ".join(packages[t] for t in missing) + " (make tools does it as root)")
    usable = os.sched_getaffinity(0)
    if not set(plan.server_cpus + plan.client_cpus) <= usable:
        raise SystemExit(f"CPUs {plan.server_cpus + plan.client_cpus} are not all available here ({sorted(usable)})")


def measure(plan: Plan, args: argparse.Namespace, argv: list[str]) -> int:
    """Run the plan; an interrupted run keeps what it measured and says how to resume it."""
    from pathlib import Path

    from .harness.report import render
    from .harness.run import RESULTS, run_plan

    command = "python -m experiments " + shlex.join(argv)
    results = Path(args.results_dir) if args.results_dir else RESULTS
    resume = Path(args.resume) if args.resume else None
    interrupted = False
    try:
        run_dir = run_plan(plan, command=command, extra_args=shlex.split(args.server_args),
                           sleep_ms=args.sleep_ms, handler_style=args.handlers, results=results, resume=resume)
    except KeyboardInterrupt:  # servers and load generators were stopped on the way out
        interrupted = True
        run_dir = resume or max(results.glob("experiment-*/"), key=lambda p: p.stat().st_mtime)
        print(f"\ninterrupted: what was measured is in {run_dir}; --resume {run_dir} carries on")
    written = render(run_dir)
    print("\nwrote " + ", ".join(str(p) for p in [run_dir, *written]))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
