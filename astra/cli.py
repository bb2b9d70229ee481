"""``python -m astra MODULE:ATTR --bind HOST:PORT --runtime NAME``

Behind a proxy on the same machine, the usual set-up is::

    python -m astra app:handler --bind unix:/run/astra.sock \
        --forwarded-allow-ips unix --access-log --root-path /app
"""

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
from protocols.tls import ClientCertificates, TLSSettings
from runtimes._lifecycle import access_logger
from runtimes._listeners import bind_unix
from runtimes.common import Loop, UnixAddress, is_async_handler

from .asgi import LifespanFailed, LifespanMode
from .interfaces import Interface, adapt
from .registry import DEFAULT_RUNTIME, available_runtimes, load_runtime
from .server import Server, parse_address, socket_files

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
    for add in (_application_options, _listening_options, _runtime_options, _limit_options, _timeout_options,
                _observability_options, _tls_options):
        add(p)
    return p


def _application_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("handler", help="MODULE:ATTR of a handler(request) -> Response, a WSGI or an ASGI application")
    g = p.add_argument_group("application", "what is served and how it is told apart")
    g.add_argument("--interface", type=Interface, choices=list(Interface), default=Interface.AUTO,
                   help="what MODULE:ATTR is: an astra handler, a WSGI or an ASGI application, or auto "
                        "(told apart by its signature; the default, and it says what it chose)")
    g.add_argument("--lifespan", type=LifespanMode, choices=list(LifespanMode), default=LifespanMode.AUTO,
                   help="ASGI: run the application's lifespan startup and shutdown (auto: if it takes part)")
    g.add_argument("--root-path", help="the path prefix a proxy serves the application under (WSGI SCRIPT_NAME, "
                                       "ASGI root_path)")


def _listening_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("listening", "where connections come from")
    g.add_argument("--bind", action="append",
                   help="HOST:PORT (port 0 picks one) or unix:PATH (a Unix domain socket); repeat to listen on several")
    g.add_argument("--unix-socket-mode", type=_octal,
                   help="permissions of a unix:PATH socket's file, in octal (default 666: any local user may "
                        "connect, nginx's worker included; 660 and a shared group to be stricter)")
    g.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the address(es): TCP ports with SO_REUSEPORT, a Unix socket "
                        "bound once and inherited (default 1)")
    g.add_argument("--forwarded-allow-ips",
                   help="proxies whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers are believed: "
                        "comma-separated IPs and networks, 'unix' (Unix-socket connections), '*' (everyone); "
                        "default: nobody's")
    g.add_argument("--backlog", type=int)
    g.add_argument("--reuse-port", action="store_true", default=None,
                   help="SO_REUSEPORT: let several processes share the port")


def _runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime", "how requests are run: the runtime, protocols, parser and threads")
    g.add_argument("--runtime", choices=available_runtimes(),
                   help=f"default: {DEFAULT_RUNTIME}, or asyncio for an ASGI application or async def handler")
    g.add_argument("--http", choices=["auto", "1", "2"],
                   help="protocols: auto (HTTP/1.1 plus HTTP/2 by preface or h2c Upgrade), 1 or 2 only")
    g.add_argument("--http1-parser", type=Http1Parser, choices=list(Http1Parser),
                   help="HTTP/1.1 request parser: h11, httptools (llhttp: pip install 'astra[fast]') "
                        "or auto (httptools when installed, the default)")
    g.add_argument("--max-workers", type=int, help="worker threads at most (pool runtimes)")
    g.add_argument("--worker-keep-alive", type=float, help="seconds an idle worker lingers")
    g.add_argument("--blocking-handlers", choices=["thread", "inline"],
                   help="event-loop runtimes: run blocking handlers on threads (default) or on the loop")
    g.add_argument("--loop", type=Loop, choices=list(Loop),
                   help="the asyncio runtime's event loop: asyncio, uvloop (pip install 'astra[fast]') "
                        "or auto (uvloop when installed; the default)")
    g.add_argument("--async-streams", choices=["native", "anyio"],
                   help="the asyncio runtime's streams (native asyncio.Protocol, or anyio's)")
    g.add_argument("--thread-stack-size", type=int, help="bytes per thread stack")
    g.add_argument("--mmap-threshold", type=int,
                   help="freed blocks this large go back to the OS at once (glibc; default 131072, 0: leave malloc alone)")
    g.add_argument("--switch-interval", type=float,
                   help="sys.setswitchinterval: seconds a thread may hold the GIL while others wait "
                        "(default: CPython's 0.005, stretched by the threaded runtime as its threads grow)")


def _limit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits", "how much one client or the whole server may hold")
    g.add_argument("--max-connections", type=int)
    g.add_argument("--max-concurrent-streams", type=int, help="HTTP/2 streams in progress per connection")
    g.add_argument("--stream-window", type=int, help="HTTP/2 initial stream flow-control window (bytes)")
    g.add_argument("--connection-window", type=int, help="HTTP/2 connection flow-control window (bytes)")
    g.add_argument("--max-frame-size", type=int, help="HTTP/2 largest frame accepted (bytes)")
    g.add_argument("--max-client-resets", type=int, help="HTTP/2 stream resets tolerated (rapid-reset guard)")
    g.add_argument("--max-queue-wait", type=float,
                   help="seconds the oldest queued request may wait before new ones get 503 (default 1)")
    g.add_argument("--max-queued-requests", type=int, help="hard cap on requests waiting for a worker (default 16384)")
    g.add_argument("--max-upload-workers", type=int,
                   help="workers that may wait on clients' large request bodies at once (default: half of --max-workers)")
    g.add_argument("--max-header-bytes", type=int)
    g.add_argument("--max-body-bytes", type=int)


def _timeout_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timeouts", "how long a client may stay silent or slow")
    g.add_argument("--header-timeout", type=float)
    g.add_argument("--keep-alive-timeout", type=float)
    g.add_argument("--io-timeout", type=float, help="longest silence while reading a body or sending a response")
    g.add_argument("--min-send-rate", type=float,
                   help="bytes/s a client must read a response at, on top of --io-timeout (default 1024)")
    g.add_argument("--min-receive-rate", type=float,
                   help="bytes/s a client must send a request body at, on top of --io-timeout (default 1024)")
    g.add_argument("--shutdown-timeout", type=float)


def _observability_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("observability", "logs and counters")
    g.add_argument("--access-log", action="store_true", default=None,
                   help="a line per response (combined log format plus microseconds) to stderr")
    g.add_argument("--stats-file", help="append the runtime's counters as JSON lines to this file")
    g.add_argument("--stats-interval", type=float, default=1.0, help="seconds between stats lines")
    g.add_argument("--log-level", default="warning")


def _tls_options(p: argparse.ArgumentParser) -> None:
    tls = p.add_argument_group("TLS", "serve HTTPS (HTTP/2 by ALPN) when --certfile is given")
    tls.add_argument("--certfile", help="the server's certificate chain (PEM), with its key unless --keyfile")
    tls.add_argument("--keyfile", help="the private key (PEM), if not in --certfile")
    tls.add_argument("--keyfile-password", help="the password of an encrypted private key")
    tls.add_argument("--ca-certs", help="authorities whose client certificates are accepted (PEM)")
    tls.add_argument("--client-certs", type=ClientCertificates, choices=list(ClientCertificates),
                     help="ask clients for a certificate signed by --ca-certs: none (default), optional, required")
    tls.add_argument("--tls-max-handshakes", type=int,
                     help="TLS handshakes in progress at once; connections past it are closed (default 1024)")


_TLS_OPTIONS = {"certfile": "certfile", "keyfile": "keyfile", "keyfile_password": "password",
                "ca_certs": "ca_certs", "client_certs": "client_certificates",
                "tls_max_handshakes": "max_handshakes"}


def tls_settings(args: argparse.Namespace) -> TLSSettings | None:
    """The TLS options, gathered (and removed from ``args``); None without --certfile."""
    given = {field: getattr(args, name) for name, field in _TLS_OPTIONS.items() if getattr(args, name) is not None}
    for name in _TLS_OPTIONS:
        delattr(args, name)
    if not given:
        return None
    if "certfile" not in given:
        raise SystemExit(f"astra: {', '.join(sorted(given))} need --certfile")
    try:
        return TLSSettings(**given)
    except (OSError, ValueError) as exc:  # a missing file, a wrong password, a key that is not the certificate's
        raise SystemExit(f"astra: TLS: {exc}") from None


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 666 or 0o660") from None


def configure_logging(level: str, access_log: bool) -> None:
    """The server's own messages at ``level``; access lines, when asked for, whatever that level.

    Access lines go to stderr bare (the line carries its own time) and do
    not pass through the root logger, so ``--log-level error`` does not hide them.
    """
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if access_log:
        lines = logging.StreamHandler()
        lines.setFormatter(logging.Formatter("%(message)s"))
        access_logger.addHandler(lines)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, bool(args.access_log))
    handler = serve_as(load_handler(args.handler), args)
    tls = tls_settings(args)
    options = {
        name: value for name, value in vars(args).items()
        if name not in ("handler", "bind", "runtime", "log_level", "stats_file", "stats_interval", "workers",
                        "interface", "lifespan")
        and value is not None
    }
    if tls is not None:
        options["tls"] = tls
    binds = args.bind or ["127.0.0.1:3000"]
    try:
        server = Server.bind(*binds, runtime=args.runtime, **options)  # settings checked before any fork
    except ValueError as exc:
        raise SystemExit(f"astra: {exc}") from None
    if args.workers > 1:
        return run_workers(args, server, binds, handler, options)
    return serve_until_signalled(server, handler, args.stats_file, args.stats_interval)


def serve_as(app, args):
    """The handler for what MODULE:ATTR named (``--interface``), and the runtime if none was given."""
    try:
        handler, chosen = adapt(app, args.interface, root_path=args.root_path or "",
                                multiprocess=args.workers > 1, lifespan=args.lifespan)
    except ValueError as exc:
        raise SystemExit(f"astra: {exc}") from None
    if args.interface is Interface.AUTO:
        print(f"serving {args.handler} as {'an astra handler' if chosen is Interface.ASTRA else chosen.name} "
              "(--interface auto)", file=sys.stderr)
    waits = chosen is Interface.ASGI or (chosen is Interface.ASTRA and is_async_handler(handler))
    if args.runtime is None:
        args.runtime = "asyncio" if waits else DEFAULT_RUNTIME
    elif waits and not load_runtime(args.runtime).supports_async:
        raise SystemExit(f"astra: {args.handler} must be awaited ({chosen.value}): the {args.runtime!r} "
                         "runtime runs blocking handlers only; use --runtime asyncio or trio")
    return handler


def serve_until_signalled(server: Server, handler, stats_file: str | None, stats_interval: float) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        handle = server.start(handler)
    except (OSError, ValueError) as exc:  # the address is taken, not ours to take, ...
        raise SystemExit(f"astra: cannot listen: {exc}") from None
    except LifespanFailed as exc:  # the application's own startup failed
        raise SystemExit(f"astra: {exc}") from None
    for url in handle.urls:
        # One write per line: --workers share the stream, and two writes each could interleave.
        print(f"listening on {url}\n", end="", flush=True)
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


def run_workers(args, checked: Server, binds: list[str], handler, options: dict) -> int:
    """``--workers N``: N processes, each its own server, sharing the addresses.

    TCP addresses are shared with SO_REUSEPORT, and the kernel spreads new
    connections over the processes; port 0 is resolved here first, so
    every worker binds the same port. A Unix socket cannot be bound twice:
    it is bound here, once, and every worker inherits it and accepts on it
    (the file is removed when the last worker has stopped). Workers are
    forked after the handler is imported (no threads exist yet); each writes
    its counters to ``STATS_FILE.<i>``. SIGINT/SIGTERM are passed on, and the
    parent exits 0 only if every worker shut down cleanly.
    """
    addresses = [parse_address(b) for b in binds]
    held = []
    shared: dict[UnixAddress, socket.socket] = {}
    try:
        for i, address in enumerate(addresses):
            if isinstance(address, UnixAddress):
                shared[address] = bind_unix(address.path, checked.config.unix_socket_mode, checked.config.backlog)
            elif address[1] == 0:  # bound without listening: reserves the port, receives nothing
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((address[0], 0))
                held.append(sock)
                addresses[i] = (address[0], sock.getsockname()[1])
    except OSError as exc:
        raise SystemExit(f"astra: cannot listen: {exc}") from None
    files = socket_files(list(shared.values()))
    options["reuse_port"] = True
    children = []
    for i in range(args.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            for sock in held:
                sock.close()
            first, *more = addresses
            server = Server(*((first, 0) if isinstance(first, UnixAddress) else first), runtime=args.runtime,
                            also_bind=tuple(more), **options)
            server.inherited = dict(shared)
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
    for sock in (*held, *shared.values()):
        sock.close()
    for file in files:
        file.remove()
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
