"""``python -m astra MODULE:ATTR --bind HOST:PORT --runtime NAME``"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from .runtimes import DEFAULT_RUNTIME, available_runtimes
from .server import Server

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
    p.add_argument("--bind", default="127.0.0.1:3000", help="HOST:PORT (port 0 picks one)")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=available_runtimes())
    p.add_argument("--max-connections", type=int)
    p.add_argument("--max-workers", type=int, help="worker threads at most (pool runtimes)")
    p.add_argument("--worker-keep-alive", type=float, help="seconds an idle worker lingers")
    p.add_argument("--max-queued-requests", type=int, help="requests waiting for a worker before 503")
    p.add_argument("--blocking-handlers", choices=["thread", "inline"],
                   help="event-loop runtimes: run blocking handlers on threads (default) or on the loop")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], help="the asyncio runtime's event loop")
    p.add_argument("--async-streams", choices=["native", "anyio"],
                   help="the asyncio runtime's streams (native asyncio.Protocol, or anyio's)")
    p.add_argument("--thread-stack-size", type=int, help="bytes per thread stack")
    p.add_argument("--header-timeout", type=float)
    p.add_argument("--keep-alive-timeout", type=float)
    p.add_argument("--io-timeout", type=float)
    p.add_argument("--shutdown-timeout", type=float)
    p.add_argument("--max-header-bytes", type=int)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--backlog", type=int)
    p.add_argument("--reuse-port", action="store_true", default=None,
                   help="SO_REUSEPORT: let several processes share the port")
    p.add_argument("--stats-file", help="append the runtime's counters as JSON lines to this file")
    p.add_argument("--stats-interval", type=float, default=1.0, help="seconds between stats lines")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    handler = load_handler(args.handler)
    options = {
        name: value for name, value in vars(args).items()
        if name not in ("handler", "bind", "runtime", "log_level", "stats_file", "stats_interval")
        and value is not None
    }
    server = Server.bind(args.bind, runtime=args.runtime, **options)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    handle = server.start(handler)
    print(f"listening on {handle.url}", flush=True)
    stats = StatsWriter(handle, args.stats_file, args.stats_interval) if args.stats_file else None
    while not stop.wait(0.1):
        if not handle.running:
            return 1
        if stats:
            stats.maybe_write()
    clean = handle.shutdown()
    if stats:
        stats.write()
    return 0 if clean else 1


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
