"""What every runtime shares: configuration, the listening socket, calling the handler.

A runtime is the part of the server that decides *how* connections wait: on
an OS thread each, on a selector plus worker threads, on an event loop. Each
lives in its own module and reads top to bottom; whatever two of them would
otherwise repeat lives here.
"""

from __future__ import annotations

import ctypes
import errno
import inspect
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocols import Limits, Request

__all__ = [
    "LISTENER", "WAKE", "Config", "Handler", "Loop", "Runtime", "Waker", "accept_backlog", "accept_descriptors", "bind_listeners", "discard_unread", "is_async_handler", "logger",
    "socket_address", "thread_count", "watch_listeners",
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


@dataclass(frozen=True)
class Config:
    """Everything a runtime needs to know besides the handler.

    Timeouts are in seconds. Defaults are meant for production, not for
    benchmarks: a benchmark that wants different ones says so.
    """

    host: str = "127.0.0.1"
    port: int = 3000
    #: More (host, port) pairs to listen on besides host:port, e.g. other
    #: loopback addresses, so load generators aimed at each reach one server.
    also_bind: tuple[tuple[str, int], ...] = ()
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

    def __post_init__(self) -> None:
        # An unknown loop fails when the server is configured, not when it starts.
        object.__setattr__(self, "loop", Loop(self.loop))  # "uvloop" -> Loop.UVLOOP


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


def bind_listeners(config: Config) -> list[socket.socket]:
    """A listening socket for host:port and for each of ``also_bind``."""
    _raise_open_file_limit()
    listeners: list[socket.socket] = []
    try:
        for host, port in ((config.host, config.port), *config.also_bind):
            listeners.append(_bind(config, host, port))
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def _bind(config: Config, host: str, port: int) -> socket.socket:
    """Create, bind and listen; port 0 picks a free port."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _raise_open_file_limit() -> None:
    """Servers hold one descriptor per connection; take all the OS allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def accept_backlog(listener: socket.socket, backoff: float = 0.0) -> Iterator[tuple[socket.socket, Any]]:
    """Every connection waiting in a non-blocking listener's backlog, now.

    Draining the backlog per wake-up, rather than one connection per trip
    round the loop, keeps newcomers from starving behind busy connections. An
    error such as EMFILE is logged and ends the batch after ``backoff``
    seconds (a thread that only accepts can afford to pause; a reactor cannot).
    """
    while True:
        try:
            yield listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.warning("accept failed: %s", exc)
            if backoff:
                time.sleep(backoff)
            return


def accept_descriptors(listener: socket.socket, backoff: float = 0.0) -> Iterator[int]:
    """Every connection waiting in a non-blocking listener's backlog, as bare file descriptors,
    accepted without letting go of the GIL.

    Why a thread runtime needs this: ``socket.accept`` releases the GIL
    around the system call, like every call in :mod:`socket`, and getting it
    back means queueing behind every runnable thread. A thread per
    connection under load has hundreds of them, each holding the GIL for a
    request's worth of work: at 1,000 busy connections the accept loop got
    the GIL about 40 times a second and so accepted about 40 connections a
    second, leaving the rest in the backlog for many seconds. ``accept4``
    called through :class:`ctypes.PyDLL` keeps the GIL (it cannot block: the
    listener is non-blocking), so one turn drains the whole backlog. The
    caller makes each descriptor a socket on the connection's own thread,
    where the calls that do drop the GIL (``getpeername``, setting the
    timeout) cost only that thread.

    Where ``accept4`` is missing (not Linux) this is :func:`accept_backlog`.
    """
    if _accept4 is None:
        for sock, _ in accept_backlog(listener, backoff):
            yield sock.detach()
        return
    fd = listener.fileno()
    while True:
        conn = _accept4(fd, None, None, socket.SOCK_CLOEXEC)
        if conn >= 0:
            yield conn
            continue
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.EWOULDBLOCK):
            return
        if code in (errno.EINTR, errno.ECONNABORTED, errno.EPROTO):
            continue  # a signal, or a client that gave up while queued: take the next
        logger.warning("accept failed: %s", os.strerror(code))  # EMFILE and its kind
        if backoff:
            time.sleep(backoff)
        return


def _gil_holding_accept4() -> Any:
    try:
        accept4 = ctypes.PyDLL(None, use_errno=True).accept4
    except (AttributeError, OSError):
        return None
    accept4.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
    accept4.restype = ctypes.c_int
    return accept4


_accept4 = _gil_holding_accept4()


def socket_address(address: Any) -> tuple[str, int] | None:
    """(host, port) of an AF_INET/AF_INET6 address; None for anything else."""
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
