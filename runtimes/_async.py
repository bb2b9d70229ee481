"""The event-loop runtimes' one driver, written once on anyio.

``asyncio_runtime`` and ``trio_runtime`` differ only in which event loop
``anyio.run`` starts; everything else, from accepting to shutting down, is
this module. hypercorn keeps a tree of worker code per event loop and the two
drift apart; here there is one driver and two one-line edges.

Read it in this order:

1. :meth:`AsyncRuntime.serve`: start the loop; :meth:`AsyncServer.run`:
   accept connections until told to stop, then shut down gracefully.
2. :meth:`AsyncConnection.serve`: one connection's life, as a task.
3. :meth:`AsyncConnection.call_handler`: how the *same* handlers run here.
   An ``async def`` handler is awaited. A plain blocking handler goes to the
   same elastic, bounded ``WorkerPool`` the hybrid runtime uses (so the two
   differ only in how sockets wait, and overload gets the same 503): a
   blocking call blocks a thread, not the loop. With
   ``blocking_handlers="inline"`` it runs on the loop itself, which is fast
   for handlers that never block and the clearest demonstration of what one
   blocking call does to everyone else.

The backend edges supply one thing: :meth:`AsyncRuntime.thread_notifier`,
the loop's own thread-safe "call this soon" (asyncio's
``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``), which a
worker uses to say its handler is done without waiting for the loop.
4. :class:`AsyncBodyInbox`: the request body, awaited by async handlers and
   fetched through the loop by handlers on threads.
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

from protocols import (
    ClientDisconnected,
    ConnectionInfo,
    Event,
    HTTP11Connection,
    Request,
    RequestBody,
    RequestReceived,
    Response,
    error_response_bytes,
)

from ._threads import BodyInbox, WorkerPool
from .common import (
    Runtime,
    call_handler,
    check_response,
    error_response,
    handler_failed,
    is_async_handler,
    logger,
    socket_address,
    start_response,
    thread_count,
)

__all__ = ["AsyncRuntime"]

RECV_SIZE = 64 * 1024
SWEEP_INTERVAL = 0.1  # how often deadlines are checked (timeouts are this precise)
_DISCONNECTS = (ClientDisconnected, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                anyio.EndOfStream)


class AsyncRuntime(Runtime):
    """A runtime whose connections are tasks on one event loop."""

    supports_async = True
    uses_worker_pool = True  # blocking handlers queue for a bounded set of threads
    backend = "?"

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.server: AsyncServer | None = None
        self._stop_requested = threading.Event()

    def backend_options(self) -> dict[str, Any]:
        return {}

    def thread_notifier(self) -> Callable[[Callable[[], None]], None]:
        """Called on the loop: a function other threads use to run a callback on it."""
        raise NotImplementedError

    async def serve_listener(self, sock: socket.socket, on_stream: Callable[[Any], None]) -> None:
        """Accept connections on ``sock`` and hand each stream to ``on_stream``, until cancelled.

        This default uses anyio's socket streams; an edge may bring its own
        stream type, with ``receive(max_bytes)``, ``send(data)``, ``aclose()``
        and ``extra(attribute)`` as on ``anyio.abc.SocketStream``.

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
                    on_stream(await anyio.abc.SocketStream.from_socket(client))
        finally:
            sock.close()

    def serve(self, ready: Callable[[], None]) -> None:
        self.server = AsyncServer(self)
        anyio.run(self.server.run, ready, backend=self.backend, backend_options=self.backend_options())

    def stop(self) -> None:
        self._stop_requested.set()
        server = self.server
        if server is not None and server.token is not None:
            try:
                anyio.from_thread.run_sync(server.stop, token=server.token)
            except RuntimeError:
                pass  # the loop has already finished

    def stats(self) -> dict[str, int]:
        return self.server.stats() if self.server else {}


# 1. Accepting and stopping ------------------------------------------------------

class AsyncServer:
    def __init__(self, runtime: AsyncRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.handler = runtime.handler
        self.handler_is_async = is_async_handler(runtime.handler)
        self.inline = self.config.blocking_handlers == "inline"
        self.token = None
        self.stopping = False
        self.connections: set[AsyncConnection] = set()
        self.accepted = 0
        self.rejected = 0
        self.overloaded = 0

    async def run(self, ready: Callable[[], None]) -> None:
        config = self.config
        self.pool = WorkerPool(config.max_workers, config.worker_keep_alive, config.max_queued_requests)
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
                if self.runtime._stop_requested.is_set():  # stop() came before we had a token
                    self.stop()
                await self._stop.wait()
                accepting.cancel()
                await self._drain(tasks)
        finally:
            self.pool.close()

    async def _sweep(self) -> None:
        """Every connection's timeouts, checked by one task (see AsyncConnection)."""
        while True:
            await anyio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for connection in list(self.connections):
                deadline = connection.deadline
                if deadline is not None and now >= deadline:
                    connection.expire(connection.deadline_kind)

    def stop(self) -> None:
        """On the loop: begin the graceful shutdown."""
        self.stopping = True
        self._stop.set()

    async def _accept(self, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as listeners:
                for sock in self.runtime.listeners:
                    listeners.start_soon(self.runtime.serve_listener, sock, self._on_stream)

    def _on_stream(self, stream: Any) -> None:
        self.accepted += 1
        if self.stopping or len(self.connections) >= self.config.max_connections:
            self.rejected += 1
            self.tasks.start_soon(_reject, stream)
            return
        connection = AsyncConnection(self, stream)
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

    def forget(self, connection: AsyncConnection) -> None:
        self.connections.discard(connection)
        if self.stopping and not self.connections:
            self._all_closed.set()

    async def run_in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a pool thread and await its result.

        Raises :class:`PoolFull` when the pool's queue is full. If the
        awaiting task is cancelled (a forced shutdown) it stops waiting; the
        thread finishes, or not, on its own.
        """
        done = anyio.Event()
        outcome: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:
                outcome.append((False, exc))
            try:
                self.call_soon_threadsafe(done.set)
            except RuntimeError:
                pass  # the loop is gone: nobody is waiting any more

        if not self.pool.submit(job):
            raise PoolFull
        await done.wait()
        ok, value = outcome[0]
        if ok:
            return value
        raise value

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


class PoolFull(Exception):
    """The worker pool's queue is full: refuse the request."""


async def _reject(stream: anyio.abc.SocketStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.send(error_response_bytes(503, "too many connections", [("retry-after", "1")]))
        except _DISCONNECTS:
            pass
    await stream.aclose()


# 2. One connection, as a task ---------------------------------------------------

# What a connection's deadline means when the sweeper finds it has passed.
HEAD = "head"  # the request head did not arrive in time: 408, close
IDLE = "idle"  # keep-alive idle timeout: close quietly
BODY = "body"  # the request body stalled: 408 if no response has started, close
SEND = "send"  # the client stopped reading our response: close


class AsyncConnection:
    """One connection's task.

    Timeouts cost nothing on the hot path: instead of a cancel scope per
    read or write (anyio's cost several microseconds each on asyncio), the
    connection keeps a ``deadline`` and its meaning, and the server's sweeper
    task cancels the connection's one scope when a deadline passes.
    """

    def __init__(self, server: AsyncServer, stream: anyio.abc.SocketStream) -> None:
        self.server = server
        self.config = server.config
        self.stream = stream
        self.scope: anyio.CancelScope | None = None
        self.deadline: float | None = time.monotonic() + self.config.header_timeout
        self.deadline_kind = HEAD
        self.expired: str | None = None
        self.responding = False
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = ConnectionInfo(socket_address(stream.extra(anyio.abc.SocketAttribute.remote_address)),
                              socket_address(stream.extra(anyio.abc.SocketAttribute.local_address)))
        self.proto = HTTP11Connection(info, self.config.limits)

    def expire(self, kind: str) -> None:
        if self.scope is not None and self.expired is None:
            self.expired = kind
            self.scope.cancel()

    def close_if_idle(self) -> None:
        if self.deadline_kind in (HEAD, IDLE) and self.deadline is not None:
            self.expire(IDLE)  # no request in progress: close without a word

    async def serve(self) -> None:
        try:
            with anyio.CancelScope() as self.scope:
                await self._serve()
            if self.expired in (HEAD, BODY) and not self.responding:
                with anyio.move_on_after(1):
                    await self.stream.send(error_response_bytes(408, f"request {self.expired} not received in time"))
        except _DISCONNECTS:
            pass  # the client went away: its connection is all it costs
        except Exception:
            logger.exception("connection failed")
        finally:
            self.server.forget(self)
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _serve(self) -> None:
        proto = self.proto
        while True:
            events = await self._wait_for_request()
            if events is None:
                return
            started = events[0]
            request = started.request
            inbox = None
            if started.has_body:
                inbox = AsyncBodyInbox(self, started.stream_id)
                for event in events[1:]:
                    inbox.absorb(event)
                request.body = inbox.request_body(self.server)
            response = await self.call_handler(request, inbox)
            if self.server.stopping:
                proto.close_after_current()
            await self.write_response(started.stream_id, response)
            if proto.should_close:
                await self.send(proto.data_to_send())
                return
            self.set_deadline(self.config.keep_alive_timeout, IDLE)

    async def _wait_for_request(self) -> list[Event] | None:
        """Read until a request head is parsed; None means close the connection.

        Deadlines as on the thread runtimes: a new connection has
        header_timeout to deliver its first head; an idle keep-alive one may
        stay silent for keep_alive_timeout, then has header_timeout to finish.
        """
        proto = self.proto
        while True:
            events = proto.events()
            if events:
                if type(events[0]) is RequestReceived:
                    self.deadline = None  # the handler takes as long as it takes
                    self.responding = False
                    return events
                await self.send(proto.data_to_send())  # ProtocolFailed: its 4xx is queued
                return None
            if proto.should_close or self.server.stopping:
                await self.send(proto.data_to_send())
                return None
            data = await self.receive()
            if not data:
                return None
            if self.deadline_kind is IDLE:
                self.set_deadline(self.config.header_timeout, HEAD)
            proto.receive_data(data)

    def set_deadline(self, seconds: float, kind: str) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    # Socket edges ------------------------------------------------------------

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive(RECV_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return b""

    async def send(self, data: bytes) -> None:
        if not data:
            return
        saved = self.deadline, self.deadline_kind
        self.set_deadline(self.config.io_timeout, SEND)
        try:
            await self.stream.send(data)
        finally:
            self.deadline, self.deadline_kind = saved

    # 3. Running the handler ------------------------------------------------------

    async def call_handler(self, request: Request, inbox: AsyncBodyInbox | None) -> Response:
        server = self.server
        handler = server.handler
        if server.handler_is_async:
            try:
                return check_response(await handler(request), request)
            except Exception as exc:
                return handler_failed(exc, request)
        if server.inline:
            if inbox is not None:  # a handler on the loop cannot wait for body bytes
                request.body = RequestBody(_buffered(await request.body.aread()))
            return call_handler(handler, request)
        try:
            return await server.run_in_pool(call_handler, handler, request)
        except PoolFull:
            server.overloaded += 1
            self.proto.close_after_current()
            return error_response(503, "server overloaded", {"retry-after": "1"})

    async def write_response(self, stream_id: int, response: Response) -> None:
        """As the thread runtimes' ``write_response``, awaiting instead of blocking.

        A synchronous stream (a file, a generator that may block) is read on
        a worker thread, chunk by chunk, so it never blocks the loop.
        """
        proto = self.proto
        self.responding = True
        response = start_response(proto, stream_id, response)
        body = response.body
        if body.data is not None:
            proto.send_data(stream_id, body.data)
            proto.end_stream(stream_id)
            await self.send(proto.data_to_send())
            return
        try:
            await self.send(proto.data_to_send())
            if body.is_async:
                async for chunk in body.achunks():
                    proto.send_data(stream_id, chunk)
                    await self.send(proto.data_to_send())
            else:
                chunks = body.chunks()
                while (chunk := await self._next_chunk(chunks)) is not None:
                    proto.send_data(stream_id, chunk)
                    await self.send(proto.data_to_send())
            proto.end_stream(stream_id)
        except _DISCONNECTS:
            proto.abort_stream(stream_id)
            raise
        except Exception:
            logger.exception("response body failed mid-stream; aborting the stream")
            proto.abort_stream(stream_id)
        finally:
            with anyio.CancelScope(shield=True):
                if body.is_async:
                    await body.aclose()
                else:
                    body.close()
        await self.send(proto.data_to_send())

    async def _next_chunk(self, chunks) -> bytes | None:
        if self.server.inline:
            return next(chunks, None)
        return await self.server.run_in_pool(next, chunks, None)


def _buffered(data: bytes):
    """A body source over bytes already read (inline handlers)."""
    parts = [data]
    return lambda: parts.pop() if parts else b""


# 4. The request body -------------------------------------------------------------

class AsyncBodyInbox(BodyInbox):
    """Body events for one request; the connection task reads more on demand."""

    def __init__(self, connection: AsyncConnection, stream_id: int) -> None:
        super().__init__(stream_id)
        self.connection = connection

    def request_body(self, server: AsyncServer) -> RequestBody:
        if server.handler_is_async:
            return RequestBody(asource=self.read_chunk)
        # A handler on a worker thread asks the loop for each chunk.
        token = server.token
        return RequestBody(source=lambda: anyio.from_thread.run(self.read_chunk, token=token),
                           asource=self.read_chunk)

    async def read_chunk(self) -> bytes:
        connection = self.connection
        proto = connection.proto
        while (chunk := self.take()) is None:
            if proto.expects_continue:
                proto.send_continue(self.stream_id)
                await connection.send(proto.data_to_send())
            connection.set_deadline(connection.config.io_timeout, BODY)
            data = await connection.receive()
            connection.deadline = None
            proto.receive_data(data)
            for event in proto.events():
                self.absorb(event)
        return chunk

