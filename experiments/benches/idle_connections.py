"""Many idle keep-alive connections: what do they cost, and does a newcomer still get served?

``python -m experiments.benches.idle_connections [--idle 10000] [--runtimes hybrid,threaded]``

For each runtime a fresh server process is started (pinned to CPU 0) with a
long ``--keep-alive-timeout`` (600 s unless told otherwise) so that idle
connections stay open. This process (pinned to CPU 1) then opens ``--idle``
connections and sends one request on each. Each is then **answered** (200
and the hello body; it stays open, idle), **refused** (a complete 503, or
closed by the server without an answer), **waiting** (no answer by
``--open-timeout``, by default 30 s + 1 s per 1,000 connections; kept open)
or **other** (any other answer; none expected). ``pinned`` (a worker per
connection, the seeds' design) answers as many as it has workers, queues
``max_queued_requests`` more and refuses the rest, by design: counted, not
an error. With those connections held it measures:

* fresh clients (new connection, one request, the answer), ``--probes``
  times, one after another, each within ``--probe-timeout`` s: each one's
  outcome (status code, ``timeout`` or ``closed``) and latency; ``probe_ms``
  summarizes the answered (200) ones;
* how many answered connections are still open (a short keep-alive timeout
  lets the server close idle ones), and the server's threads and resident
  memory (``/proc/PID/status``), so what each idle connection costs.

``--server-arg [RUNTIME:]ARGS`` appends ARGS (split like a shell) to the
astra command line of every runtime, or of RUNTIME only, e.g.
``--server-arg "pinned:--max-workers 2 --max-queued-requests 5"``.

The seeds claim tens of thousands of connections are fine with blocking
I/O; the hybrid issue asks that a newcomer be answered in under 100 ms with
10,000 idle connections open, on far fewer threads than connections.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import selectors
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from astra import available_runtimes

ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
PROBE = b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
BODY = b"Hello World!"
OUTCOMES = ("answered", "refused", "waiting", "other")
WINDOW = 500  # connections in flight at most (keeps the accept queue from overflowing)...
STALL = 1.0  # ...unless none has completed for this long: those wait on the server, open more beside them


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def server_args_for(runtime: str, specs: list[str]) -> list[str]:
    """The extra astra arguments for ``runtime``: every ``ARGS`` and ``RUNTIME:ARGS`` of its own."""
    extra = []
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if sep and name in available_runtimes():
            if name == runtime:
                extra += shlex.split(rest)
        else:
            extra += shlex.split(spec)
    return extra


def start_server(runtime: str, cpu: int, keep_alive: float, extra: list[str]) -> tuple[subprocess.Popen, tuple[str, int]]:
    cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "astra", "experiments.apps:hello",
           "--bind", "127.0.0.1:0", "--runtime", runtime, "--max-connections", "15000",
           "--keep-alive-timeout", str(keep_alive), "--header-timeout", "600",
           "--thread-stack-size", str(256 * 1024), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise RuntimeError(f"{runtime}: server did not start: {line!r}")
    host, _, port = line.split("//")[1].strip().rpartition(":")
    return proc, (host, int(port))


def parse_response(data: bytes, eof: bool = False) -> tuple[int, bytes] | None:
    """(status, body) once ``data`` holds a whole response (by Content-Length, or ended by ``eof``)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not sep or not status:
        return None
    length = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", head, re.IGNORECASE)
    if length and len(body) >= int(length[1]):
        return int(status[1]), body[:int(length[1])]
    return (int(status[1]), body) if eof else None


def open_idle(address: tuple[str, int], count: int, timeout: float) -> tuple[dict[str, list], dict[str, int]]:
    """Open ``count`` keep-alive connections, one request each, concurrently; wait up to ``timeout`` s.
    The sockets held (``answered``, ``waiting``; the rest are closed), and how many ended each way."""
    selector = selectors.DefaultSelector()
    held: dict[str, list] = {"answered": [], "waiting": []}
    counts = dict.fromkeys(OUTCOMES, 0)
    deadline = time.monotonic() + timeout
    window = WINDOW
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE, bytearray())
        if len(selector.get_map()) >= window:
            _progress(selector, held, counts, until=window - WINDOW // 2, deadline=deadline, stall=STALL)
            window = max(WINDOW, len(selector.get_map()) + WINDOW // 2)
    _progress(selector, held, counts, until=0, deadline=deadline)
    for key in list(selector.get_map().values()):
        selector.unregister(key.fileobj)
        held["waiting"].append(key.fileobj)
        counts["waiting"] += 1
    selector.close()
    return held, counts


def _progress(selector: selectors.BaseSelector, held: dict, counts: dict, until: int,
              deadline: float, stall: float = math.inf) -> None:
    """Serve ready sockets until ``until`` remain, the deadline passes, or nothing ends for ``stall`` s."""
    last = time.monotonic()
    while len(selector.get_map()) > until:
        now = time.monotonic()
        if now >= deadline or now - last >= stall:
            return
        for key, mask in selector.select(min(deadline - now, 0.5)):
            outcome = _step(selector, key, mask)
            if outcome is None:
                continue
            last = time.monotonic()
            selector.unregister(key.fileobj)
            counts[outcome] += 1
            if outcome == "answered":
                held["answered"].append(key.fileobj)
            else:
                key.fileobj.close()


def _step(selector: selectors.BaseSelector, key: selectors.SelectorKey, mask: int) -> str | None:
    """Send the request or read the answer; the connection's outcome once it has one."""
    sock, buffer = key.fileobj, key.data
    try:
        if mask & selectors.EVENT_WRITE:
            sock.send(REQUEST)
            selector.modify(sock, selectors.EVENT_READ, buffer)
            return None
        chunk = sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:  # refused or reset: the server let go of it without an answer
        chunk = b""
    buffer += chunk
    response = parse_response(bytes(buffer), eof=not chunk)
    if response is None:
        return None if chunk else "refused"
    status, body = response
    if status == 200 and body == BODY:
        return "answered"
    return "refused" if status == 503 else "other"


def still_open(socks: list[socket.socket]) -> int:
    """How many of these (non-blocking) sockets the server has not closed."""
    count = 0
    for sock in socks:
        try:
            count += sock.recv(1, socket.MSG_PEEK) != b""
        except (BlockingIOError, InterruptedError):
            count += 1
        except OSError:
            pass
    return count


def probe(address: tuple[str, int], timeout: float) -> dict:
    """One fresh client: its outcome (status code, "timeout" or "closed") and latency in ms."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(PROBE)
            data = b""
            while (response := parse_response(data)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                sock.settimeout(left)
                chunk = sock.recv(4096)
                if not chunk:
                    response = parse_response(data, eof=True)
                    break
                data += chunk
        outcome = response[0] if response else "closed"
    except socket.timeout:
        outcome = "timeout"
    except OSError:
        outcome = "closed"
    return {"outcome": outcome, "ms": round((time.perf_counter() - started) * 1000, 2)}


def summarize_probes(probes: list[dict]) -> dict:
    ms = [p["ms"] for p in probes if p["outcome"] == 200]  # the answered ones
    summary = dict.fromkeys(("min", "median", "max"))
    if ms:
        summary = {"min": min(ms), "median": round(statistics.median(ms), 2), "max": max(ms)}
    return {"probe_ms": summary, "probe_outcomes": dict(Counter(str(p["outcome"]) for p in probes)),
            "probes": probes}


def measure(runtime: str, args: argparse.Namespace) -> dict:
    extra = server_args_for(runtime, args.server_arg)
    proc, address = start_server(runtime, 0, args.keep_alive_timeout, extra)
    held: dict[str, list] = {}
    try:
        time.sleep(0.5)
        base = proc_status(proc.pid)
        started = time.monotonic()
        held, counts = open_idle(address, args.idle, args.open_timeout)
        opened_s = time.monotonic() - started
        time.sleep(1.0)  # let the server settle (worker pools shrink, buffers drain)
        loaded = proc_status(proc.pid)
        answered_open = still_open(held["answered"])
        probes = [probe(address, args.probe_timeout) for _ in range(args.probes)]
        rss_growth = (loaded["VmRSS"] - base["VmRSS"]) * 1024
        return {
            "runtime": runtime, "idle_connections": args.idle, "seconds_to_open": round(opened_s, 2),
            "threads_before": base["Threads"], "threads_with_idle": loaded["Threads"],
            "rss_kib_before": base["VmRSS"], "rss_kib_with_idle": loaded["VmRSS"],
            "rss_bytes_per_idle_connection": round(rss_growth / args.idle),
            "connections": counts, "answered_still_open": answered_open,
            "rss_bytes_per_held_connection": round(rss_growth / max(1, answered_open + counts["waiting"])),
            "open_timeout_s": args.open_timeout, "keep_alive_timeout": args.keep_alive_timeout,
            "probe_timeout_s": args.probe_timeout, "server_args": extra,
            **summarize_probes(probes),
        }
    finally:
        for sock in held.get("answered", []) + held.get("waiting", []):
            sock.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report(row: dict) -> str:
    c, p = row["connections"], row["probe_ms"]
    fresh = f"median {p['median']} ms, max {p['max']} ms" if p["median"] is not None else "never answered"
    outcomes = ", ".join(f"{k}: {v}" for k, v in row["probe_outcomes"].items())
    return (f"{row['runtime']:<10} idle={row['idle_connections']:>6} (answered {c['answered']}, refused "
            f"{c['refused']}, waiting {c['waiting']}, other {c['other']}; {row['answered_still_open']} still open) "
            f"threads={row['threads_with_idle']:>6} rss={row['rss_kib_with_idle'] / 1024:7.1f} MiB "
            f"({row['rss_bytes_per_idle_connection']} B/conn) fresh client: {fresh} [{outcomes}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="seconds each fresh client may take")
    parser.add_argument("--open-timeout", type=float,
                        help="seconds to wait for the idle connections' answers (30 + 1 per 1,000 connections)")
    parser.add_argument("--keep-alive-timeout", type=float, default=600.0,
                        help="the server's; 600 keeps idle connections open (astra's default is 15)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="[RUNTIME:]ARGS",
                        help="extra astra arguments, for every runtime or RUNTIME's only; repeatable")
    parser.add_argument("--runtimes", default=",".join(available_runtimes()))
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    if args.open_timeout is None:
        args.open_timeout = 30 + args.idle / 1000
    os.sched_setaffinity(0, {1})
    rows = []
    for runtime in args.runtimes.split(","):
        rows.append(measure(runtime, args))
        print(report(rows[-1]), flush=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = {"date": datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "cpus": os.cpu_count(), "keep_alive_timeout": args.keep_alive_timeout, "rows": rows}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"idle_connections-{stamp}.json", "idle_connections-latest.json"):
        (args.results_dir / name).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
