"""Thread per connection: the purest form of "yield to the OS".

Every connection gets an OS thread that does blocking reads and writes and
calls the handler itself. There is no event loop and no scheduler of our
own: when a thread waits on its socket or sleeps in a handler, the kernel
runs another one. The price is a thread (a stack's worth of address space, a
kernel task) per connection, even an idle one.

In CPython there is a second price: the GIL. Every thread that wants it
wakes once per switch interval, and every system call lets go of it and
queues for it again behind every busy thread. With a thousand connections
this starved the accept loop (it took ~40 connections a second) and burned
the core on wake-ups (2,400 req/s). So the accept loop never lets go of the
GIL while it drains the backlog (the new thread makes its own socket), the
connections' threads drain it too as they pass between requests, and the
switch interval grows with the threads (``_gil``): 12,000 req/s at 1,000
connections, every one accepted within a second; 8,334 in one process
accepted within seven. Without the GIL (free-threaded CPython) none of that
is needed, and none of it is done.

Threading model: the runtime's thread runs the accept loop (select on the
listeners and a waker, accept4, a place reserved in OwnedConnections, a
thread started per connection) and, at stop, closes the listeners and
drains. Each connection's thread owns its socket, OwnedConnection and
StreamSet and runs HTTP/1.1 handlers itself (with the GIL on, it also helps
accept between requests); on HTTP/2 it reads, and the streams run on the
connection's own small WorkerPool. ``streams.lock`` guards the protocol
state and bodies, ``write_lock`` the socket's writes and FIN,
``OwnedConnections``' lock its sets, ``_counting`` the counters.

This module is only the part that is particular to the model: the accept
loop, the cap on live connections (past it a client gets 503 at once rather
than a hang), a thread started per connection, and the graceful shutdown.
What the connection's thread does, request after request, is
:class:`~._owned.OwnedConnection` (shared with ``pinned``, whose pool
workers run the same loop), and one request's life is
:class:`~._sync.StreamSet`, shared by every thread runtime.
"""

from __future__ import annotations

import _thread
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable

from ._gil import SwitchInterval, gil_enabled
from ._listeners import accept_descriptors
from ._owned import OwnedConnection, OwnedConnections
from ._tls import open_transport
from ._transport import reject_connection
from .common import LISTENER, Runtime, Waker, logger, thread_count, watch_listeners

__all__ = ["ThreadedRuntime"]

#: How often, at most, the connections' threads look at the backlog for the accept loop (seconds).
HELP_EVERY = 0.002


class ThreadedRuntime(Runtime):
    name = "threaded"

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self.connections = OwnedConnections()
        self.switch_interval = SwitchInterval(config.switch_interval)  # stretched as threads grow
        self.waker = Waker()
        self.accepted = 0
        self.rejected = 0
        self._counting = threading.Lock()  # the accept loop and helping threads count
        self._help_due = 0.0  # when a connection's thread may next drain the backlog (_help_accept)
        # The connections' threads help the accept loop only where it starves for the GIL.
        self._helper = self._help_accept if gil_enabled() else None

    # Accepting ---------------------------------------------------------

    def serve(self, ready: Callable[[], None]) -> None:
        # The accept loop waits on the listeners and on a waker, so that stop() can interrupt it.
        selector = selectors.DefaultSelector()
        watch_listeners(selector, self.config, self.listeners, self.waker)
        ready()
        try:
            while not self.stopping:
                for key, _ in selector.select():
                    if key.data is LISTENER:
                        self._accept_ready(key.fileobj)
        finally:
            selector.close()
            for listener in self.listeners:
                listener.close()
            self.connections.drain(self.config.shutdown_timeout)
            self.switch_interval.restore()
            self.waker.close()

    def _accept_ready(self, listener: socket.socket, backoff: float = 0.05) -> None:
        # This thread only accepts and starts threads, holding the GIL
        # throughout: each time it let go, it would queue behind every busy
        # connection's thread to get it back (see accept_descriptors).
        # Everything that waits in the kernel is left to the new thread.
        head_timeout = self.config.header_timeout
        for fd in accept_descriptors(listener, backoff):  # EMFILE: the accept loop backs off, does not spin
            if self.stopping:
                os.close(fd)
                return
            with self._counting:
                self.accepted += 1
            if not self.connections.reserve(self.config.max_connections):
                self._reject(fd, listener, "too many connections")
                continue
            self.switch_interval.fit(len(self.connections))
            try:
                # Not threading.Thread: its start() waits until the new thread
                # has run, two more trips through the GIL per connection.
                _thread.start_new_thread(self._serve, (fd, listener, time.monotonic() + head_timeout))
            except RuntimeError:  # the OS will not give us another thread
                self.connections.abandon()
                self._reject(fd, listener, "cannot start a thread for this connection")

    def _help_accept(self) -> None:
        """A connection's thread, about to wait for its next request, drains the backlog in passing.

        The accept loop's thread is one of hundreds queueing for the GIL, and
        it queues again after every wait in ``select``: with thousands of busy
        connections it got its turn every few seconds while the backlog
        overflowed (clients then wait out SYN retransmits). The connections'
        threads hold the GIL every request, so any of them may take the
        queued connections as it goes by, at most every ``HELP_EVERY``
        seconds across all threads: a clock read per request when it is not due.
        """
        now = time.monotonic()
        if now < self._help_due or self.stopping:
            return
        self._help_due = now + HELP_EVERY
        for listener in self.listeners:
            self._accept_ready(listener, backoff=0.0)  # never make a connection's own client wait

    def _serve(self, fd: int, listener: socket.socket, head_deadline: float) -> None:
        """A new connection's thread: make the socket, then serve it until it closes."""
        try:
            sock = socket.socket(listener.family, socket.SOCK_STREAM, listener.proto, fileno=fd)
        except OSError:
            os.close(fd)
            self.connections.abandon()
            return
        try:
            transport = open_transport(sock, None, self.config)
            connection = OwnedConnection(transport, self.config, self.handler, self.connections.forget,
                                         before_wait=self._helper)
        except Exception as exc:  # the client has already gone (OSError), or worse: its place is freed
            if not isinstance(exc, OSError):
                logger.exception("cannot set up a connection")
            sock.close()
            self.connections.abandon()
            return
        self.connections.arrived(connection)
        connection.serve(None, head_deadline)

    def _reject(self, fd: int, listener: socket.socket, why: str) -> None:
        with self._counting:
            self.rejected += 1
        reject_connection(socket.socket(listener.family, socket.SOCK_STREAM, listener.proto, fileno=fd), why,
                          self.config)

    # Stopping ----------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        self.waker.wake()

    def stats(self) -> dict[str, int]:
        return {
            "connections_open": len(self.connections),
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "threads": thread_count(),
        }


