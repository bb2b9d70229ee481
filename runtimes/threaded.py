"""Thread per connection: the purest form of "yield to the OS".

Every connection gets an OS thread that does blocking reads and writes and
calls the handler itself. There is no event loop and no scheduler of our
own: when a thread waits on its socket or sleeps in a handler, the kernel
runs another one. The price is a thread (a stack's worth of address space, a
kernel task) per connection, even an idle one.

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
import selectors
import socket
import time
from collections.abc import Callable

from ._owned import OwnedConnection, OwnedConnections
from ._transport import SocketTransport, reject_connection
from .common import LISTENER, Runtime, Waker, accept_backlog, thread_count, watch_listeners

__all__ = ["ThreadedRuntime"]


class ThreadedRuntime(Runtime):
    name = "threaded"

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self.connections = OwnedConnections()
        self.waker = Waker()
        self.accepted = 0
        self.rejected = 0

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
            self.waker.close()

    def _accept_ready(self, listener: socket.socket) -> None:
        for sock, peer in accept_backlog(listener, backoff=0.05):  # EMFILE: back off, do not spin
            if self.stopping:
                sock.close()
                return
            self.accepted += 1
            if len(self.connections) >= self.config.max_connections:
                self._reject(sock, "too many connections")
                continue
            connection = OwnedConnection(SocketTransport(sock, peer), self.config, self.handler,
                                         self.connections.forget)
            head_deadline = time.monotonic() + self.config.header_timeout
            self.connections.add(connection)
            try:
                # Not threading.Thread: its start() waits until the new thread
                # has run, two trips through the GIL per connection. Under
                # load, with hundreds of threads queueing for the GIL, that
                # starved the accept loop (at 1,000 connections half of them
                # waited in the backlog for seconds).
                _thread.start_new_thread(connection.serve, (None, head_deadline))
            except RuntimeError:  # the OS will not give us another thread
                self.connections.forget(connection)
                self._reject(sock, "cannot start a thread for this connection")

    def _reject(self, sock: socket.socket, why: str) -> None:
        self.rejected += 1
        reject_connection(sock, why)

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


