"""Many idle keep-alive connections: what do they cost, and does a newcomer still get served?

``python -m experiments.idle_connections [--idle 10000] [--runtimes hybrid,threaded]``

For each runtime a fresh server process is started (pinned to CPU 0) with
timeouts long enough that idle connections stay open. This process (pinned
to CPU 1) then opens ``--idle`` connections, sends one request on each and
reads the answer, leaving every connection idle in keep-alive. With all of
them held open it measures:

* the latency of fresh clients (new connection, one request, the answer),
  ``--probes`` times, one after another;
* the server's threads and resident memory, from ``/proc/PID/status``, and
  so the memory and threads each idle connection costs.

The seeds claim tens of thousands of connections are fine with blocking
I/O; the hybrid issue asks that a newcomer be answered in under 100 ms with
10,000 idle connections open, on far fewer threads than connections.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from astra import available_runtimes

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def start_server(runtime: str, cpu: int) -> tuple[subprocess.Popen, tuple[str, int]]:
    cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "astra", "experiments.apps:hello",
           "--bind", "127.0.0.1:0", "--runtime", runtime, "--max-connections", "15000",
           "--keep-alive-timeout", "600", "--header-timeout", "600", "--thread-stack-size", str(256 * 1024)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise RuntimeError(f"{runtime}: server did not start: {line!r}")
    host, _, port = line.split("//")[1].strip().rpartition(":")
    return proc, (host, int(port))


def open_idle(address: tuple[str, int], count: int) -> list[socket.socket]:
    """Open ``count`` keep-alive connections, one answered request each, concurrently."""
    selector = selectors.DefaultSelector()
    socks, pending = [], 0
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE, [b""])
        socks.append(sock)
        pending += 1
        if pending >= 500:  # keep the accept queue from overflowing
            pending -= _progress(selector, until=pending - 250)
    while pending:
        pending -= _progress(selector, until=0)
    selector.close()
    return socks


def _progress(selector: selectors.BaseSelector, until: int) -> int:
    done = 0
    deadline = time.monotonic() + 60
    while len(selector.get_map()) > until:
        if time.monotonic() > deadline:
            raise TimeoutError("connections did not complete within 60 s")
        for key, mask in selector.select(1.0):
            sock, buffer = key.fileobj, key.data
            if mask & selectors.EVENT_WRITE:
                sock.send(REQUEST)
                selector.modify(sock, selectors.EVENT_READ, buffer)
            else:
                buffer[0] += sock.recv(4096)
                if buffer[0].endswith(b"Hello World!"):
                    selector.unregister(sock)
                    done += 1
    return done


def probe(address: tuple[str, int]) -> float:
    started = time.perf_counter()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.endswith(b"Hello World!"), data[:100]
    return (time.perf_counter() - started) * 1000


def measure(runtime: str, idle: int, probes: int) -> dict:
    proc, address = start_server(runtime, cpu=0)
    try:
        time.sleep(0.5)
        base = proc_status(proc.pid)
        started = time.monotonic()
        socks = open_idle(address, idle)
        opened_s = time.monotonic() - started
        time.sleep(1.0)  # let the server settle (worker pools shrink, buffers drain)
        loaded = proc_status(proc.pid)
        latencies = [probe(address) for _ in range(probes)]
        for sock in socks:
            sock.close()
        return {
            "runtime": runtime, "idle_connections": idle, "seconds_to_open": round(opened_s, 2),
            "threads_before": base["Threads"], "threads_with_idle": loaded["Threads"],
            "rss_kib_before": base["VmRSS"], "rss_kib_with_idle": loaded["VmRSS"],
            "rss_bytes_per_idle_connection": round((loaded["VmRSS"] - base["VmRSS"]) * 1024 / idle),
            "probe_ms": {"min": round(min(latencies), 2), "median": round(statistics.median(latencies), 2),
                         "max": round(max(latencies), 2)},
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--runtimes", default=",".join(available_runtimes()))
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    rows = []
    for runtime in args.runtimes.split(","):
        row = measure(runtime, args.idle, args.probes)
        rows.append(row)
        p = row["probe_ms"]
        print(f"{runtime:<10} idle={row['idle_connections']:>6} threads={row['threads_with_idle']:>6} "
              f"rss={row['rss_kib_with_idle'] / 1024:7.1f} MiB ({row['rss_bytes_per_idle_connection']} B/conn) "
              f"fresh client: median {p['median']} ms, max {p['max']} ms", flush=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = {"date": datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "cpus": os.cpu_count(), "rows": rows}
    for name in (f"idle_connections-{stamp}.json", "idle_connections-latest.json"):
        (ROOT / "results" / name).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
