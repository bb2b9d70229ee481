"""Running a plan: the same workloads on every runtime, level by level, honestly measured.

For each round, runtime and workload, fresh server processes are started
(pinned to the server CPUs) and checked for readiness. Then, for each
concurrency level: a discarded warm-up, a measured wrk run while a
:class:`CostSampler` watches the servers, a fairness run with ``h2load --h1``
(wrk reports only the requests that completed, so a server that starves
most of its clients can look fast), and a pause. Results are written after
every (runtime, workload), so an interrupted experiment keeps what it had.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from astra.runtimes import load_runtime

from .loadgen import LoadGenError, Target, run_h2load, run_wrk, tool_versions
from .plan import FAIRNESS_FROM, SHARD_CONNECTIONS, Plan, shards_for
from .servers import ROOT, CostSampler, ServerProcess, busy_cpus
from .workloads import WORKLOADS

__all__ = ["run_plan"]

RESULTS = ROOT / "results"
TIME_WAIT_LIMIT = 20_000  # wait before a level while more sockets than this linger in TIME_WAIT


def server_argv(runtime: str, handler: str, stats_file: Path, extra: list[str]) -> list[str]:
    """astra with limits an experiment needs: connections held for the whole run, none refused."""
    return [
        sys.executable, "-m", "astra", handler, "--bind", "{host}:{port}", "--runtime", runtime,
        "--keep-alive-timeout", "300", "--header-timeout", "60",
        "--max-connections", str(SHARD_CONNECTIONS + 1_000),
        "--stats-file", str(stats_file), "--stats-interval", "0.5", *extra,
    ]


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


def metadata(plan: Plan, command: str, extra_args: list[str], sleep_ms: float, handler_style: str) -> dict:
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "kernel": " ".join(platform.uname()),
        "tools": tool_versions(), "server_cpus": plan.server_cpus, "client_cpus": plan.client_cpus,
        "duration_s": plan.duration, "warmup_s": plan.warmup, "repeat": plan.repeat,
        "fairness_duration_s": plan.fairness_duration, "levels": plan.levels, "proto": plan.proto,
        "shard_connections": SHARD_CONNECTIONS, "server_args": extra_args, "sleep_ms": sleep_ms,
        "handler_style": handler_style, "command": command, "revision": _git_revision(),
        "notes": [
            "wrk latency percentiles across several load-generator processes are the worst process's",
            f"levels above {SHARD_CONNECTIONS} connections use several server processes, one per loopback address",
        ],
    }


def run_plan(plan: Plan, *, command: str, extra_args: list[str], sleep_ms: float = 10.0,
             handler_style: str = "auto", results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results / f"experiment-{stamp}.json"
    doc = {"metadata": metadata(plan, command, extra_args, sleep_ms, handler_style), "runs": []}
    started = time.monotonic()
    for round_no in range(1, plan.repeat + 1):
        for runtime in plan.runtimes:
            awaits = load_runtime(runtime).supports_async
            for name in plan.workloads:
                handler = WORKLOADS[name].handler_for(awaits, handler_style)
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] round {round_no}: "
                      f"{runtime} / {name} ({handler})", flush=True)
                doc["runs"] += measure_server(plan, runtime, name, handler, round_no, extra_args, sleep_ms)
                path.write_text(json.dumps(doc, indent=1) + "\n")
    doc["metadata"]["elapsed_s"] = round(time.monotonic() - started)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    (results / "experiment-latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    return path


def measure_server(plan: Plan, runtime: str, workload: str, handler: str, round_no: int,
                   extra_args: list[str], sleep_ms: float) -> list[dict]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="astra-exp-") as tmp:
        stats = [Path(tmp) / f"stats-{i}.jsonl" for i in range(plan.shards)]
        log = open(Path(tmp) / "server.log", "w+")
        servers = [
            ServerProcess(server_argv(runtime, handler, stats[i], extra_args), cpus=plan.server_cpus,
                          log=log, host=f"127.0.0.{i + 1}", env={"ASTRA_SLEEP_MS": str(sleep_ms)})
            for i in range(plan.shards)
        ]
        base = {"runtime": runtime, "workload": workload, "proto": plan.proto, "round": round_no,
                "handler": handler}
        try:
            for server in servers:
                server.wait_ready()
            for conc in plan.levels:
                shards = shards_for(conc)
                run = base | {"conc": conc, "servers": shards, "load_processes": shards, "error": None}
                try:
                    run |= measure_level(plan, servers[:shards], stats[:shards], conc)
                except LoadGenError as exc:
                    run["error"] = f"load generator: {exc}"
                dead = [s for s in servers if s.proc.poll() is not None]
                if dead:
                    run["error"] = (run["error"] or "") + f" server exited ({dead[0].proc.returncode})"
                runs.append(run)
                print(f"    {conc:>6,} conns: " + summary_line(run), flush=True)
                if dead:
                    break
                time.sleep(plan.pause)
        except RuntimeError as exc:  # a server that never became ready
            runs.append(base | {"conc": plan.levels[0], "error": str(exc)})
            print(f"    ! {exc}")
        finally:
            stops = [server.stop() for server in servers]
            log.seek(0)
            tail = log.read().splitlines()[-20:]
            log.close()
        for run in runs:
            run["server_stop"] = stops
            if run.get("error"):
                run["server_log_tail"] = tail
    return runs


def measure_level(plan: Plan, servers: list[ServerProcess], stats: list[Path], conc: int) -> dict:
    targets = [Target(s.host, s.port) for s in servers]
    cpus = plan.client_cpus
    time_wait = wait_for_time_wait()
    if plan.warmup:
        run_wrk(targets, conc, plan.warmup, cpus=cpus)
    other = busy_cpus(0.5)  # servers idle, no load: anything busy now is someone else
    sampler = CostSampler([s.proc.pid for s in servers], stats)
    sampler.start()
    load = run_wrk(targets, conc, plan.duration, cpus=cpus)
    cost = sampler.stop(load["requests"])
    fairness = None
    if conc >= FAIRNESS_FROM and plan.fairness_duration:
        fairness = run_h2load(targets, conc, plan.fairness_duration, h1=True, cpus=cpus)
    return {"load": load, "cost": cost, "fairness": fairness, "other_cpus": round(other, 2),
            "time_wait_before": time_wait}


def summary_line(run: dict) -> str:
    if run.get("error") and "load" not in run:
        return f"FAILED: {run['error']}"
    load, cost, fair = run["load"], run["cost"], run.get("fairness")
    errors = sum(load["errors"].values())
    text = (f"{load['requests_per_s']:>9,.0f} req/s  p99 {load['latency_us']['p99'] / 1000:8.1f} ms  "
            f"cpu {cost['cpu_us_per_request'] or 0:6.1f} us/req  rss {cost['peak_rss_kib'] / 1024:6.1f} MiB  "
            f"threads {cost['peak_threads']:>6}  errors {errors}")
    if fair:
        text += f"  per-client req/s {fair['client_rps']['min']:.2f}..{fair['client_rps']['max']:.2f}"
    if run.get("error"):
        text += f"  ! {run['error']}"
    return text


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except OSError:
        return None
