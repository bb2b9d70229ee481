"""Is openload right? Two checks against a server whose behaviour is known, and against wrk.

``python -m experiments.openload.validate [-o results/openload-validation.json]``

1. **A known stall.** :mod:`.stall_server` freezes 1 s every 10 s. Offered a
   rate well below its capacity, openload must report about a second of
   latency for the requests due during the freezes (about a tenth of them:
   the share over 100 ms should be near 0.1 and p99 near 1 s), where wrk,
   closed loop on the same server, reports a p99 that hides the freezes.
2. **Saturation.** Offered 1.5x what wrk measures as the server's capacity,
   openload's answered rate must come within 10% of wrk's (the server is the
   limit either way), with its queueing visible as growing latency.

Each check records the generator's CPU share and dispatch lag: a lag near a
millisecond would mean the generator, not the server, was late. Server on
CPU 0, generators on CPU 1.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..loadgen import Target, run_wrk
from . import run_openload

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(stall: float, every: float) -> tuple[subprocess.Popen, Target]:
    port = _free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "experiments.openload.stall_server",
                             "--port", str(port), "--stall", str(stall), "--every", str(every)], cwd=ROOT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, Target("127.0.0.1", port)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stall server did not start")


def check_stall(duration: float, rate: float, conns: int) -> dict:
    proc, target = _start(stall=1.0, every=10.0)
    try:
        time.sleep(0.5)
        wrk = run_wrk([target], conns, duration, cpus=[1], timeout=5)
        opened = run_openload([target], conns, rate, duration, warmup=1, cpus=[1], timeout=5)
    finally:
        proc.kill()
        proc.wait()
    lat = opened["latency_ms"]
    return {
        "what": "stall server (1 s every 10 s)", "rate": rate, "conns": conns, "duration_s": duration,
        "openload": {k: opened[k] for k in ("answered", "censored", "measured_rps", "generator", "latency_ms")},
        "wrk": {"requests_per_s": wrk["requests_per_s"], "latency_ms": {k: v / 1000 for k, v in wrk["latency_us"].items()}},
        "passed": bool(lat["p99"] and lat["p99"] >= 500 and lat["p50"] < 100
                       and wrk["latency_us"]["p99"] / 1000 < lat["p99"] / 2),
    }


def check_saturation(duration: float, conns: int) -> dict:
    proc, target = _start(stall=0.0, every=1e9)
    try:
        time.sleep(0.5)
        wrk = run_wrk([target], conns, duration, cpus=[1], timeout=5)
        rate = 1.5 * wrk["requests_per_s"]
        opened = run_openload([target], conns, rate, duration, warmup=1, cpus=[1], timeout=5)
    finally:
        proc.kill()
        proc.wait()
    ratio = opened["measured_rps"] / wrk["requests_per_s"] if wrk["requests_per_s"] else None
    return {
        "what": "saturation: offered 1.5x wrk's rate", "rate": rate, "conns": conns, "duration_s": duration,
        "openload": {k: opened[k] for k in ("answered", "censored", "measured_rps", "generator", "latency_ms")},
        "wrk": {"requests_per_s": wrk["requests_per_s"]},
        "answered_over_wrk": ratio, "passed": ratio is not None and 0.9 <= ratio <= 1.1,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.openload.validate", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    checks = [check_stall(args.duration, args.rate, args.conns), check_saturation(min(args.duration, 10), args.conns)]
    text = json.dumps(checks, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
