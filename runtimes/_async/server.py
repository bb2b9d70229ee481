"""The event-loop runtimes' server: the loop, accepting, the worker pool, the sweeper, stopping.

:class:`AsyncRuntime` is what astra drives; :meth:`AsyncRuntime.serve`
starts the loop and :meth:`AsyncServer.run` accepts connections until told
to stop, then shuts down gracefully: idle connections close at once, busy
ones finish (HTTP/2 ones after a GOAWAY), and whatever is still running
after ``shutdown_timeout`` is cancelled.

A connection's life here: the accept loop takes the whole backlog at
each wake-up, each socket waits in the
:class:`~.waiting.WaitingRoom` until its first byte, and only then does the
edge give it a transport (:meth:`AsyncRuntime.open_transport`) and a task
(:meth:`AsyncRuntime.connection_tasks`, the loop's own: anyio's task
handles cost several times more, in time and in objects, and nothing here
needs them). A burst of connections therefore costs an ``accept`` and a
dict entry each until they speak.

To its connections the server is the small ``connection.Server``
interface (the handler and how to call it, the pool, whether it is
stopping); to the server a connection is :class:`Connection` with three
calls: ``serve``, ``check`` (the sweeper's tick) and ``close_if_idle``.

A handler may have a life of its own around the server's: the optional
``handler.lifespan`` hook (:meth:`AsyncServer.handler_lifespan`), which the
ASGI adapter uses for its app's startup and shutdown.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from protocols import ClientDisconnected, Response

from .._lifecycle import close_body
from .._pool import WorkerPool
from ..common import Runtime, is_async_handler, logger, thread_count
from .connection import Connection, Scope
from .exchange import PoolFull
from .tls import TLSTransport
from .transport import AnyioTransport, AsyncTransport, reject
from .waiting import waiting_room

__all__ = ["AsyncRuntime", "AsyncServer", "Spawn"]

SWEEP_INTERVAL = 0.1  # how often deadlines are checked (timeouts are this precise)

#: Start ``fn(*args)`` as a task of its own (a connection's), cancelled when the server's tasks are.
Spawn = Callable[..., Any]


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

    async def open_transport(self, sock: socket.socket) -> AsyncTransport:
        """An accepted socket, with bytes to read, behind the transport seam.

        This default puts anyio's socket streams behind it
        (:class:`~.transport.AnyioTransport`); an edge may bring its own
        :class:`~.transport.AsyncTransport`.
        """
        return await AnyioTransport.open(sock)

    def cancel_scope(self) -> Scope:
        """A connection's cancel scope (see ``connection.py``); an edge may bring a cheaper one."""
        return anyio.CancelScope()

    @asynccontextmanager
    async def connection_tasks(self) -> AsyncIterator[Spawn]:
        """Where connections' tasks run: yields a :data:`Spawn`, and waits for its tasks on exit.

        This default is an anyio task group; an edge brings its loop's own,
        cheaper one (a connection needs no task handle).
        """
        async with anyio.create_task_group() as group:
            yield group.start_soon

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

#: Orders a pool job's end against its waiter's cancellation (two flags, each side writing one and
#: reading the other): held for a few bytecodes, shared by every job rather than made for each.
#: Under the GIL both sides could see each other and close a response twice, one after the other;
#: without it, at the same time, or neither.
HANDOFF = threading.Lock()


class _PoolCall:
    """One job for the worker pool and its outcome, handed back to the loop."""

    __slots__ = ("fn", "args", "unless", "wake", "done", "ok", "value", "abandoned", "finished")

    def __init__(self, fn: Callable[..., Any], args: tuple, unless: Callable[[], bool] | None,
                 wake: Callable[[Callable[[], None]], None]) -> None:
        self.fn, self.args, self.unless, self.wake = fn, args, unless, wake
        self.done = anyio.Event()
        self.ok = False
        self.value: Any = None
        self.abandoned = False  # the waiter was cancelled: nobody will take the result
        self.finished = False  # the job has run: its result is there to take (or to close)

    def run(self) -> None:
        """On a worker thread."""
        try:
            if self.unless is not None and self.unless():
                raise ClientDisconnected("the client gave up before the job started")
            self.value = self.fn(*self.args)
            self.ok = True
        except BaseException as exc:
            self.value = exc
        self.fn = self.args = self.unless = None  # the job's inputs go now, not with the loop's wake-up
        with HANDOFF:  # exactly one of this worker and a cancelled waiter closes an unsent response
            self.finished = True
            unsent = self.abandoned
        if unsent and self.ok and isinstance(self.value, Response):
            close_body(self.value.body)  # a response nobody will send still closes (a WSGI iterable's close())
        try:
            self.wake(self.done.set)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more


class AsyncServer:
    """The loop's side of the server: what its connections share (``connection.Server``)."""

    def __init__(self, runtime: AsyncRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.handler = runtime.handler
        self.handler_is_async = is_async_handler(runtime.handler)
        self.inline = self.config.blocking_handlers == "inline"
        self.cancel_scope = runtime.cancel_scope
        self.token = None
        self.stopping = False
        self.connections: set[Connection] = set()
        self.room = waiting_room(self.config.header_timeout, tls=self.config.tls_endpoint is not None)
        self.starting = 0  # handed a task, not yet a Connection (its transport is being made)
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
        self._not_accepting = anyio.Event()
        self.token = anyio.lowlevel.current_token()
        try:
            async with self.handler_lifespan(), anyio.create_task_group() as tasks:
                self.spawn: Spawn = await tasks.start(self._host_connections)
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
            if self.room is not None:
                self.room.close()
            for sock in self.runtime.listeners:  # the accept loop closes them; a failed startup never ran it
                sock.close()

    def handler_lifespan(self) -> AbstractAsyncContextManager[object]:
        """The handler's own life around the server's: ``handler.lifespan(tasks)``, if it has that hook.

        An optional attribute of the handler: a factory of async context
        managers. The server enters what it returns on the loop before it
        accepts the first connection, and leaves it after the drain, once
        every connection has closed or been cancelled (``shutdown_timeout``).
        If entering raises, the server does not start and ``start()`` raises
        that. A handler without the attribute costs nothing here.

        ``tasks`` is :meth:`AsyncRuntime.connection_tasks`, the loop's own
        and cheapest place for tasks, for a handler whose requests start
        tasks that outlive its call: the ASGI adapter runs each request's app
        in one, and its app's lifespan protocol in the hook itself.
        """
        lifespan = getattr(self.handler, "lifespan", None)
        return lifespan(self.runtime.connection_tasks) if lifespan is not None else nullcontext()

    async def _host_connections(self, *, task_status: anyio.abc.TaskStatus[Spawn]) -> None:
        async with self.runtime.connection_tasks() as spawn:
            task_status.started(spawn)
            await anyio.sleep_forever()

    async def _sweep(self) -> None:
        """Every connection's deadlines, checked by one task (see ``connection.py``)."""
        while True:
            await anyio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            if self.room is not None:
                self.room.expire(now)
            for connection in list(self.connections):
                connection.check(now)

    def stop(self) -> None:
        """On the loop: begin the graceful shutdown."""
        self.stopping = True
        self._stop.set()

    # Accepting ---------------------------------------------------------------------

    async def _accept(self, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                async with anyio.create_task_group() as accepting:
                    for sock in self.runtime.listeners:
                        accepting.start_soon(self._listen, sock)
                    if self.room is not None:
                        accepting.start_soon(self.room.serve, self._start)
        finally:
            self._not_accepting.set()

    async def _listen(self, sock: socket.socket) -> None:
        """Accept connections on ``sock`` until cancelled, the whole backlog per wake-up.

        Taking one connection per trip round the loop starved newcomers
        behind busy connections (at 1,000 connections the trio runtime had
        accepted only half of them after six seconds); an accepted socket
        costs little until it speaks, so the batch can be large.
        """
        sock.setblocking(False)
        batch = self.config.backlog  # the most the kernel can have queued: all of it, while it is cheap
        try:
            while True:
                await anyio.wait_readable(sock)
                for _ in range(batch):
                    try:
                        client, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # EMFILE and friends: back off, do not spin
                        logger.warning("accept failed: %s", exc)
                        await anyio.sleep(0.05)
                        break
                    self._arrived(client)
        finally:
            sock.close()

    def open_connections(self) -> int:
        room = self.room  # stats() reads this from another thread, while a shutdown may clear it
        return len(self.connections) + self.starting + (len(room) if room is not None else 0)

    def _arrived(self, sock: socket.socket) -> None:
        self.accepted += 1
        sock.setblocking(False)
        if self.stopping or self.open_connections() >= self.config.max_connections:
            self.rejected += 1
            self.spawn(self._refuse, sock)
        elif self.room is not None:
            self.room.add(sock)
        else:
            self._start(sock, time.monotonic() + self.config.header_timeout)

    def _start(self, sock: socket.socket, head_deadline: float) -> None:
        """The client has spoken (or closed): now the connection gets its task and transport."""
        self.starting += 1
        self.spawn(self._serve_socket, sock, head_deadline)

    async def _serve_socket(self, sock: socket.socket, head_deadline: float) -> None:
        transport = None
        try:
            transport = await self.runtime.open_transport(sock)
            if self.config.tls_endpoint is not None:
                transport = TLSTransport(transport, self.config.tls_endpoint)
        except Exception:
            pass  # the client has gone already: nothing to serve, nothing to log
        finally:  # cancelled too (a forced shutdown)
            self.starting -= 1
            if transport is None:
                sock.close()
                self._maybe_all_closed()
        if transport is None:
            return
        connection = Connection(self, transport, head_deadline)
        self.connections.add(connection)
        await connection.serve()

    async def _refuse(self, sock: socket.socket) -> None:
        if self.config.tls_endpoint is not None:  # no handshake to spare, so no session to say 503 in
            sock.close()
            return
        try:
            transport = await self.runtime.open_transport(sock)
        except Exception:
            sock.close()
            return
        await reject(transport)

    # Stopping ----------------------------------------------------------------------

    async def _drain(self, tasks: anyio.abc.TaskGroup) -> None:
        """Close idle connections; let busy ones finish; then cancel the rest."""
        await self._not_accepting.wait()  # the listeners are closed, the waiting room no longer watched
        if self.room is not None:
            self.room.close()
            self.room = None
        for connection in list(self.connections):
            connection.close_if_idle()
        with anyio.move_on_after(self.config.shutdown_timeout):
            if self.connections or self.starting:
                await self._all_closed.wait()
        if self.connections:
            logger.warning("shutdown timeout: cancelling %d busy connections", len(self.connections))
        tasks.cancel_scope.cancel()

    # What connections and their exchanges ask of the server ---------------------------

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._maybe_all_closed()

    def _maybe_all_closed(self) -> None:
        if self.stopping and not self.connections and not self.starting:
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
        call = _PoolCall(fn, args, unless, self.call_soon_threadsafe)
        if not self.pool.submit(call.run, waits_on_client):
            raise PoolFull
        try:
            await call.done.wait()
        except BaseException:
            # Cancelled (the connection closed, a forced shutdown): the worker may still finish,
            # and its result must then go with the job. This frame can outlive the await in a
            # reference cycle through the cancellation's traceback (trio's do), which would keep
            # a response of any size until the collector ran.
            with HANDOFF:
                call.abandoned = True
                finished = call.finished
            if finished and call.ok and isinstance(call.value, Response):  # finished before we heard
                close_body(call.value.body)
            call = None  # noqa: F841
            raise
        if call.ok:
            return call.value
        raise call.value

    def count_overload(self) -> None:
        self.overloaded += 1

    def stats(self) -> dict[str, int]:
        pool = getattr(self, "pool", None)
        return {
            "connections_open": self.open_connections(),
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "requests_overloaded": self.overloaded,
            "threads": thread_count(),
            **(pool.stats() if pool else {}),
        }

