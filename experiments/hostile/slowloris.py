"""Slow clients against every runtime, directly and behind nginx: who keeps serving?

``python -m experiments.hostile.slowloris [--runtimes ...] [--modes headers,body,read]
[--proxies direct,nginx,nginx-unbuffered] [--header-timeouts 10,60] [--seconds 15]
[--connections 2000] [-o results/slowloris.json]``

For each runtime, attack mode and topology (the server alone, or nginx in
front as a reverse proxy, buffering or not), a fresh server is started
(pinned to CPU 0) and, for ``--seconds``:

- ``slowhttptest`` (Debian's package) opens ``--connections`` slow
  connections: ``headers`` sends a request head a line every few seconds
  (Slowloris, ``-H``), ``body`` a POST body the same way (``-B``), ``read``
  asks for a large response and reads it a few bytes at a time (``-X``);
- a probe (this module, ``--probe``) plays a normal visitor: a new
  connection and a ``GET /`` every 100 ms, 5 s timeout, recording success
  and latency;
- the server's (and nginx's) peak RSS, peak threads and CPU are sampled
  from ``/proc``, and so is the kernel's memory for all TCP sockets
  (``/proc/net/sockstat``, against ``net.ipv4.tcp_mem``'s pressure
  threshold): what holding the slow clients costs, and who pays.

The variables:

- each runtime's header timeout: the first of ``--header-timeouts`` is used
  everywhere; each further one is run for the slow-headers attack on the
  server alone (the default 60 s outlasts the attack: the guard is off);
- nginx's buffering: ``nginx`` reads whole request bodies before passing them
  on (``proxy_request_buffering on``) and takes whole responses from the
  server at once (``proxy_buffering on``), so a slow client costs nginx a few
  kilobytes instead of costing the server a connection; ``nginx-unbuffered``
  turns both off, so nginx streams bodies and responses through at the
  client's pace. (nginx always reads the request head itself.)

nginx runs from a configuration written to a temporary directory, on
loopback, pinned with the load tools to CPU 1. Missing tools are installed
from Debian's packages when possible, else named.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from ..harness.plan import variant
from ..harness.servers import CostSampler, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
MODES = {"headers": "-H", "body": "-B", "read": "-X"}
PROXIES = ("direct", "nginx", "nginx-unbuffered")
SERVER_CPU, CLIENT_CPU = "0", "1"
APP = "experiments.apps.slow:app"

NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_header_timeout 10s;
    client_body_timeout 10s;
    send_timeout 10s;
    keepalive_timeout 15s;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering {buffering};
            proxy_request_buffering {buffering};
        }}
    }}
}}
"""


def ensure_tool(command: str, package: str) -> str | None:
    """The path of ``command``, installing Debian's ``package`` if allowed; None if impossible."""
    found = shutil.which(command) or (f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which(command) or (f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None)


# The probe: a normal visitor ----------------------------------------------------------

def probe(port: int, seconds: float, interval: float = 0.1, timeout: float = 5.0) -> dict:
    latencies, failures, kinds = [], 0, {}
    deadline = time.monotonic() + seconds
    request = b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                    if time.monotonic() - started > timeout:
                        raise TimeoutError
            if not data.startswith(b"HTTP/1.1 200"):
                raise ValueError(data[:40].decode("latin-1", "replace") or "empty reply")
            latencies.append(time.monotonic() - started)
        except (OSError, ValueError) as exc:
            failures += 1
            kind = type(exc).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n + failures, "succeeded": n, "failed": failures, "failures": kinds,
        "success_rate": n / (n + failures) if n + failures else None,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "max_ms": latencies[-1] * 1000 if n else None,
        "mean_ms": statistics.fmean(latencies) * 1000 if n else None,
    }


class KernelTcpMemory:
    """Peak pages the kernel holds for TCP sockets, machine-wide, while running.

    Slow readers leave responses in the kernel's send queues; past
    ``tcp_mem``'s pressure threshold the kernel squeezes every socket's
    buffers, the visitor's included, whatever the server's design.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak_pages = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def pages() -> int:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("mem") + 1])
        return 0

    @staticmethod
    def limits() -> dict:
        """net.ipv4.tcp_mem: the low, pressure and high thresholds, in pages."""
        low, pressure, high = (int(v) for v in Path("/proc/sys/net/ipv4/tcp_mem").read_text().split())
        return {"low": low, "pressure": pressure, "high": high, "page_bytes": os.sysconf("SC_PAGE_SIZE")}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_pages = max(self.peak_pages, self.pages())

    def __enter__(self) -> "KernelTcpMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# One measurement -----------------------------------------------------------------------

def slowhttptest_summary(csv_path: Path) -> dict:
    """Peak and final connection states from slowhttptest's CSV (-g -o)."""
    if not csv_path.exists():
        return {}
    with open(csv_path) as f:
        rows = [{k.strip().lower(): v for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows:
        return {}
    connected = [int(r.get("connected") or 0) for r in rows]
    return {"peak_connected": max(connected), "final_connected": connected[-1],
            "closed": int(rows[-1].get("closed") or 0), "seconds": len(rows)}


def measure(runtime: str, mode: str, proxy: str, header_timeout: float, args, tools: dict, workdir: Path) -> dict:
    server_port = free_port()
    name, workers = variant(runtime)  # pinned~1000: pinned with --max-workers 1000
    argv = [sys.executable, "-m", "astra", APP, "--runtime", name, "--bind", f"127.0.0.1:{server_port}",
            "--header-timeout", str(header_timeout), "--http1-parser", args.http1_parser,
            *(["--max-workers", str(workers)] if workers else [])]
    label = f"{runtime}-{mode}-{proxy}-{header_timeout:g}s"
    result = {"runtime": runtime, "mode": mode, "proxy": None if proxy == "direct" else "nginx",
              "buffering": None if proxy == "direct" else proxy == "nginx",
              "connections": args.connections, "seconds": args.seconds, "header_timeout_s": header_timeout}
    nginx = None
    with open(workdir / f"{label}.log", "w+") as log:
        server = ServerProcess(argv, cpus=[int(SERVER_CPU)], log=log, port=server_port)
        try:
            server.wait_ready()
            port = server_port
            if proxy != "direct":
                nginx, port = _start_nginx(tools, workdir, server_port, result["buffering"], log)
            costs = {"server": CostSampler([server.proc.pid])}
            if nginx is not None:
                costs["nginx"] = CostSampler([nginx.pid])
            for sampler in costs.values():
                sampler.start()
            prefix = workdir / f"slow-{label}"
            slow = _start_attack(tools, mode, port, args, prefix)
            time.sleep(min(6.0, args.seconds / 3))  # let the slow connections pile up first
            result["probe"], result["kernel_tcp_peak_pages"] = _probe_during(slow, port, args)
            result["slowhttptest"] = slowhttptest_summary(prefix.with_suffix(".csv"))
            for who, sampler in costs.items():
                cost = sampler.stop(0)
                result[f"{who}_cost"] = {k: cost[k] for k in ("cpu_s", "baseline_rss_kib", "peak_rss_kib", "peak_threads")}
            result["server_alive"] = server.proc.poll() is None
        except Exception as exc:  # one failed measurement must not sink the others
            result["error"] = str(exc)
        finally:
            if nginx is not None:
                nginx.terminate()
                try:
                    nginx.wait(10)
                except subprocess.TimeoutExpired:
                    nginx.kill()
            server.stop()
    return result


def _start_nginx(tools: dict, workdir: Path, upstream: int, buffering: bool, log) -> tuple[subprocess.Popen, int]:
    """nginx in front of the server, on the client's core; returns it and the port it listens on."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="astra-nginx-", dir=workdir))
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream, buffering="on" if buffering else "off",
                                      user="user root;\n" if os.geteuid() == 0 else ""))
    nginx = subprocess.Popen(["taskset", "-c", CLIENT_CPU, tools["nginx"], "-c", str(conf), "-p", str(tmp)],
                             stdout=log, stderr=log)
    _wait_port(port)
    return nginx, port


def _start_attack(tools: dict, mode: str, port: int, args, prefix: Path) -> subprocess.Popen:
    """slowhttptest against the port, writing its per-second CSV to ``prefix``.csv."""
    path = "/big" if mode == "read" else "/"
    # The opening rate fills the attack in about 5 s, before the visitor starts.
    rate = max(200, args.connections // 5)
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CPU, tools["slowhttptest"], MODES[mode], "-c", str(args.connections),
         "-r", str(rate), "-i", "5", "-l", str(int(args.seconds)), "-s", "65536", "-p", "5",
         "-g", "-o", str(prefix), "-u", f"http://127.0.0.1:{port}{path}"]
        + (["-k", "2", "-n", "5", "-w", "8", "-y", "16", "-z", "4"] if mode == "read" else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _probe_during(slow: subprocess.Popen, port: int, args) -> tuple[dict, int]:
    """The ordinary visitor's experience while the attack runs, and the kernel's peak TCP memory (pages)."""
    with KernelTcpMemory() as kernel:
        probe_out = subprocess.run(
            ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", "experiments.hostile.slowloris", "--probe", str(port),
             "--seconds", str(max(1.0, args.seconds - 7))], capture_output=True, text=True, cwd=ROOT,
            timeout=args.seconds + 60)
        probe = json.loads(probe_out.stdout) if probe_out.returncode == 0 else {"error": probe_out.stderr[-300:]}
        try:
            slow.wait(timeout=args.seconds + 60)
        except subprocess.TimeoutExpired:
            slow.kill()
    return probe, kernel.peak_pages


def cases(args, proxies: list[str]) -> list[tuple[str, str, str, float]]:
    """(runtime, mode, proxy, header timeout): every mode and topology at the first timeout, then the
    slow-headers attack on the server alone at each other timeout."""
    first, *others = args.header_timeouts
    out = []
    for runtime in args.runtimes.split(","):
        out += [(runtime, mode, proxy, first) for mode in args.modes.split(",") for proxy in proxies]
        if "headers" in args.modes.split(","):
            out += [(runtime, "headers", "direct", timeout) for timeout in others]
    return out


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtimes", default="threaded,hybrid,asyncio,trio")
    p.add_argument("--http1-parser", default="h11", help="the servers' HTTP/1 parser (default h11)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--proxies", default=",".join(PROXIES), help="direct, nginx (buffering), nginx-unbuffered")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--header-timeouts", type=lambda v: [float(x) for x in v.split(",")], default=[10.0, 60.0],
                   help="seconds; the first for every case, the others for slow headers on the server alone")
    p.add_argument("--dry-run", action="store_true", help="list the cases and stop")
    p.add_argument("--probe", type=int, metavar="PORT", help="(internal) be the normal visitor for --seconds")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.seconds)))
        return 0
    proxies = args.proxies.split(",")
    unknown = set(proxies) - set(PROXIES)
    if unknown:
        p.error(f"unknown --proxies {', '.join(sorted(unknown))}: choose from {', '.join(PROXIES)}")
    if args.dry_run:
        for case in cases(args, proxies):
            print("{} {} {} header timeout {:g} s".format(*case))
        return 0
    wants_nginx = any(proxy != "direct" for proxy in proxies)
    tools = {"slowhttptest": ensure_tool("slowhttptest", "slowhttptest"),
             "nginx": ensure_tool("nginx", "nginx") if wants_nginx else None}
    if tools["slowhttptest"] is None:
        print("slowhttptest is missing: install Debian's `slowhttptest` package", file=sys.stderr)
        return 2
    if wants_nginx and tools["nginx"] is None:
        print("note: nginx is missing (Debian's `nginx` package): measuring the servers alone")
        proxies = ["direct"]
    results, tcp_mem = [], KernelTcpMemory.limits()
    with tempfile.TemporaryDirectory(prefix="astra-slowloris-") as tmp:
        for runtime, mode, proxy, timeout in cases(args, proxies):
            r = measure(runtime, mode, proxy, timeout, args, tools, Path(tmp))
            results.append(r)
            pr = r.get("probe") or {}
            rate = pr.get("success_rate")
            cost = r.get("server_cost") or {}
            print(f"{runtime:<9} {mode:<8} {proxy:<16} {timeout:>4g}s probe success "
                  f"{'-' if rate is None else f'{rate:.0%}'}, p99 {pr.get('p99_ms') or 0:,.0f} ms; slow connections "
                  f"held {(r.get('slowhttptest') or {}).get('peak_connected', '-')}; server peak "
                  f"{cost.get('peak_rss_kib', 0) / 1024:,.0f} MiB, {cost.get('peak_threads', '-')} threads; kernel TCP "
                  f"{r.get('kernel_tcp_peak_pages', 0) / tcp_mem['pressure']:.0%} of pressure"
                  + (f"; error: {r['error']}" if r.get("error") else ""), flush=True)
    doc = {"when": datetime.now().isoformat(timespec="seconds"), "tools": {k: bool(v) for k, v in tools.items()},
           "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "connections": args.connections,
           "header_timeouts_s": args.header_timeouts, "kernel_tcp_mem_pages": tcp_mem, "results": results}
    if args.output:
        args.output.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
