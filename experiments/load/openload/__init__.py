"""Open-loop load: requests due at a fixed rate, latency from when each was due (``openload.c``).

:func:`run_openload` is to an arrival rate what :func:`experiments.load.tools.run_wrk`
is to a number of busy connections: one ``openload`` process per target,
the connections and the rate split evenly over them, all started at once.
Every process writes each measured latency to a file, so the percentiles
are pooled exactly over processes (wrk's can only be bounded).

The binary is built on first use from ``openload.c`` next to this file into
``build/openload`` with the system's C compiler (``cc``: Debian's
build-essential), and rebuilt when the source is newer.
"""

from __future__ import annotations

import bisect
import json
import os
import math
import shutil
import subprocess
import tempfile
import time
from array import array
from pathlib import Path

from ..tools import LoadGenError, Target, _check, _ensure_fds, _pinning, _run_all, _slack, split

__all__ = ["binary", "pooled_percentiles", "run_openload", "shares_over"]

SOURCE = Path(__file__).resolve().with_name("openload.c")
BUILD = Path(__file__).resolve().parents[3] / "build" / "openload"
PERCENTILES = (("p50", 50.0), ("p75", 75.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))
COUNTERS = ("sent", "completed", "measured", "answered", "unsent", "outstanding", "censored", "non2xx",
            "connect_errors", "broken", "timeouts", "malformed", "reconnects")


def binary() -> Path:
    """``build/openload``, compiled when missing or older than its source."""
    if BUILD.exists() and os.access(BUILD, os.X_OK) and BUILD.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BUILD
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise LoadGenError("no C compiler (cc) to build openload: apt-get install build-essential")
    BUILD.parent.mkdir(parents=True, exist_ok=True)
    tmp = BUILD.with_name(f"openload.{os.getpid()}.tmp")  # processes building at once do not collide
    out = subprocess.run([compiler, "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True,
                         text=True, timeout=120)
    if out.returncode:
        raise LoadGenError(f"building openload failed: {out.stderr.strip()[-1000:]}")
    tmp.replace(BUILD)
    return BUILD


SHARE_OVER_MS = (1, 10, 100, 1000)


def pooled_percentiles(latencies_us: array) -> dict[str, float | None]:
    """Nearest-rank percentiles (ms) over every process's latencies, with mean and max."""
    values = sorted(latencies_us)
    if not values:
        return {name: None for name, _ in PERCENTILES} | {"mean": None, "max": None}
    out = {name: values[max(0, math.ceil(p / 100 * len(values)) - 1)] / 1000 for name, p in PERCENTILES}
    return out | {"mean": sum(values) / len(values) / 1000, "max": values[-1] / 1000}


def shares_over(latencies_us: array) -> dict[str, float | None]:
    """The share of measured requests slower than each of :data:`SHARE_OVER_MS` (an SLO reads off it)."""
    values = sorted(latencies_us)
    return {f"{ms}": (len(values) - bisect.bisect_right(values, ms * 1000)) / len(values) if values else None
            for ms in SHARE_OVER_MS}


def run_openload(targets: list[Target], conns: int, rate: float, duration: float, *, warmup: float = 1.0,
                 cpus: list[int] | None = None, timeout: float = 10.0, path: str = "/",
                 poisson_seed: int | None = None, sources: list[str] | None = None, rtt_ms: float = 0.0) -> dict:
    """Offer ``rate`` requests/s over ``conns`` keep-alive connections for ``duration`` seconds.

    Latency runs from each request's due time; requests due in the measured
    window that never completed within ``timeout`` after it (or never went out
    because no connection came free) count at the latency they had reached,
    as lower bounds (``censored``). ``generator`` gives each process's CPU
    share and dispatch lag: a lag in milliseconds means the generator, not the
    server, was late. ``rtt_ms`` plays a network round trip between client
    and server inside the generator (``openload -L``: see openload.c).
    """
    _check(targets, path)
    shares = split(conns, len(targets))
    prefix, pinned, notes = _pinning(cpus)
    _ensure_fds(shares[0])
    program = str(binary())
    with tempfile.TemporaryDirectory(prefix="openload-") as tmp:
        files = [Path(tmp) / f"{i}.lat" for i in range(len(targets))]
        # One start for every process (CLOCK_MONOTONIC is system-wide), after time enough to connect;
        # process i's evenly spaced schedule is offset by i / rate, so that together they are even too.
        connecting = max(1.0, conns / 5000)
        start_ns = time.monotonic_ns() + int(connecting * 1e9)
        commands = []
        for i, (target, n) in enumerate(zip(targets, shares)):
            argv = [program, "-c", str(n), "-R", f"{rate * n / conns:.6f}", "-d", str(duration), "-w", str(warmup),
                    "-T", str(timeout), "-p", path, "-o", str(files[i]), "-S", str(start_ns), "-O", f"{i / rate:.9f}"]
            if poisson_seed is not None:
                argv += ["-P", str(poisson_seed + i)]
            if rtt_ms:
                argv += ["-L", f"{rtt_ms:g}"]
            if sources:
                argv += ["-b", sources[i % len(sources)]]
            commands.append(prefix + argv + [f"{target.host}:{target.port}"])
        outputs = _run_all(commands, connecting + warmup + duration + 2 * timeout + _slack(conns), Path(tmp))
        per_process, latencies = [], array("I")
        for argv, (text, errors), file in zip(commands, outputs, files):
            try:
                per_process.append(json.loads(text.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise LoadGenError(f"no JSON line from {argv}: {errors.strip()[-500:]}") from None
            with open(file, "rb") as f:
                latencies.frombytes(f.read())
    return {
        "tool": "openload", "processes": len(targets), "conns": conns, "target_rate": rate,
        "arrivals": "poisson" if poisson_seed is not None else "uniform", "rtt_ms": rtt_ms,
        "duration_s": duration, "warmup_s": warmup, "timeout_s": timeout, "cpus": pinned, "notes": notes,
        **{name: sum(p[name] for p in per_process) for name in COUNTERS},
        "measured_rps": sum(p["measured_rps"] for p in per_process),
        "throughput_rps": sum(p["throughput_rps"] for p in per_process),
        "ok_rps": sum(p["ok_rps"] for p in per_process),
        "latency_ms": pooled_percentiles(latencies),
        "share_over_ms": shares_over(latencies),
        "late_start_ms": max(p["late_start_ms"] for p in per_process),
        "generator": {
            "cpu_share_max": max(p["generator"]["cpu_share"] for p in per_process),
            "dispatch_lag_max_us": max(p["generator"]["dispatch_lag_max_us"] for p in per_process),
            "dispatch_lag_over_1ms": sum(p["generator"]["dispatch_lag_over_1ms"] for p in per_process),
            "queued_sends": sum(p["generator"]["queued_sends"] for p in per_process),
            "queued_handoff_max_us": max(p["generator"]["queued_handoff_max_us"] for p in per_process),
        },
        "per_process": per_process, "commands": commands,
    }
