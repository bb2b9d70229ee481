"""What every runtime shares: configuration, the listening socket, calling the handler.

A runtime is the part of the server that decides *how* connections wait: on
an OS thread each, on a selector plus worker threads, on an event loop. Each
lives in its own module and reads top to bottom; whatever two of them would
otherwise repeat lives here.
"""

from __future__ import annotations

import inspect
import logging
import os
import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocols import Limits, Request
from protocols.forwarded import TrustedProxies
from protocols.tls import TLSSession, TLSSettings

__all__ = [
    "LISTENER", "WAKE", "Address", "Config", "Handler", "Loop", "Runtime", "UnixAddress", "Waker",
    "discard_unread", "is_async_handler", "logger",
    "no_delay", "socket_address", "thread_count", "watch_listeners",
]

logger = logging.getLogger("astra")

Handler = Callable[[Request], Any]


class Loop(StrEnum):
    """The asyncio runtime's event loop (:attr:`Config.loop`, ``--loop``).

    A :class:`~enum.StrEnum`, so the plain strings (``"uvloop"``) work too.
    """

    AUTO = "auto"  #: uvloop when it can be imported, else asyncio's own
    ASYNCIO = "asyncio"  #: asyncio's own loop, in Python over ``selectors``
    UVLOOP = "uvloop"  #: libuv's, in C: ``pip install 'astra[fast]'``


#: The prefix that makes a bind address a Unix domain socket's path: ``unix:/run/app.sock``.
UNIX_PREFIX = "unix:"
#: The longest path a Unix socket may have on Linux: ``sun_path`` holds 108 bytes, NUL included.
MAX_UNIX_PATH = 107


@dataclass(frozen=True)
class UnixAddress:
    """A Unix domain socket to listen on, by its path (``--bind unix:PATH``)."""

    path: str

    def __str__(self) -> str:
        return UNIX_PREFIX + self.path


#: Where a server listens: (host, port) over TCP, or a Unix domain socket.
Address = tuple[str, int] | UnixAddress


def as_address(value: Any) -> Any:
    """``"unix:/x.sock"`` -> UnixAddress("/x.sock"); anything else as it is (the one place that
    reads the prefix: ``astra.server.parse_address`` asks here too)."""
    if isinstance(value, str) and value.startswith(UNIX_PREFIX):
        return UnixAddress(value[len(UNIX_PREFIX):])
    return value


class TLSEndpoint:
    """What a server's TLS connections share: the context, and the bound on handshakes in progress.

    A handshake is counted from the connection's arrival until it finishes
    (or the connection ends). Past ``max_handshakes`` a new connection gets
    no session, and its transport ends it before reading a byte. Thread-safe:
    the thread runtimes start sessions on many threads.
    """

    def __init__(self, context: ssl.SSLContext, max_handshakes: int) -> None:
        self.context = context
        self.max_handshakes = max_handshakes
        self.in_progress = 0
        self.refused = 0
        self._lock = threading.Lock()

    def start(self) -> TLSSession | None:
        """A new connection's session, or None when too many handshakes are in progress."""
        with self._lock:
            if self.in_progress >= self.max_handshakes:
                self.refused += 1
                return None
            self.in_progress += 1
        return TLSSession(self.context)

    def finished(self) -> None:
        """A handshake counted by :meth:`start` has ended, whichever way (once per session)."""
        with self._lock:
            self.in_progress -= 1


@dataclass(frozen=True)
class Config:
    """Everything a runtime needs to know besides the handler.

    Timeouts are in seconds. Defaults are meant for production, not for
    benchmarks: a benchmark that wants different ones says so.
    """

    #: The first address to listen on: a host (with ``port``), or a Unix
    #: socket (``UnixAddress``, or the text ``"unix:PATH"``; ``port`` is then unused).
    host: str | UnixAddress = "127.0.0.1"
    port: int = 3000
    #: More addresses to listen on besides the first: (host, port) pairs, e.g.
    #: other loopback addresses so that load generators aimed at each reach
    #: one server, and Unix sockets.
    also_bind: tuple[Address, ...] = ()
    #: Permissions of a Unix socket's file. Connecting needs write permission,
    #: so 0o666 lets any local user (nginx's worker among them) connect; a
    #: server that only one group's processes should reach says 0o660 and
    #: runs with that group.
    unix_socket_mode: int = 0o666
    limits: Limits = field(default_factory=Limits)
    #: Protocols served: "auto" (HTTP/1.1, and HTTP/2 for clients that open
    #: with its preface or ask for Upgrade: h2c), "1" or "2" only.
    http: str = "auto"
    #: A client must finish sending its request head within this time of
    #: starting it (or of connecting): the Slowloris guard. Past it: 408.
    header_timeout: float = 10.0
    #: How long an idle keep-alive connection waits for its next request.
    keep_alive_timeout: float = 15.0
    #: Longest silence while reading a request body, or while the client
    #: reads our response (a stalled reader holds a thread or a buffer).
    io_timeout: float = 30.0
    #: Slowest average rate (bytes/s) at which a client may take a response,
    #: on top of ``io_timeout``: sending n bytes may take io_timeout + n / rate
    #: seconds in all, so a reader that trickles cannot hold a connection forever.
    min_send_rate: float = 1024.0
    #: Slowest average rate (bytes/s) at which a client may send a request
    #: body, on top of ``io_timeout``: a body of n bytes may take io_timeout +
    #: n / rate in all, however its bytes are spaced (past it: 408).
    min_receive_rate: float = 1024.0
    #: Graceful shutdown waits this long for in-flight requests to finish.
    shutdown_timeout: float = 10.0
    #: Connections served at once; past it new ones get 503 and are closed.
    max_connections: int = 10_000
    backlog: int = 4096
    #: SO_REUSEPORT, so several server processes can share one port.
    reuse_port: bool = False
    #: Stack size for threads the runtime starts (None: the platform default,
    #: usually 8 MiB of address space, committed only as it is touched).
    thread_stack_size: int | None = None
    #: Worker threads (runtimes with a pool): the most alive at once, and how
    #: long an idle one lingers before it exits.
    max_workers: int = 15 * (os.cpu_count() or 1)
    worker_keep_alive: float = 6.0
    #: Pool runtimes shed load by queueing delay: a request arriving while the
    #: oldest one waiting for a worker has waited longer than this (seconds)
    #: gets 503 + Retry-After (HTTP/2: REFUSED_STREAM).
    max_queue_wait: float = 1.0
    #: A hard cap on requests waiting for a worker, a bound on the queue's
    #: memory; past it: 503 + Retry-After whatever their wait.
    max_queued_requests: int = 16384
    #: Workers that may wait on clients' request bodies at once (uploads too
    #: large to gather before the handler runs); 0: half of ``max_workers``.
    #: More such requests wait for a share, shed by ``max_queue_wait`` as well,
    #: so clients trickling uploads cannot take every worker.
    max_upload_workers: int = 0
    #: Blocks this large or larger are given back to the OS as soon as they are
    #: freed (glibc's mmap threshold, fixed instead of rising after each free:
    #: see runtimes/_memory.py); 0 leaves the allocator as it is. Process-wide.
    mmap_threshold: int = 128 * 1024
    #: sys.setswitchinterval for the process (seconds a thread may hold the GIL
    #: while others wait). None: CPython's own 5 ms, which the thread-per-connection
    #: runtime stretches when thousands of threads wait (see runtimes/_gil.py).
    switch_interval: float | None = None
    #: Event-loop runtimes: run blocking handlers on worker threads ("thread")
    #: or on the loop itself ("inline": fast if they never block).
    blocking_handlers: str = "thread"
    #: The asyncio runtime's loop (the other runtimes ignore it).
    loop: Loop = Loop.AUTO
    #: The asyncio runtime's streams: "native" (on asyncio.Protocol) or "anyio"
    #: (anyio's own, as the trio runtime uses), to measure what the edge costs.
    async_streams: str = "native"
    #: Proxies whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers
    #: are believed (``protocols.forwarded``): "127.0.0.1, 10.0.0.0/8, unix", "*".
    #: Empty: nobody's, and the headers stay plain headers.
    forwarded_allow_ips: TrustedProxies = field(default_factory=TrustedProxies)
    #: A line per response in the combined log format, to the "astra.access" logger at INFO.
    access_log: bool = False
    #: Where a proxy mounts the application ("/api"): WSGI's SCRIPT_NAME,
    #: ASGI's root_path. Read by the interface adapters; "" when served at the root.
    root_path: str = ""
    #: Serve HTTPS: the certificate, and what is asked of clients (``protocols.tls``). None: cleartext.
    tls: TLSSettings | None = None
    #: Made from ``tls`` once: where every connection's TLS session comes from.
    tls_endpoint: TLSEndpoint | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Wrong settings fail when the server is configured, not when it starts.
        object.__setattr__(self, "loop", Loop(self.loop))  # "uvloop" -> Loop.UVLOOP
        object.__setattr__(self, "host", as_address(self.host))
        object.__setattr__(self, "also_bind", tuple(as_address(a) for a in self.also_bind))
        object.__setattr__(self, "forwarded_allow_ips", TrustedProxies.parse(self.forwarded_allow_ips))
        if self.root_path and not self.root_path.startswith("/"):
            raise ValueError(f"root_path {self.root_path!r} must start with '/'")
        object.__setattr__(self, "root_path", self.root_path.rstrip("/"))  # "/api/" mounts at "/api"
        if self.tls is not None:
            object.__setattr__(self, "tls_endpoint", TLSEndpoint(self.tls.context(self.http), self.tls.max_handshakes))
        for address in self.addresses:
            if isinstance(address, UnixAddress):
                check_unix_path(address.path)
                proxies = self.forwarded_allow_ips
                if (proxies.unix or proxies.everyone) and self.unix_socket_mode & 0o002:
                    logger.warning("every local user may connect to %s (mode %o) and is trusted as a proxy "
                                   "(--forwarded-allow-ips): any of them can claim any client address; "
                                   "--unix-socket-mode 660 and a group shared with the proxy keep them out",
                                   address.path, self.unix_socket_mode)

    @property
    def addresses(self) -> tuple[Address, ...]:
        """Every address to listen on, the first one first."""
        first = self.host if isinstance(self.host, UnixAddress) else (self.host, self.port)
        return (first, *self.also_bind)


class Runtime:
    """The interface astra drives. One instance serves one listening socket, once.

    ``serve`` runs in a thread of the caller's choosing and returns when the
    server has shut down; ``stop`` may be called from any thread (or a
    signal handler's thread) and asks for a graceful shutdown.
    """

    name = "?"
    #: Can this runtime await ``async def`` handlers?
    supports_async = False
    #: Does it queue requests for a bounded pool (and answer 503 past the queue)?
    uses_worker_pool = False
    #: Does a worker belong to a connection for the connection's life (the
    #: seeds' design)? Then N workers serve at most N connections at once,
    #: and what a connection does (idle, slow to read) holds its worker.
    pins_connections = False

    def __init__(self, handler: Handler, config: Config, listeners: list[socket.socket]) -> None:
        self.handler = handler
        self.config = config
        self.listeners = listeners

    def serve(self, ready: Callable[[], None]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Internal counters a researcher may want (connections open, threads...)."""
        return {}


#: Selector data of a listening socket and of a :class:`Waker`, in the runtimes that select.
LISTENER = "listener"
WAKE = "wake"


class Waker:
    """A socket pair a selector also waits on, so that another thread can interrupt the wait.

    Closing a socket that another thread is blocked on does not wake that
    thread on Linux; a byte on this pair does.
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        try:
            self._w.send(b"x")
        except OSError:  # full (a wake-up is pending anyway) or closed (nobody is waiting)
            pass

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


def watch_listeners(selector: selectors.BaseSelector, config: Config, listeners: list[socket.socket],
                    waker: Waker) -> None:
    """Start a selecting runtime: its listeners (data LISTENER), its waker (data WAKE), and the
    stack size of the threads it starts from now on."""
    if config.thread_stack_size:
        threading.stack_size(config.thread_stack_size)
    for listener in listeners:
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, LISTENER)
    selector.register(waker, selectors.EVENT_READ, WAKE)


def is_async_handler(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def check_unix_path(path: str) -> None:
    if not path:
        raise ValueError("a Unix socket needs a path: unix:/run/app.sock")
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ValueError(f"Unix socket path too long ({len(os.fsencode(path))} bytes, at most {MAX_UNIX_PATH}): "
                         f"{path!r}; choose a shorter one")


def no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY: a small response leaves at once (the protocol batches what it can).

    A Unix socket has no Nagle to switch off; the try costs nothing on TCP,
    where a check of the family first would cost every connection.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def socket_address(address: Any) -> tuple[str, int] | None:
    """(host, port) of an AF_INET/AF_INET6 address; None for anything else
    (a Unix socket's peer is "" and its own address a path: neither is a host)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return (address[0], address[1])
    return None


def thread_count() -> int:
    """Threads in this process, as the kernel counts them (``threading`` misses some)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import threading

    return threading.active_count()


def discard_unread(sock: socket.socket) -> None:
    """Read and drop what the client sent that nobody will read, before closing.

    Closing a TCP socket with unread bytes in its receive buffer sends RST
    instead of FIN, and a client's kernel may then discard our last words
    (a 400, a GOAWAY) before the client has read them.
    """
    try:
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass
    except OSError:
        pass
