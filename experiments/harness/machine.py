"""The machine an experiment runs on: its limits, whether a plan fits them, and what env.json records.

Why a run records all of this: figures from two runs compare only when their machines,
kernels, packages, tools and limits are known to match (``experiments/SCHEMA.md``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from ..load.tools import tool_versions
from .interpreters import describe, split_label
from .plan import SHARD_CONNECTIONS, Plan
from .servers import ROOT

__all__ = ["check_limits", "environment", "system_limits"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def system_limits() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, high = (_read("/proc/sys/net/ipv4/ip_local_port_range") or "32768 60999").split()
    return {
        "open_files_soft": soft, "open_files_hard": hard,
        "pid_max": int(_read("/proc/sys/kernel/pid_max") or 0),
        "threads_max": int(_read("/proc/sys/kernel/threads-max") or 0),
        "somaxconn": int(_read("/proc/sys/net/core/somaxconn") or 0),
        "ephemeral_ports": int(high) - int(low) + 1,
        "tcp_tw_reuse": int(_read("/proc/sys/net/ipv4/tcp_tw_reuse") or 0),
    }


def check_limits(plan: Plan, limits: dict) -> tuple[list[str], list[str]]:
    """(problems that stop the plan, notes on what is tight) for this machine."""
    problems, notes = [], []
    per_process = min(max(plan.levels), SHARD_CONNECTIONS)
    if limits["open_files_hard"] < per_process + 100:
        problems.append(f"open-file limit {limits['open_files_hard']} < {per_process + 100} needed per process")
    if limits["ephemeral_ports"] < per_process:
        problems.append(f"only {limits['ephemeral_ports']} ephemeral ports per address, {per_process} needed")
    top = max(plan.levels)
    if any(split_label(r)[0] == "threaded" for r in plan.runtimes) and top + 500 > min(limits["pid_max"], limits["threads_max"] or 1 << 30):
        notes.append(f"threaded needs ~{top:,} threads at {top:,} connections; pid_max is "
                     f"{limits['pid_max']:,}: expect it to fail there (recorded, not fatal)")
    if shared := sorted(set(plan.server_cpus) & set(plan.client_cpus)):
        notes.append(f"servers and load generators share CPU {','.join(map(str, shared))}: every figure "
                     "includes the load generator's competition for the same cores")
    if limits["somaxconn"] < 1024:
        notes.append(f"somaxconn is {limits['somaxconn']}: connection bursts may overflow the accept queue")
    return problems, notes


def environment(plan: Plan, command: str, extra_args: list[str], sleep_ms: float, handler_style: str) -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in (_read("/proc/cpuinfo") or "").splitlines()
                      if line.startswith("model name")), platform.processor() or None)
    packages = {}
    for name in ("h11", "h2", "anyio", "trio", "hypercorn", "uvicorn", "waitress", "pyperf", "matplotlib",
                 "psycopg", "psycopg-pool", "jinja2"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "cpu_model": cpu_model,
        "kernel": " ".join(platform.uname()), "packages": packages, "limits": system_limits(),
        "git_commit": _git_revision(), "tools": tool_versions(),
        "server_cpus": plan.server_cpus, "client_cpus": plan.client_cpus,
        "duration_s": plan.duration, "warmup_s": plan.warmup, "repeat": plan.repeat,
        "fairness_duration_s": plan.fairness_duration, "levels": plan.levels, "proto": plan.proto,
        "streams": plan.streams if plan.proto == "h2" else None,
        "runtimes": plan.runtimes, "workloads": plan.workloads,
        "interpreters": {str(i): describe(i) for i in sorted({split_label(r)[1] for r in plan.runtimes})},
        "shard_connections": SHARD_CONNECTIONS, "min_servers": plan.min_servers, "server_args": extra_args,
        "sleep_ms": sleep_ms,
        "load": ({"loop": "open", "tool": "openload", "rates": plan.rates, "arrivals": plan.arrivals,
                  "p99_bound_ms": plan.p99_bound_ms, "rtt_ms": plan.rtt_ms}
                 if plan.open_loop else {"loop": "closed", "tool": "wrk"}),
        "handler_style": handler_style, "command": command,
        "notes": [
            "wrk latency percentiles across several load-generator processes are the worst process's",
            f"levels above {SHARD_CONNECTIONS} connections run the server as several processes "
            "(--workers, SO_REUSEPORT) listening on 127.0.0.1..k, one load generator per address",
        ],
    }


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except OSError:
        return None
