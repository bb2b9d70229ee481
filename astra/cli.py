"""``python -m astra MODULE:ATTR --bind HOST:PORT --runtime NAME``"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

from protocols.h1_parser import Http1Parser
from runtimes.common import Loop

from .registry import DEFAULT_RUNTIME, available_runtimes
from .server import Server, parse_address

__all__ = ["main"]


def load_handler(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"handler must be given as MODULE:ATTR, not {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m astra", description="Serve a handler with astra.")
    p.add_argument("handler", help="MODULE:ATTR of a callable handler(request) -> Response")
    p.add_argument("--bind", action="append", help="HOST:PORT (port 0 picks one); repeat to listen on several")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the address(es) with SO_REUSEPORT (default 1)")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=available_runtimes())
    p.add_argument("--http", choices=["auto", "1", "2"],
                   help="protocols: auto (HTTP/1.1 plus HTTP/2 by preface or h2c Upgrade), 1 or 2 only")
    p.add_argument("--http1-parser", type=Http1Parser, choices=list(Http1Parser),
                   help="HTTP/1.1 request parser: h11, httptools (llhttp: pip install 'astra[fast]') "
                        "or auto (httptools when installed, the default)")
    p.add_argument("--max-connections", type=int)
    p.add_argument("--max-concurrent-streams", type=int, help="HTTP/2 streams in progress per connection")
    p.add_argument("--stream-window", type=int, help="HTTP/2 initial stream flow-control window (bytes)")
    p.add_argument("--connection-window", type=int, help="HTTP/2 connection flow-control window (bytes)")
    p.add_argument("--max-frame-size", type=int, help="HTTP/2 largest frame accepted (bytes)")
    p.add_argument("--max-client-resets", type=int, help="HTTP/2 stream resets tolerated (rapid-reset guard)")
    p.add_argument("--max-workers", type=int, help="worker threads at most (pool runtimes)")
    p.add_argument("--worker-keep-alive", type=float, help="seconds an idle worker lingers")
    p.add_argument("--max-queue-wait", type=float,
                   help="seconds the oldest queued request may wait before new ones get 503 (default 1)")
    p.add_argument("--max-queued-requests", type=int, help="hard cap on requests waiting for a worker (default 16384)")
    p.add_argument("--max-upload-workers", type=int,
                   help="workers that may wait on clients' large request bodies at once (default: half of --max-workers)")
    p.add_argument("--blocking-handlers", choices=["thread", "inline"],
                   help="event-loop runtimes: run blocking handlers on threads (default) or on the loop")
    p.add_argument("--loop", type=Loop, choices=list(Loop),
                   help="the asyncio runtime's event loop: asyncio, uvloop (pip install 'astra[fast]') "
                        "or auto (uvloop when installed; the default)")
    p.add_argument("--async-streams", choices=["native", "anyio"],
                   help="the asyncio runtime's streams (native asyncio.Protocol, or anyio's)")
    p.add_argument("--thread-stack-size", type=int, help="bytes per thread stack")
    p.add_argument("--mmap-threshold", type=int,
                   help="freed blocks this large go back to the OS at once (glibc; default 131072, 0: leave malloc alone)")
    p.add_argument("--header-timeout", type=float)
    p.add_argument("--keep-alive-timeout", type=float)
    p.add_argument("--io-timeout", type=float, help="longest silence while reading a body or sending a response")
    p.add_argument("--min-send-rate", type=float,
                   help="bytes/s a client must read a response at, on top of --io-timeout (default 1024)")
    p.add_argument("--min-receive-rate", type=float,
                   help="bytes/s a client must send a request body at, on top of --io-timeout (default 1024)")
    p.add_argument("--shutdown-timeout", type=float)
    p.add_argument("--max-header-bytes", type=int)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--backlog", type=int)
    p.add_argument("--reuse-port", action="store_true", default=None,
                   help="SO_REUSEPORT: let several processes share the port")
    p.add_argument("--stats-file", help="append the runtime's counters as JSON lines to this file")
    p.add_argument("--stats-interval", type=float, default=1.0, help="seconds between stats lines")
    p.add_argument("--switch-interval", type=float,
                   help="sys.setswitchinterval: seconds a thread may hold the GIL while others wait "
                        "(default: CPython's 0.005, stretched by the threaded runtime as its threads grow)")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    handler = load_handler(args.handler)
    options = {
        name: value for name, value in vars(args).items()
        if name not in ("handler", "bind", "runtime", "log_level", "stats_file", "stats_interval", "workers")
        and value is not None
    }
    binds = args.bind or ["127.0.0.1:3000"]
    if args.workers > 1:
        return run_workers(args, binds, handler, options)
    server = Server.bind(*binds, runtime=args.runtime, **options)
    return serve_until_signalled(server, handler, args.stats_file, args.stats_interval)


def serve_until_signalled(server: Server, handler, stats_file: str | None, stats_interval: float) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    handle = server.start(handler)
    for url in handle.urls:
        print(f"listening on {url}", flush=True)
    stats = StatsWriter(handle, stats_file, stats_interval) if stats_file else None
    while not stop.wait(0.1):
        if not handle.running:
            return 1
        if stats:
            stats.maybe_write()
    clean = handle.shutdown()
    if stats:
        stats.write()
    return 0 if clean else 1


def run_workers(args, binds: list[str], handler, options: dict) -> int:
    """``--workers N``: N processes, each its own server, sharing the addresses via SO_REUSEPORT.

    The kernel spreads new connections over the processes. Port 0 is
    resolved here first, so every worker binds the same port. Workers are
    forked after the handler is imported (no threads exist yet); each writes
    its counters to ``STATS_FILE.<i>``. SIGINT/SIGTERM are passed on, and the
    parent exits 0 only if every worker shut down cleanly.
    """
    addresses = [parse_address(b) for b in binds]
    held = []
    for i, (host, port) in enumerate(addresses):
        if port == 0:  # bound without listening: reserves the port, receives nothing
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, 0))
            held.append(sock)
            addresses[i] = (host, sock.getsockname()[1])
    options["reuse_port"] = True
    children = []
    for i in range(args.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            for sock in held:
                sock.close()
            server = Server(*addresses[0], runtime=args.runtime, also_bind=tuple(addresses[1:]), **options)
            stats_file = f"{args.stats_file}.{i}" if args.stats_file else None
            code = 1
            try:
                code = serve_until_signalled(server, handler, stats_file, args.stats_interval)
            finally:
                os._exit(code)
        children.append(pid)
    signal.signal(signal.SIGINT, lambda *_: _signal_all(children, signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: _signal_all(children, signal.SIGTERM))
    clean = True
    for pid in children:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        clean = clean and os.waitstatus_to_exitcode(status) == 0
    for sock in held:
        sock.close()
    return 0 if clean else 1


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class StatsWriter:
    """Appends ``{"time": ..., **handle.stats()}`` lines for the experiment harness."""

    def __init__(self, handle, path: str, interval: float) -> None:
        self.handle, self.path, self.interval = handle, path, interval
        self.next = 0.0

    def maybe_write(self) -> None:
        if time.monotonic() >= self.next:
            self.write()

    def write(self) -> None:
        self.next = time.monotonic() + self.interval
        line = json.dumps({"time": time.time(), **self.handle.stats()})
        with open(self.path, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
