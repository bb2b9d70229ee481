"""Pinned: the seeds' own design. A reactor finds ready connections; a pool worker keeps each one.

The Rust astra runs a small evented loop under a pool of worker threads and
dispatches *connections* to the pool: a worker serves its connection,
blocking on it, for the connection's whole life, and yields to the OS (not
to a userspace runtime) whenever it waits. This runtime is that model:

1. The reactor thread (:meth:`PinnedRuntime.serve`) accepts, and waits on
   every connection that has no worker yet. It reads and parses until a
   request head is complete (a client trickling its head costs a registered
   descriptor, not a worker, and gets 408 after ``header_timeout``).
2. A connection with a request ready is handed to the elastic
   :class:`~._pool.WorkerPool` (15 x CPUs by default, grows under load,
   idle workers exit). If every worker is busy it waits in the pool's
   queue; past ``max_queued_requests`` it gets 503 and is closed.
3. The worker runs :class:`~._owned.OwnedConnection` (the loop
   ``threaded`` runs on its own thread): it answers the request, then
   *blocks on the socket* for the next one. It never hands the connection
   back; it lets go only when the connection closes or stays idle past
   ``keep_alive_timeout``. On HTTP/2 the worker is the connection's reader
   and the connection's streams run on threads of its own (hyper would
   spawn them onto the same pool, which deadlocks once every worker is a
   reader waiting for its streams).

So an idle keep-alive connection holds a worker, and a full pool makes
newcomers queue: exactly what the seeds' design trades for simplicity, and
what ``hybrid`` (which hands out requests instead) was built to avoid. Where
this runtime differs from the Rust original, it is to give it the
protections every other runtime has, so that a comparison measures the
dispatch model only (docs/design.md lists each difference).

Threading model: the reactor thread alone owns the selector, the listeners,
the connections still waiting for a request, and the counters; it parses
heads under each connection's ``streams.lock``. A ready connection goes to a
worker through ``WorkerPool.submit``, whose lock orders the hand-off, and
the reactor never touches it again (only ``OwnedConnections.drain`` does, at
shutdown). From then on the worker owns it as a ``threaded`` connection's
thread does, with the same locks.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable

from protocols import ClientDisconnected, error_response_bytes

from ._listeners import accept_backlog
from ._owned import OwnedConnection, OwnedConnections
from ._pool import WorkerPool
from ._tls import open_transport
from ._transport import reject_connection
from .common import LISTENER, WAKE, Runtime, Waker, thread_count, watch_listeners

__all__ = ["PinnedRuntime"]

TICK = 0.1  # how often the reactor checks head deadlines (timeouts are this precise)


class PinnedRuntime(Runtime):
    name = "pinned"
    uses_worker_pool = True
    pins_connections = True

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.pool = WorkerPool(config.max_workers, config.worker_keep_alive, config.max_queued_requests,
                               config.max_queue_wait)
        self.waiting: dict[int, tuple[OwnedConnection, float]] = {}  # no worker yet: fd -> (it, head deadline)
        self.pinned = OwnedConnections()  # handed to the pool
        self.waker = Waker()
        self.accepted = self.rejected = self.overloaded = 0

    # 1. The reactor: accept, read heads, expire slow ones ------------------------------

    def serve(self, ready: Callable[[], None]) -> None:
        watch_listeners(self.selector, self.config, self.listeners, self.waker)
        ready()
        try:
            next_tick = time.monotonic() + TICK
            while not self.stopping:
                for key, _ in self.selector.select(max(0.0, next_tick - time.monotonic())):
                    if key.data is LISTENER:
                        self._accept_ready(key.fileobj)
                    elif key.data is not WAKE:
                        self._on_readable(key.data)
                if (now := time.monotonic()) >= next_tick:
                    self._expire_heads(now)
                    next_tick = now + TICK
        finally:
            for listener in self.listeners:
                listener.close()
            for connection, _ in list(self.waiting.values()):
                self._last_look(connection)
            self.selector.close()
            self.pinned.drain(self.config.shutdown_timeout)
            self.pool.close()
            self.waker.close()

    def _accept_ready(self, listener: socket.socket) -> None:
        for sock, peer in accept_backlog(listener):
            self.accepted += 1
            if len(self.waiting) + len(self.pinned) >= self.config.max_connections:
                self.rejected += 1
                reject_connection(sock, "too many connections", self.config)
                continue
            transport = open_transport(sock, peer, self.config)
            transport.unblock()
            connection = OwnedConnection(transport, self.config, self.handler, self.pinned.forget)
            connection.streams.pull = None  # until a worker has it: a small first body is gathered here
            self.waiting[transport.fd] = (connection, time.monotonic() + self.config.header_timeout)
            self.selector.register(transport.fd, selectors.EVENT_READ, connection)

    def _on_readable(self, connection: OwnedConnection) -> None:
        """Parse what arrived; once a request is ready the connection goes to a worker, for good."""
        data = connection.transport.receive_now()
        if data is None:
            return
        streams = connection.streams
        with streams.lock:
            streams.proto.receive_data(data)
            ready = streams.absorb(streams.proto.events())
            closing = not ready and streams.proto.should_close
            goodbye = streams.proto.data_to_send() if closing else None  # else the worker sends it
            go_ahead = streams.proto.data_to_send() if streams.gathering and not closing else b""
        if go_ahead:  # a 100 Continue for a body being gathered here
            try:
                connection.transport.send_now(go_ahead)
            except ClientDisconnected:
                self._let_go(connection)
                return
        if ready or (streams.proto.multiplexed and not closing):
            self._pin(connection, ready)  # HTTP/2: its SETTINGS must go out before any request
        elif goodbye is not None or not data:  # the client left, or broke the protocol (its 4xx is queued)
            self._let_go(connection, goodbye or b"")

    def _pin(self, connection: OwnedConnection, ready: list) -> None:
        self.selector.unregister(connection.transport.fd)
        del self.waiting[connection.transport.fd]
        self.pinned.add(connection)
        if not self.pool.submit(lambda: connection.serve(ready)):
            self.overloaded += 1  # every worker busy and the queue full: 503, the client may retry
            if ready:
                connection.streams.turn_away(ready[0])
            self.pinned.forget(connection)
            connection.transport.close()

    def _expire_heads(self, now: float) -> None:
        """408 for a head, or a small first body being gathered, that did not arrive in time."""
        for connection, deadline in list(self.waiting.values()):
            streams = connection.streams
            with streams.lock:
                late = streams.overdue(now)
                gathering = streams.running > 0
            if late:
                streams.refuse(late[0], 408, "request body not received in time")
                self._let_go(connection)
            elif now >= deadline and not gathering:
                self._let_go(connection, error_response_bytes(408, "request head not received in time"))

    def _last_look(self, connection: OwnedConnection) -> None:
        """Shutting down: a connection without a worker is still served if its request has arrived.

        Its bytes may have come since the last select. A request ready goes
        to a worker as ever (drain then lets it finish, with Connection:
        close); so does one whose head is here and whose small body was being
        gathered (the worker reads the rest itself, as for any request). Any
        other connection has nothing to answer and closes now.
        """
        fd = connection.transport.fd
        self._on_readable(connection)  # pins a request that is ready; lets go a client that left
        if self.waiting.get(fd, (None,))[0] is not connection:
            return
        streams = connection.streams
        with streams.lock:
            begun = list(streams.gathering.values())
            streams.gathering.clear()
        if begun:
            self._pin(connection, begun)
        else:
            self._let_go(connection)

    def _let_go(self, connection: OwnedConnection, last_words: bytes = b"") -> None:
        """Close a connection that never got a worker."""
        transport = connection.transport
        self.selector.unregister(transport.fd)
        del self.waiting[transport.fd]
        if last_words:
            try:
                transport.send_now(last_words)
            except ClientDisconnected:  # the client left first (a Unix socket says so at once: EPIPE)
                pass
        transport.close()

    # 2. Stopping ---------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        self.waker.wake()

    def stats(self) -> dict[str, int]:
        pinned = len(self.pinned)
        return {
            "connections_open": len(self.waiting) + pinned,
            "connections_pinned": pinned,
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "requests_overloaded": self.overloaded,
            "threads": thread_count(),
            **self.pool.stats(),
        }
