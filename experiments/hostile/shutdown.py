"""Graceful shutdown under load: SIGTERM with requests in flight, on every runtime and both protocols.

``python -m experiments.hostile.shutdown [--runtimes ...] [--protocols h1,h2] [-n 50] [--handler-ms 1000]
[--shutdown-timeout 5] [--slack 1.5] [-o results/shutdown-<timestamp>.json]``

Per runtime and protocol, a fresh server (``experiments.apps.soak``) gets
``-n`` requests for ``/sleep`` (each handler blocks ``--handler-ms``) on a
mix of connections: HTTP/1.1 one request per connection, half of them
keep-alive connections that already served a request; HTTP/2 ten streams per
connection, half the connections used before. A few idle keep-alive
connections are open too. Once every request has been sent (and 0.3 s more,
so the server has read them), SIGTERM. Three checks, none bent:

- **no request lost**: each in-flight request gets a complete ``200`` with
  the handler's body (a reset, a close, a GOAWAY that drops the stream, a
  503 or a truncated body is a loss);
- **newcomers refused**: connections opened 0.2, 0.5 and 0.8 s after the
  signal (a new HTTP/2 connection asks for a stream) must be refused within
  1 s of trying: connection refused or reset, closed unanswered, 503, a
  GOAWAY or REFUSED_STREAM. Served is a failure; so is no answer within
  1 s (a connection left in the accept queue, which only the exit resets);
- **prompt exit**: the process exits within ``--shutdown-timeout`` plus
  ``--slack`` seconds of the signal (its exit status is reported too).

The code under test is copied at the start (``--live``: the checkout as it
is). Output: a table on stdout and a JSON document in ``results/``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from astra import available_runtimes

from ..harness.servers import ROOT, ServerProcess
from .shutdown_clients import H1Flight, H2Flight, probe
from .soak import freeze_tree, wait_until_quiet

APP = "experiments.apps.soak:app"
PROBE_DELAYS = (0.2, 0.5, 0.8)  # seconds after SIGTERM
PROBE_ANSWER_WITHIN = 1.0  # seconds from trying to a refusal
SETTLE = 0.3  # seconds between the last request sent and the signal, at least
SETTLE_AT_MOST = 3.0  # ... and at most, waiting for every handler to be running (a small pool queues some)


def run_case(runtime: str, protocol: str, n: int, handler_ms: int, shutdown_timeout: float, slack: float,
             tree: Path | None = None, server_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """One runtime x protocol: start, load, SIGTERM, check (the server runs from ``tree``, default the
    checkout, with ``server_args`` added to its command line). Never raises for the server's sake."""
    argv = [sys.executable, "-m", "astra", APP, "--runtime", runtime, "--bind", "{host}:{port}",
            "--shutdown-timeout", str(shutdown_timeout), *server_args]
    with tempfile.TemporaryFile("w+") as log:
        server = ServerProcess(argv, cpus=None, log=log, cwd=tree)
        try:
            server.wait_ready()
            return _measure(server, runtime, protocol, n, handler_ms, shutdown_timeout, slack)
        except Exception as exc:  # the case fails, the others still run
            return {"runtime": runtime, "protocol": protocol, "error": f"{type(exc).__name__}: {exc}", "pass": False}
        finally:
            server.stop(timeout=1.0)  # no-op if it exited; else it is killed by PID


def _measure(server: ServerProcess, runtime: str, protocol: str, n: int, handler_ms: int,
             shutdown_timeout: float, slack: float) -> dict[str, Any]:
    address = (server.host, server.port)
    flight = (H2Flight if protocol == "h2" else H1Flight)(address, n, f"/sleep?ms={handler_ms}")
    flight.prepare()  # idle and reused keep-alive connections first
    flight.send_all()
    time.sleep(SETTLE)
    _wait_running(address, n, SETTLE_AT_MOST - SETTLE)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    probes: list[dict] = []
    threads = [threading.Thread(target=lambda d=d: probes.append(probe(address, protocol, signalled, d)))
               for d in PROBE_DELAYS]
    for thread in threads:
        thread.start()
    limit = shutdown_timeout + slack
    results = flight.collect(signalled + limit + handler_ms / 1000 + 3)
    exit_s = _wait_exit(server, signalled, limit + 5)
    for thread in threads:
        thread.join(limit + 10)
    return judge(runtime, protocol, n, results, probes, exit_s, server.proc.returncode, limit)


def _wait_running(address: tuple[str, int], n: int, patience: float) -> int | None:
    """Wait until the server runs all ``n`` handlers (``GET /sleeping``), so that every request counted as
    in flight has really been read: on a loaded machine a fixed pause is not always enough, and a stream
    the server never saw is one a GOAWAY may rightly refuse."""
    deadline = time.monotonic() + patience
    running = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(address, timeout=0.3) as sock:
                sock.sendall(b"GET /sleeping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                sock.settimeout(0.3)
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
            running = int(reply.rsplit(b"\r\n\r\n", 1)[1] or b"0")
        except (OSError, ValueError, IndexError):
            running = None
        if running is not None and running >= n:
            return running
        time.sleep(0.05)
    return running


def _wait_exit(server: ServerProcess, since: float, timeout: float) -> float | None:
    """Seconds from the signal to the process's exit, or None if it outlived ``timeout``."""
    while server.proc.poll() is None:
        if time.monotonic() - since > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic() - since


def judge(runtime: str, protocol: str, n: int, results: list[dict], probes: list[dict], exit_s: float | None,
          exit_code: int | None, limit: float) -> dict[str, Any]:
    lost = [r for r in results if r["outcome"] != "complete 200"]
    kinds: dict[str, int] = {}
    for r in lost:
        kinds[r["outcome"]] = kinds.get(r["outcome"], 0) + 1
    probes = sorted(probes, key=lambda p: p["delay_s"])
    bad_probes = [p for p in probes if p["outcome"] == "served" or p["answer_s"] is None
                  or p["answer_s"] > PROBE_ANSWER_WITHIN]
    checks = {"no_request_lost": not lost and len(results) == n, "newcomers_refused": not bad_probes,
              "exit_in_time": exit_s is not None and exit_s <= limit}
    return {"runtime": runtime, "protocol": protocol, "in_flight": n, "completed": n - len(lost),
            "lost": len(lost), "lost_kinds": kinds, "probes": probes, "exit_s": None if exit_s is None else round(exit_s, 2),
            "exit_code": exit_code, "limit_s": limit, "checks": checks, "pass": all(checks.values()),
            "slowest_s": max((round(r["seconds"], 2) for r in results if r["outcome"] == "complete 200"), default=None)}


def table(rows: list[dict]) -> str:
    lines = ["| runtime | proto | completed / in flight | lost (how) | newcomers (delay: outcome, s) | exit s (code) | pass |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['runtime']} | {r['protocol']} | error: {r['error']} | | | | FAIL |")
            continue
        probes = "; ".join(f"{p['delay_s']:g}: {p['outcome']}"
                           + (f" {p['answer_s']:.2f}" if p["answer_s"] is not None else " no answer") for p in r["probes"])
        lost = f"{r['lost']}" + (f" ({', '.join(f'{k} x{v}' for k, v in r['lost_kinds'].items())})" if r["lost"] else "")
        failed = [k for k, ok in r["checks"].items() if not ok]
        lines.append(f"| {r['runtime']} | {r['protocol']} | {r['completed']} / {r['in_flight']} | {lost} | {probes} | "
                     f"{r['exit_s'] if r['exit_s'] is not None else 'did not exit'} ({r['exit_code']}) | "
                     f"{'pass' if r['pass'] else 'FAIL: ' + ', '.join(failed)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtimes", default=",".join(available_runtimes()))
    p.add_argument("--protocols", default="h1,h2")
    p.add_argument("-n", type=int, default=50, help="requests in flight at the signal")
    p.add_argument("--handler-ms", type=int, default=1000)
    p.add_argument("--shutdown-timeout", type=float, default=5.0, help="the server's --shutdown-timeout")
    p.add_argument("--slack", type=float, default=1.5, help="seconds allowed past the shutdown timeout")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--live", action="store_true", help="run the checkout itself, not a copy frozen at the start")
    args = p.parse_args(argv)
    out = args.output or ROOT / "results" / f"shutdown-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="astra-shutdown-") as tmp:
        code = {"commit": "live checkout"} if args.live else freeze_tree(Path(tmp))  # colleagues edit meanwhile
        for runtime in args.runtimes.split(","):
            for protocol in args.protocols.split(","):
                wait_until_quiet()
                row = run_case(runtime, protocol, args.n, args.handler_ms, args.shutdown_timeout, args.slack,
                               tree=None if args.live else Path(tmp))
                rows.append(row)
                print(f"{runtime:<9} {protocol}: {'pass' if row['pass'] else 'FAIL'}", flush=True)
    print(table(rows))
    out.write_text(json.dumps({"when": datetime.now().isoformat(timespec="seconds"), "code": code, "n": args.n,
                               "handler_ms": args.handler_ms, "shutdown_timeout_s": args.shutdown_timeout,
                               "slack_s": args.slack, "probe_delays_s": PROBE_DELAYS,
                               "probe_answer_within_s": PROBE_ANSWER_WITHIN, "results": rows}, indent=1))
    print(f"wrote {out}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
