"""The event-loop runtimes' server: the loop, accepting, the worker pool, the sweeper, stopping.

:class:`AsyncRuntime` is what astra drives; :meth:`AsyncRuntime.serve`
starts the loop and :meth:`AsyncServer.run` accepts connections until told
to stop, then shuts down gracefully: idle connections close at once, busy
ones finish (HTTP/2 ones after a GOAWAY), and whatever is still running
after ``shutdown_timeout`` is cancelled.

To its connections the server is the small ``connection.Server``
interface (the handler and how to call it, the pool, whether it is
stopping); to the server a connection is :class:`Connection` with three
calls: ``serve``, ``check`` (the sweeper's tick) and ``close_if_idle``.
Each connection reaches the server through an
:class:`~.transport.AsyncTransport`, which the edge's listener makes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from protocols import ClientDisconnected

from .._pool import WorkerPool
from ..common import Runtime, is_async_handler, logger, thread_count
from .connection import Connection
from .exchange import PoolFull
from .transport import AnyioTransport, AsyncTransport, reject

__all__ = ["AsyncRuntime", "AsyncServer"]

SWEEP_INTERVAL = 0.1  # how often deadlines are checked (timeouts are this precise)


class AsyncRuntime(Runtime):
    """A runtime whose connections are tasks on one event loop."""

    supports_async = True
    uses_worker_pool = True  # blocking handlers queue for a bounded set of threads
    backend = "?"

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.server: AsyncServer | None = None
        self.stop_requested = threading.Event()  # stop() may come before the loop has started

    def backend_options(self) -> dict[str, Any]:
        return {}

    def thread_notifier(self) -> Callable[[Callable[[], None]], None]:
        """Called on the loop: a function other threads use to run a callback on it."""
        raise NotImplementedError

    async def serve_listener(self, sock: socket.socket,
                             on_transport: Callable[[AsyncTransport], None]) -> None:
        """Accept connections on ``sock`` and hand each to ``on_transport``, until cancelled.

        This default puts anyio's socket streams behind the transport seam
        (:class:`~.transport.AnyioTransport`); an edge may bring its own
        :class:`~.transport.AsyncTransport`.

        Each time the listener is readable, the whole backlog is accepted
        before yielding. anyio's ``listener.accept()`` takes one connection per
        trip round the scheduler, and with hundreds of busy connection tasks
        per trip that starved newcomers: at 1,000 connections the trio runtime
        had accepted only about half of them after six seconds.
        """
        sock.setblocking(False)
        try:
            while True:
                await anyio.wait_readable(sock)
                while True:
                    try:
                        client, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # EMFILE and friends: back off, do not spin
                        logger.warning("accept failed: %s", exc)
                        await anyio.sleep(0.05)
                        break
                    on_transport(AnyioTransport(await anyio.abc.SocketStream.from_socket(client)))
        finally:
            sock.close()

    def serve(self, ready: Callable[[], None]) -> None:
        self.server = AsyncServer(self)
        anyio.run(self.server.run, ready, backend=self.backend, backend_options=self.backend_options())

    def stop(self) -> None:
        self.stop_requested.set()
        server = self.server
        if server is not None and server.token is not None:
            try:
                anyio.from_thread.run_sync(server.stop, token=server.token)
            except RuntimeError:
                pass  # the loop has already finished

    def stats(self) -> dict[str, int]:
        return self.server.stats() if self.server else {}


# The server, on its loop -----------------------------------------------------------

class AsyncServer:
    """The loop's side of the server: what its connections share (``connection.Server``)."""

    def __init__(self, runtime: AsyncRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.handler = runtime.handler
        self.handler_is_async = is_async_handler(runtime.handler)
        self.inline = self.config.blocking_handlers == "inline"
        self.token = None
        self.stopping = False
        self.connections: set[Connection] = set()
        self.accepted = 0
        self.rejected = 0
        self.overloaded = 0

    async def run(self, ready: Callable[[], None]) -> None:
        config = self.config
        self.pool = WorkerPool(config.max_workers, config.worker_keep_alive, config.max_queued_requests,
                               config.max_queue_wait, config.max_upload_workers)
        self.call_soon_threadsafe = self.runtime.thread_notifier()
        self._stop = anyio.Event()
        self._all_closed = anyio.Event()
        self.token = anyio.lowlevel.current_token()
        try:
            async with anyio.create_task_group() as tasks:
                self.tasks = tasks
                tasks.start_soon(self._sweep)
                accepting = anyio.CancelScope()
                tasks.start_soon(self._accept, accepting)
                ready()
                if self.runtime.stop_requested.is_set():  # stop() came before we had a token
                    self.stop()
                await self._stop.wait()
                accepting.cancel()
                await self._drain(tasks)
        finally:
            self.pool.close()

    async def _sweep(self) -> None:
        """Every connection's deadlines, checked by one task (see ``connection.py``)."""
        while True:
            await anyio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check(now)

    def stop(self) -> None:
        """On the loop: begin the graceful shutdown."""
        self.stopping = True
        self._stop.set()

    async def _accept(self, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as listeners:
                for sock in self.runtime.listeners:
                    listeners.start_soon(self.runtime.serve_listener, sock, self._on_transport)

    def _on_transport(self, transport: AsyncTransport) -> None:
        self.accepted += 1
        if self.stopping or len(self.connections) >= self.config.max_connections:
            self.rejected += 1
            self.tasks.start_soon(reject, transport)
            return
        connection = Connection(self, transport)
        self.connections.add(connection)
        self.tasks.start_soon(connection.serve)

    async def _drain(self, tasks: anyio.abc.TaskGroup) -> None:
        """Close idle connections; let busy ones finish; then cancel the rest."""
        await anyio.sleep(0)  # let the accept task close the listener
        for connection in list(self.connections):
            connection.close_if_idle()
        with anyio.move_on_after(self.config.shutdown_timeout):
            if self.connections:
                await self._all_closed.wait()
        if self.connections:
            logger.warning("shutdown timeout: cancelling %d busy connections", len(self.connections))
        tasks.cancel_scope.cancel()

    # What connections and their exchanges ask of the server ---------------------------

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self.stopping and not self.connections:
            self._all_closed.set()

    async def run_in_pool(self, fn: Callable[..., Any], *args: Any, waits_on_client: bool = False,
                          unless: Callable[[], bool] | None = None) -> Any:
        """Run ``fn(*args)`` on a pool thread and await its result (see ``exchange.Host``).

        Raises :class:`PoolFull` when the pool's queue is full. If the
        awaiting task is cancelled (a forced shutdown) it stops waiting; the
        thread finishes, or not, on its own. ``unless`` reads the loop's
        state from the worker without the loop: a stale answer only runs
        ``fn`` for nothing, as it would have run anyway.
        """
        done = anyio.Event()
        outcome: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                if unless is not None and unless():
                    raise ClientDisconnected("the client gave up before the job started")
                outcome.append((True, fn(*args)))
            except BaseException as exc:
                outcome.append((False, exc))
            try:
                self.call_soon_threadsafe(done.set)
            except RuntimeError:
                pass  # the loop is gone: nobody is waiting any more

        if not self.pool.submit(job, waits_on_client):
            raise PoolFull
        await done.wait()
        ok, value = outcome[0]
        if ok:
            return value
        raise value

    def count_overload(self) -> None:
        self.overloaded += 1

    def stats(self) -> dict[str, int]:
        pool = getattr(self, "pool", None)
        return {
            "connections_open": len(self.connections),
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "requests_overloaded": self.overloaded,
            "threads": thread_count(),
            **(pool.stats() if pool else {}),
        }

