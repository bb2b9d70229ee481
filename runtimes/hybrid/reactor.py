"""The hybrid runtime's reactor: one thread that waits on every socket and every timer."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from protocols import ClientDisconnected, RequestReceived

from .._memory import HeapTrimmer
from .._pool import WorkerPool
from .._listeners import accept_backlog
from .._tls import open_transport
from .._transport import reject_connection
from ..common import LISTENER, WAKE, Runtime, Waker, logger, thread_count, watch_listeners
from .connection import READ, Connection

__all__ = ["HybridRuntime"]

TICK = 0.1  # how often the reactor checks deadlines (timeouts are this precise)


class HybridRuntime(Runtime):
    name = "hybrid"
    uses_worker_pool = True

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.trimmer = HeapTrimmer()  # freed pages go back once a crowd of connections has gone
        self.pool = WorkerPool(config.max_workers, config.worker_keep_alive, config.max_queued_requests,
                               config.max_queue_wait, config.max_upload_workers)
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_pending = False
        self._calls_lock = threading.Lock()
        self.waker = Waker()
        self.accepted = self.rejected = self.overloaded = 0

    # 1. The reactor -----------------------------------------------------

    def serve(self, ready: Callable[[], None]) -> None:
        watch_listeners(self.selector, self.config, self.listeners, self.waker)
        ready()
        next_tick = time.monotonic() + TICK
        drain_deadline = None
        try:
            while True:
                if self.stopping and drain_deadline is None:
                    drain_deadline = time.monotonic() + self.config.shutdown_timeout
                    self._begin_drain()
                if drain_deadline is not None and (not self.connections or time.monotonic() > drain_deadline):
                    break
                for key, mask in self.selector.select(max(0.0, next_tick - time.monotonic())):
                    if key.data is LISTENER:
                        self._accept_ready(key.fileobj)
                    elif key.data is WAKE:
                        self.waker.drain()
                    else:
                        self._on_event(key.data, mask)
                self._run_calls()
                now = time.monotonic()
                if now >= next_tick:
                    for connection in list(self.connections.values()):
                        connection.expire(now)
                    next_tick = now + TICK
        finally:
            for connection in list(self.connections.values()):
                self.close(connection)
            self.pool.close()
            self.selector.close()
            self.waker.close()

    def _on_event(self, connection: Connection, mask: int) -> None:
        try:
            if mask & READ:
                for stream in connection.on_readable():
                    self.dispatch(connection, stream)
            if mask & selectors.EVENT_WRITE and not connection.closed:
                for stream in connection.on_writable():
                    self.dispatch(connection, stream)
        except ClientDisconnected:  # the client went away: its connection is all it costs
            self.close(connection)
        except Exception:  # a bug must cost one connection, not the server
            logger.exception("connection failed")
            self.close(connection)

    def dispatch(self, connection: Connection, stream: RequestReceived) -> None:
        """A request (or HTTP/2 stream) to a worker; if none can take it, refuse it (503 / REFUSED_STREAM)."""
        streams = connection.streams
        if not self.pool.submit(lambda: streams.serve(stream), streams.body_arriving(stream.stream_id)):
            self.overloaded += 1
            streams.turn_away(stream)

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the reactor thread (from any thread).

        The queue and its wake-up flag change together under ``_calls_lock``:
        a call queued just as the reactor finishes draining either is drained
        or wakes it. (The GIL kept the two in order by itself; a free-threaded
        build does not.)
        """
        with self._calls_lock:
            self._calls.append(call)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self.waker.wake()

    def _run_calls(self) -> None:
        if not self._wake_pending:  # a glance: a call queued meanwhile wakes the selector
            return
        with self._calls_lock:
            self._wake_pending = False  # a call queued from now on wakes us again
            calls, self._calls = self._calls, deque()
        for call in calls:
            call()

    def _accept_ready(self, listener: socket.socket) -> None:
        for sock, peer in accept_backlog(listener):
            self.accepted += 1
            if len(self.connections) >= self.config.max_connections:
                self.rejected += 1
                reject_connection(sock, "too many connections", self.config)
                continue
            transport = open_transport(sock, peer, self.config)
            transport.unblock()
            connection = Connection(self, transport, self.config, self.handler)
            self.connections[transport.fd] = connection
            self.selector.register(transport.fd, READ, connection)
            self.trimmer.opened(len(self.connections))

    # Selector interest and closing: reactor thread only -------------------

    def sync_interest(self, connection: Connection) -> None:
        """Make the selector match what the connection wants now.

        Workers change the connection's wishes under its lock and ask for a
        sync when the wishes differ from what the selector was told; each
        sync reads the latest wishes and records what it told the selector
        under the same lock, so a worker never skips a sync on a stale
        reading and none is lost.
        """
        with connection.lock:  # held to the end: a worker deciding whether to ask for a sync reads `registered`
            mask = connection.wanted
            if connection.closed or mask == connection.registered:
                return
            fd = connection.transport.fd
            if connection.registered and mask:
                self.selector.modify(fd, mask, connection)
            elif mask:
                self.selector.register(fd, mask, connection)
            else:
                self.selector.unregister(fd)
            connection.registered = mask

    def close(self, connection: Connection) -> None:
        with connection.lock:
            if connection.closed:
                return
            connection.mark_closed()
            if connection.registered:
                self.selector.unregister(connection.transport.fd)
                connection.registered = 0
            connection.transport.close()
        self.connections.pop(connection.transport.fd, None)
        self.trimmer.closed(len(self.connections))

    # 2. Shutdown -----------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        self.call_soon(lambda: None)  # wake the reactor

    def _begin_drain(self) -> None:
        """Stop accepting; close idle connections; busy ones close after their response."""
        for listener in self.listeners:
            self.selector.unregister(listener)
            listener.close()
        for connection in list(self.connections.values()):
            connection.begin_shutdown()

    def stats(self) -> dict[str, int]:
        return {
            "connections_open": len(self.connections),
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "requests_overloaded": self.overloaded,
            "threads": thread_count(),
            **self.pool.stats(),
        }
