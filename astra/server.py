"""``Server``: bind an address, pick a runtime, serve a handler.

::

    from astra import Server, Response

    def hello(request):
        return Response("Hello World!")

    Server.bind("localhost:3000").serve(hello)

``serve`` blocks until SIGINT or SIGTERM and then shuts down gracefully;
``start`` returns a :class:`ServerHandle` at once, for tests and embedding.
``Server.bind("unix:/run/app.sock")`` listens on a Unix domain socket
instead (or as well: ``Server.bind("127.0.0.1:3000", "unix:/run/app.sock")``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
from typing import Any

from protocols import Limits
from runtimes._memory import fix_mmap_threshold
from runtimes._gil import gil_enabled
from runtimes._listeners import bind_listeners
from runtimes.common import (
    Address,
    Config,
    Handler,
    UnixAddress,
    as_address,
    is_async_handler,
    logger,
)

from .registry import DEFAULT_RUNTIME, load_runtime

__all__ = ["Server", "ServerHandle"]

_LIMIT_FIELDS = {f.name for f in dataclasses.fields(Limits)}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config) if f.init} - {"host", "port", "limits"}


def parse_address(address: str) -> Address:
    """``"host:port"``, ``":port"``, ``"[::1]:port"`` -> (host, port); ``"unix:PATH"`` -> UnixAddress(PATH)."""
    if isinstance(unix := as_address(address), UnixAddress):
        return unix
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address!r} needs a port: HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Server:
    """A server waiting to be started: an address plus configuration.

    Keyword options are those of :class:`runtimes.common.Config` (timeouts,
    ``max_connections``, ``max_workers``, ``thread_stack_size``...) and of
    :class:`protocols.Limits` (``max_header_bytes``, ``max_body_bytes``...),
    plus ``runtime``: the name of the runtime to serve with.
    """

    def __init__(self, host: str | UnixAddress = "127.0.0.1", port: int = 3000, *, runtime: str = DEFAULT_RUNTIME,
                 **options: Any) -> None:
        unknown = set(options) - _LIMIT_FIELDS - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        limits = Limits(**{k: v for k, v in options.items() if k in _LIMIT_FIELDS})
        settings = {k: v for k, v in options.items() if k in _CONFIG_FIELDS}
        self.config = Config(host=host, port=port, limits=limits, **settings)
        self.runtime_name = runtime
        self.runtime_class = load_runtime(runtime)
        #: Sockets already listening for some of the addresses (bound by a parent
        #: process before it forked: ``--workers`` with a Unix socket), used as they are.
        self.inherited: dict[Address, socket.socket] = {}

    @classmethod
    def bind(cls, address: str, *more: str, **options: Any) -> Server:
        """``Server.bind("127.0.0.1:3000")``, ``Server.bind("unix:/run/app.sock")``; more addresses listen too."""
        first = parse_address(address)
        if more:
            options["also_bind"] = tuple(parse_address(a) for a in more)
        if isinstance(first, UnixAddress):
            return cls(first, 0, **options)
        return cls(*first, **options)

    def start(self, handler: Handler) -> ServerHandle:
        """Start serving in a background thread; return once connections are accepted."""
        if not callable(handler):
            raise TypeError("handler must be callable: handler(request) -> Response")
        if is_async_handler(handler) and not self.runtime_class.supports_async:
            raise TypeError(
                f"the {self.runtime_name!r} runtime runs blocking handlers; "
                f"{getattr(handler, '__name__', handler)!r} is 'async def'. "
                "Use an async runtime or a plain def."
            )
        fix_mmap_threshold(self.config.mmap_threshold)
        if self.config.switch_interval is not None:
            sys.setswitchinterval(self.config.switch_interval)  # process-wide, like the mmap threshold
            if not gil_enabled():
                logger.info("switch_interval has no effect: the GIL is off (free-threaded CPython)")
        listeners = bind_listeners(self.config, self.inherited)
        # Removed at shutdown: the files of the sockets bound here (an inherited one is its parent's).
        files = socket_files([sock for sock in listeners if sock not in self.inherited.values()])
        try:
            addresses = [_bound_address(sock) for sock in listeners]
            runtime = self.runtime_class(handler, self.config, listeners)
        except BaseException:
            for sock in listeners:
                sock.close()
            for file in files:
                file.remove()
            raise
        return ServerHandle(runtime, addresses, files)

    def serve(self, handler: Handler) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully."""
        handle = self.start(handler)
        stop_requested = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop_requested.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop_requested.wait(0.1) and handle.running:
                pass
        finally:
            handle.shutdown()
            for sig, old in previous.items():
                signal.signal(sig, old)


@dataclasses.dataclass(frozen=True)
class SocketFile:
    """A Unix socket's file as this server made it: removed at shutdown only if it is still that file."""

    path: str
    device: int
    inode: int

    def remove(self) -> None:
        """Delete the file, unless another server has replaced it since (a new socket is a new inode)."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == (self.device, self.inode):
                os.unlink(self.path)
        except OSError:
            pass


def socket_files(listeners: list[socket.socket]) -> list[SocketFile]:
    """The files of the Unix sockets among ``listeners``, to remove when the server stops."""
    files = []
    for sock in listeners:
        if sock.family == socket.AF_UNIX:
            path = sock.getsockname()
            if isinstance(path, str) and path:  # not an abstract (bytes) address
                st = os.lstat(path)
                files.append(SocketFile(path, st.st_dev, st.st_ino))
    return files


def _bound_address(sock: socket.socket) -> Address:
    """Where a listener listens: (host, port) with the port the OS picked, or its Unix socket."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return UnixAddress(name)
    return (name[0], name[1])


class ServerHandle:
    """A running server: its bound ``address``, ``url``, ``stats()`` and ``shutdown()``.

    ``address`` and ``addresses`` are (host, port) pairs, or ``UnixAddress``
    for Unix sockets, whose files are removed once the server has stopped.
    """

    def __init__(self, runtime: Any, addresses: list[Address], files: list[SocketFile] = ()) -> None:
        self.runtime = runtime
        self.addresses = addresses
        self.address = self.addresses[0]
        self._socket_files = list(files)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"astra-{runtime.name}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self.runtime.serve(self._ready.set)
        except BaseException as exc:  # surfaced to start() if it happened before ready
            self._error = exc
            self._ready.set()
            raise
        finally:
            for file in self._socket_files:  # the listeners are closed: nobody can connect any more
                file.remove()

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """``http://host:port`` (``https://`` with TLS) per TCP address; ``unix:PATH`` for a Unix socket."""
        scheme = "https" if self.runtime.config.tls is not None else "http"
        return [str(a) if isinstance(a, UnixAddress) else f"{scheme}://{'[' + a[0] + ']' if ':' in a[0] else a[0]}"
                f":{a[1]}" for a in self.addresses]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        return self.runtime.stats()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting, finish in-flight requests, close idle connections.

        Waits up to ``timeout`` seconds (default: the server's
        shutdown_timeout plus a grace second) and returns True if the
        server had stopped by then.
        """
        self.runtime.stop()
        if timeout is None:
            timeout = self.runtime.config.shutdown_timeout + 1.0
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
