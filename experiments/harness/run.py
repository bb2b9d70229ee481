"""Running a plan: the same workloads on every runtime, level by level, honestly measured.

For each round, runtime and workload, a fresh server is started (pinned to
the server CPUs) and checked for readiness; levels that need more than one
server process (see ``plan.py``) get a server started with ``--workers k``,
listening on 127.0.0.1..k with ``SO_REUSEPORT``. For each concurrency level:
a discarded warm-up, a measured wrk run while a :class:`CostSampler` watches
the servers, a fairness run with ``h2load --h1`` (wrk reports only requests
that completed, so a server that starves most of its clients can look fast),
and a pause.

Everything lands in ``results/<run-id>/`` as it happens: ``env.json`` first,
then one line of ``runs.jsonl`` per measured level, so an interrupted sweep
keeps what it measured and ``--resume`` carries on where it stopped. The
layout and every field are described in ``experiments/SCHEMA.md``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from astra.registry import load_runtime

from ..load.tools import LoadGenError, Target, run_h2load, run_wrk
from .interpreters import env_for, python_for, split_label
from .machine import environment
from .plan import FAIRNESS_FROM, SHARD_CONNECTIONS, Plan, shards_for, variant
from .servers import ROOT, CostSampler, ServerProcess, busy_cpus, free_port, open_connections
from .workloads import WORKLOADS

__all__ = ["run_plan"]

RESULTS = ROOT / "results"
TIME_WAIT_LIMIT = 20_000  # wait before a level while more sockets than this linger in TIME_WAIT
PEER_PREFIX = "peer:"


# The sweep -----------------------------------------------------------------------

def run_plan(plan: Plan, *, command: str, extra_args: list[str], sleep_ms: float = 10.0,
             handler_style: str = "auto", results: Path = RESULTS, resume: Path | None = None) -> Path:
    """Run (or resume) a plan; returns the run directory. Ctrl-C stops cleanly, keeping results."""
    if resume is not None:
        run_dir = resume
        kept = _lines(run_dir / "runs.jsonl")
        (run_dir / "runs.jsonl").write_text("".join(line + "\n" for line in kept))  # drop a cut-off line
        done = {_key(json.loads(line)) for line in kept}
    else:
        run_dir = results / f"experiment-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        run_dir.mkdir(parents=True)
        env = environment(plan, command, extra_args, sleep_ms, handler_style)
        (run_dir / "env.json").write_text(json.dumps(env, indent=1) + "\n")
        done = set()
    progress = Progress(plan, already=len(done))
    setup = Setup(extra_args, sleep_ms, handler_style)
    with open(run_dir / "runs.jsonl", "a") as out, database_for(plan, run_dir) as setup.database:
        for round_no in range(1, plan.repeat + 1):
            for runtime in plan.runtimes:
                for name in plan.workloads:
                    points = [(c, rate) for c in plan.levels for rate in (plan.rates or [None])
                              if (runtime, name, plan.proto, c, rate, round_no) not in done]
                    if not points:
                        continue
                    print(f"{progress.line()}  round {round_no}: {runtime} / {name}", flush=True)
                    for run in measure_workload(plan, setup, runtime, name, points, round_no):
                        out.write(json.dumps(run) + "\n")
                        out.flush()
                        progress.advance()
                        offered = f" @ {run['rate']:>8,g}/s" if run.get("rate") is not None else ""
                        print(f"    {run['conc']:>6,} conns{offered}: " + summary_line(run), flush=True)
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text())
    env["elapsed_s"] = round(env.get("elapsed_s", 0) + time.monotonic() - progress.started)
    env["completed"] = datetime.now().astimezone().isoformat(timespec="seconds")
    env_path.write_text(json.dumps(env, indent=1) + "\n")
    return run_dir


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        try:
            json.loads(line)
            out.append(line)
        except ValueError:
            pass  # a line cut short by an interruption
    return out


def _key(run: dict) -> tuple:
    return (run["runtime"], run["workload"], run["proto"], run["conc"], run.get("rate"), run["round"])


class Progress:
    """A one-line progress bar with an ETA from the measured pace (the plan's estimate at first)."""

    def __init__(self, plan: Plan, already: int = 0) -> None:
        self.total = plan.repeat * len(plan.runtimes) * len(plan.workloads) * plan.points()
        self.done = already
        self.started = time.monotonic()
        self.measured = 0
        self.estimate = plan.estimate_seconds() / max(self.total, 1)

    def advance(self) -> None:
        self.done += 1
        self.measured += 1

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        pace = elapsed / self.measured if self.measured else self.estimate
        left = (self.total - self.done) * pace
        filled = int(20 * self.done / max(self.total, 1))
        return (f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} "
                f"{elapsed / 60:4.1f} min, ETA {left / 60:4.1f} min")


# One runtime and workload ----------------------------------------------------------

def server_argv(runtime: str, handler: str, stats_file: Path, workers: int, port: int,
                extra: list[str], python: str = sys.executable) -> list[str]:
    """astra with limits an experiment needs: connections held for the whole run, none refused."""
    binds = [arg for i in range(workers) for arg in ("--bind", f"127.0.0.{i + 1}:{port}")]
    return [
        python, "-m", "astra", handler, *binds, "--workers", str(workers), "--runtime", runtime,
        "--keep-alive-timeout", "300", "--header-timeout", "60",
        "--max-connections", str(SHARD_CONNECTIONS + 1_000),
        "--stats-file", str(stats_file), "--stats-interval", "0.5", *extra,
    ]


@dataclass
class Setup:
    """What every server of a run shares besides the plan."""

    extra_args: list[str]
    sleep_ms: float = 10.0
    handler_style: str = "auto"
    #: A running ``experiments.harness.postgres.Cluster`` when the plan has the db workload.
    database: Any = None


@contextmanager
def database_for(plan: Plan, run_dir: Path) -> Iterator[Any]:
    """A throwaway PostgreSQL for the db workload, pinned to the load generators' CPUs.

    Without PostgreSQL (and no way to install it) the db workload is dropped
    from the plan with a message naming the package; the others still run.
    """
    if "db" not in plan.workloads:
        yield None
        return
    from .postgres import Cluster, PostgresMissing

    try:
        cluster = Cluster(cpus=plan.client_cpus).__enter__()
    except (PostgresMissing, subprocess.CalledProcessError) as exc:
        why = exc.stderr.strip()[-300:] if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        print(f"note: the db workload is skipped: {why}", flush=True)
        plan.workloads = [w for w in plan.workloads if w != "db"]
        _note(run_dir, f"db workload skipped: {why}")
        yield None
        return
    try:
        yield cluster
    finally:
        cluster.__exit__(None, None, None)


def _note(run_dir: Path, note: str) -> None:
    env_path = run_dir / "env.json"
    env = json.loads(env_path.read_text())
    env.setdefault("notes", []).append(note)
    env_path.write_text(json.dumps(env, indent=1) + "\n")


Point = tuple[int, float | None]  # (connections, offered requests/s or None for closed loop)


def measure_workload(plan: Plan, setup: Setup, runtime: str, workload: str, points: list[Point],
                     round_no: int) -> Iterator[dict]:
    """Each group of levels that needs the same number of server processes gets a fresh server."""
    for workers, group in groupby(points, key=lambda point: shards_for(point[0], plan.min_servers)):
        yield from measure_server(plan, setup, runtime, workload, list(group), workers, round_no)


def measure_server(plan: Plan, setup: Setup, runtime: str, workload: str, levels: list[Point], workers: int,
                   round_no: int) -> Iterator[dict]:
    """Measure ``levels`` on one server; each run is yielded as soon as it is measured.

    In open loop a connection level's rates rise until the server has missed
    two in a row (see :func:`sustained`): the rates above are not attempted,
    and their rows say so, since they would measure only a growing queue.
    """
    base = {"runtime": runtime, "workload": workload, "proto": plan.proto, "round": round_no,
            "servers": workers, "load_processes": workers, "error": None}
    if runtime.startswith(PEER_PREFIX) and workers > 1:
        for c, rate in levels:
            yield base | {"conc": c, "rate": rate, "error": "peers run as one process: level not attempted"}
        return
    env = {"ASTRA_SLEEP_MS": str(setup.sleep_ms), "ASTRA_WORKLOAD": workload}
    database = setup.database if workload == "db" else None
    if database is not None:
        env["ASTRA_DB_DSN"] = database.dsn
    with tempfile.TemporaryDirectory(prefix="astra-exp-") as tmp:
        command = _server_command(setup, runtime, workload, workers, Path(tmp) / "stats.jsonl")
        base |= command.labels
        log = open(Path(tmp) / "server.log", "w+")
        server = ServerProcess(command.argv, cpus=plan.server_cpus, log=log, env=env | command.env,
                               port=command.port)
        try:
            yield from _measure_levels(plan, server, command.stats_files, base, levels, workers, database, log)
        finally:
            server.stop()
            log.close()


@dataclass(frozen=True)
class ServerCommand:
    """How to start one server under test: its command line, environment, and where its counters go."""

    argv: list[str]
    env: dict[str, str]
    port: int | None  # None: a peer picks its own, read from its log
    stats_files: list[Path]
    labels: dict[str, str]  # what every row of this server records: its handler (and interpreter)


def _server_command(setup: Setup, runtime: str, workload: str, workers: int, stats: Path) -> ServerCommand:
    if runtime.startswith(PEER_PREFIX):
        from ..apps.peer_workloads import peer_argv

        return ServerCommand(peer_argv(runtime[len(PEER_PREFIX):]), {}, None, [], {"handler": "peer"})
    labelled, interpreter = split_label(runtime)
    name, workers_cap = variant(labelled)
    handler = WORKLOADS[workload].handler_for(name, load_runtime(name).supports_async, setup.handler_style)
    port = free_port_everywhere(workers)
    extra = setup.extra_args + (["--max-workers", str(workers_cap)] if workers_cap else [])
    return ServerCommand(server_argv(name, handler, stats, workers, port, extra, python_for(interpreter)),
                         env_for(interpreter), port,
                         [Path(f"{stats}.{i}") for i in range(workers)] if workers > 1 else [stats],
                         {"interpreter": str(interpreter), "handler": handler})


def _measure_levels(plan: Plan, server: ServerProcess, stats_files: list[Path], base: dict, levels: list[Point],
                    workers: int, database, log) -> Iterator[dict]:
    measured, missed = 0, {}
    try:
        server.wait_ready(hosts=[f"127.0.0.{i + 1}" for i in range(workers)])
        for conc, rate in levels:
            run = base | {"conc": conc, "rate": rate}
            measured += 1
            if missed.get(conc, 0) >= 2:
                yield run | {"error": f"not attempted: past the knee (two lower rates not sustained at {conc:,} "
                                      "connections)", "past_knee": True}
                continue
            targets = [Target(f"127.0.0.{i + 1}", server.port) for i in range(workers)]
            try:
                run |= measure_level(plan, server, stats_files, targets, conc, database, rate)
            except LoadGenError as exc:
                run["error"] = f"load generator: {exc}"
            exited = server.proc.poll() is not None
            if exited:
                run["error"] = (run["error"] or "") + f" server exited ({server.proc.returncode})"
            if rate is not None:
                run["sustained"] = sustained(run, plan.p99_bound_ms)
                missed[conc] = 0 if run["sustained"] else missed.get(conc, 0) + 1
            yield _with_log(run, log)
            if exited:
                for c, r in levels[measured:]:
                    yield _with_log(base | {"conc": c, "rate": r, "error": "not attempted: the server had exited"}, log)
                return
            time.sleep(plan.pause)
    except RuntimeError as exc:  # a server that never became ready
        for c, r in levels[measured:]:
            yield _with_log(base | {"conc": c, "rate": r, "error": str(exc)}, log)


def _with_log(run: dict, log) -> dict:
    """A failed run carries the tail of its server's log."""
    if run.get("error"):
        log.flush()
        log.seek(0)
        run["server_log_tail"] = log.read().splitlines()[-20:]
        log.seek(0, 2)
    return run


def free_port_everywhere(addresses: int) -> int:
    """A port that is free on 127.0.0.1..``addresses``."""
    for _ in range(50):
        port = free_port()
        try:
            for i in range(1, addresses):
                with socket.socket() as s:
                    s.bind((f"127.0.0.{i + 1}", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every loopback address")


def sustained(run: dict, p99_bound_ms: float) -> bool:
    """An offered rate the server kept up with: 95% of it answered 2xx/3xx inside the window, p99 in bound."""
    load = run.get("load") or {}
    p99 = (load.get("latency_us") or {}).get("p99")
    return (not run.get("error") and load.get("ok_rps", 0) >= 0.95 * run["rate"]
            and p99 is not None and p99 / 1000 <= p99_bound_ms)


def measure_level(plan: Plan, server: ServerProcess, stats: list[Path], targets: list[Target],
                  conc: int, database: Any = None, rate: float | None = None) -> dict:
    time_wait = wait_for_time_wait()
    drained = None
    if rate is not None:
        return measure_open_loop(plan, server, stats, targets, conc, rate, database) | {"time_wait_before": time_wait}
    if plan.warmup:
        drive(plan, targets, conc, plan.warmup)
        drained = wait_for_drain(stats)
    other = busy_cpus(0.5)  # server idle, no load: anything busy now is someone else
    sampler = CostSampler([server.proc.pid], stats, ports=sorted({t.port for t in targets}),
                          baseline_rss_kib=getattr(server, "idle_rss_kib", None))
    db_before = database.cpu_seconds() if database is not None else None
    sampler.start()
    load = drive(plan, targets, conc, plan.duration, measured=True)
    cost = sampler.stop(load["requests"])
    if database is not None:  # the database's own CPU, next to the server's
        db_cpu = database.cpu_seconds() - db_before
        cost["db_cpu_s"] = round(db_cpu, 3)
        cost["db_cpu_us_per_request"] = db_cpu * 1e6 / load["requests"] if load["requests"] else None
    if plan.proto == "h2":  # h2load's own per-client rates are the fairness figures
        fairness = {"client_rps": load["client_rps"], "source": "the measured h2load run"}
    else:
        # The measured run's connections first: still open, they would count against the
        # fairness run's (at 25,000, 503s past max_connections, or clients that never connect).
        drained_after = wait_for_drain(stats) if conc >= FAIRNESS_FROM else None
        fairness = measure_fairness(plan, targets, conc, cost)
        if fairness is not None and drained_after is not None:
            fairness["drain_before_s"] = drained_after
    return {"load": load, "cost": cost, "fairness": fairness,
            "other_cpus": round(other, 2), "time_wait_before": time_wait, "warmup_drain_s": drained}


def measure_open_loop(plan: Plan, server: ServerProcess, stats: list[Path], targets: list[Target], conc: int,
                      rate: float, database: Any = None) -> dict:
    """openload offers ``rate`` requests/s over ``conc`` connections: its warm-up is its own first seconds.

    The cost sampler spans the whole openload run (connecting, warm-up,
    window, drain), so CPU per request divides by every response it got.
    There is no fairness run: at a fixed arrival rate every connection is
    offered the same work, and a starved request shows in the latency.
    """
    from ..load.openload import run_openload

    other = busy_cpus(0.5)
    sampler = CostSampler([server.proc.pid], stats, ports=sorted({t.port for t in targets}),
                          baseline_rss_kib=getattr(server, "idle_rss_kib", None))
    db_before = database.cpu_seconds() if database is not None else None
    sampler.start()
    opened = run_openload(targets, conc, rate, plan.duration, warmup=max(plan.warmup, 1.0), cpus=plan.client_cpus,
                          timeout=10.0, poisson_seed=1 if plan.arrivals == "poisson" else None, rtt_ms=plan.rtt_ms)
    cost = sampler.stop(opened["completed"])
    # Steady state: the fewest connections the kernel held in the measured window, once every connection
    # had been opened and warmed (openload connects for max(1, conns / 5,000) s, then warms up).
    settled = max(1.0, conc / 5000) + max(plan.warmup, 1.0)
    window = [n for t, n in sampler.kernel_series if settled <= t <= settled + plan.duration]
    cost["connections_steady_min"] = min(window) if window else None
    if database is not None:
        db_cpu = database.cpu_seconds() - db_before
        cost["db_cpu_s"] = round(db_cpu, 3)
        cost["db_cpu_us_per_request"] = db_cpu * 1e6 / opened["completed"] if opened["completed"] else None
    return {"load": open_loop_load(opened), "cost": cost, "fairness": None, "other_cpus": round(other, 2)}


def open_loop_load(opened: dict) -> dict:
    """openload's result in the shape the report reads (wrk's), with what only open loop has kept."""
    keep = ("tool", "conns", "target_rate", "arrivals", "rtt_ms", "duration_s", "warmup_s", "timeout_s", "cpus", "sent",
            "completed", "measured", "answered", "unsent", "outstanding", "censored", "throughput_rps", "ok_rps",
            "late_start_ms", "share_over_ms", "generator", "commands")
    return {k: opened[k] for k in keep} | {
        "requests": opened["completed"],
        "requests_per_s": opened["throughput_rps"],
        "latency_us": {k: None if v is None else v * 1000 for k, v in opened["latency_ms"].items()},
        "errors": {k: opened[k] for k in ("non2xx", "connect_errors", "broken", "timeouts", "malformed")},
    }


def drive(plan: Plan, targets: list[Target], conc: int, seconds: float, measured: bool = False) -> dict:
    """wrk for HTTP/1.1; h2load with ``plan.streams`` streams per connection for HTTP/2.

    h2load's results are given wrk's ``errors`` shape (``failed`` already
    includes its errored and timed-out requests) and, for the measured run,
    exact latency percentiles from its per-request log.
    """
    if plan.proto == "h1":
        return run_wrk(targets, conc, seconds, cpus=plan.client_cpus)
    load = run_h2load(targets, conc, seconds, h1=False, streams=plan.streams, cpus=plan.client_cpus,
                      log_percentiles=measured)
    load["errors"] = {"failed": load["failed"]}  # its errored, timed-out and non-2xx/3xx requests
    return load


def wait_for_drain(stats: list[Path], patience: float = 60.0) -> float | None:
    """Wait until the warm-up's connections are closed on the server side too.

    wrk closes its connections when the warm-up ends, but a loaded server
    takes a while to notice thousands of them; measuring before then counts
    them against the next run (connection caps, memory, CPU). Returns the
    seconds waited (None without stats files, as for peers).
    """
    if not stats:
        return None
    started = time.monotonic()
    time.sleep(0.6)  # at least one fresh stats line (they come every 0.5 s)
    while (open_now := open_connections(stats)) and time.monotonic() - started < patience:
        time.sleep(0.5)
    if open_now:
        print(f"    note: {open_now} warm-up connections still open after {patience:.0f} s")
    return round(time.monotonic() - started, 1)


def measure_fairness(plan: Plan, targets: list[Target], conc: int, cost: dict) -> dict | None:
    """h2load --h1's per-client rates; skipped when the server left connections unaccepted.

    h2load starts its clock only once every client has connected, so against
    a server whose accept loop is starved it waits until our guard kills it.
    The wrk run has already shown the answer then: ``connections_established``
    far below the level is the unfairness, recorded as such.
    """
    if conc < FAIRNESS_FROM or not plan.fairness_duration:
        return None
    established = cost.get("connections_established")
    if established is not None and established < 0.9 * conc:
        return {"skipped": f"only {established:,} of {conc:,} connections were established during "
                           "the measured run: clients starved before fairness could be measured"}
    try:
        window = plan.fairness_seconds(conc)
        return run_h2load(targets, conc, window, h1=True, cpus=plan.client_cpus, timeout=10) | {"window_s": window}
    except LoadGenError as exc:  # keep the level's wrk figures
        return {"error": f"h2load: {exc}"}


def time_wait_sockets() -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                count += sum(1 for line in f if line.split()[3] == "06")  # TCP_TIME_WAIT
        except OSError:
            pass
    return count


def wait_for_time_wait(limit: int = TIME_WAIT_LIMIT, patience: float = 60.0) -> int:
    deadline = time.monotonic() + patience
    while (count := time_wait_sockets()) > limit and time.monotonic() < deadline:
        time.sleep(1.0)
    return count


def summary_line(run: dict) -> str:
    if run.get("error") and "load" not in run:
        return f"FAILED: {run['error']}"
    load, cost, fair = run["load"], run["cost"], run.get("fairness")
    errors = sum(load["errors"].values())
    p99 = load["latency_us"]["p99"]
    text = (f"{load['requests_per_s']:>9,.0f} req/s  p99 {(p99 or 0) / 1000:8.1f} ms  "
            f"cpu {cost['cpu_us_per_request'] or 0:6.1f} us/req  rss {cost['peak_rss_kib'] / 1024:6.1f} MiB  "
            f"threads {cost['peak_threads']:>6}  conns {cost['connections_established'] or '-'}  errors {errors}")
    if "sustained" in run:
        text += (f"  {'sustained' if run['sustained'] else 'NOT sustained'}, {load['censored']:,} censored, "
                 f"generator {load['generator']['cpu_share_max']:.0%} of a CPU")
    if fair and "client_rps" in fair:
        text += f"  per-client req/s {fair['client_rps']['min']:.2f}..{fair['client_rps']['max']:.2f}"
    elif fair:
        text += f"  fairness: {fair.get('skipped') or fair.get('error')}"
    if run.get("error"):
        text += f"  ! {run['error']}"
    return text
