"""One connection of the event-loop runtimes, as a task: requests, handlers, bodies."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.from_thread

from protocols import (
    ClientDisconnected,
    ConnectionInfo,
    Event,
    ProtocolSwitched,
    Request,
    RequestBody,
    RequestReceived,
    Response,
    error_response_bytes,
    server_connection,
)

from .._threads import BodyInbox
from .deadlines import BODY, HEAD, IDLE, SEND
from .streams import AsyncStreams, body_reader
from ..common import (
    call_handler,
    check_response,
    discard_unread,
    error_response,
    gather_body_first,
    handler_failed,
    logger,
    socket_address,
    start_response,
)

if TYPE_CHECKING:
    from .server import AsyncServer

__all__ = ["AsyncConnection", "PoolFull"]

RECV_SIZE = 64 * 1024
_DISCONNECTS = (ClientDisconnected, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                anyio.EndOfStream)


class PoolFull(Exception):
    """The worker pool's queue is full: refuse the request."""


# 2. One connection, as a task ---------------------------------------------------



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
        self.streams: AsyncStreams | None = None  # HTTP/2 only
        self.sock = sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = ConnectionInfo(socket_address(stream.extra(anyio.abc.SocketAttribute.remote_address)),
                              socket_address(stream.extra(anyio.abc.SocketAttribute.local_address)))
        self.proto = server_connection(info, self.config.limits, self.config.http)

    def expire(self, kind: str) -> None:
        if self.scope is not None and self.expired is None:
            self.expired = kind
            self.scope.cancel()

    def close_if_idle(self) -> None:
        """Shutdown: close now if no request is in progress, else after it."""
        if self.deadline_kind in (HEAD, IDLE) and self.deadline is not None:
            self.expire(IDLE)  # no request in progress: close without a word
        elif self.streams is not None:
            self.streams.wake_reader()  # to send GOAWAY

    async def serve(self) -> None:
        try:
            with anyio.CancelScope() as self.scope:
                if self.proto.multiplexed:
                    await self._serve_streams()
                else:
                    await self._serve()
            if self.expired in (HEAD, BODY) and not self.responding and not self.proto.multiplexed:
                with anyio.move_on_after(1):
                    await self.stream.send(error_response_bytes(408, f"request {self.expired} not received in time"))
        except _DISCONNECTS:
            pass  # the client went away: its connection is all it costs
        except Exception:
            logger.exception("connection failed")
        finally:
            self.server.forget(self)
            if isinstance(self.sock, socket.socket):  # asyncio's transports read eagerly anyway
                discard_unread(self.sock)
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _serve(self) -> None:
        proto = self.proto
        while True:
            events = await self._wait_for_request()
            if events is None:
                return
            if type(events[-1]) is ProtocolSwitched:
                self.proto = events[-1].connection
                await self._serve_streams()
                return
            started = events[0]
            request = started.request
            inbox = None
            if started.has_body:
                inbox = AsyncBodyInbox(self, started.stream_id)
                for event in events[1:]:
                    inbox.absorb(event)
                request.body = inbox.request_body(self.server)
                server = self.server
                if not (server.handler_is_async or server.inline) and gather_body_first(request, proto):
                    await inbox.gather()  # a slow client must not hold a pool thread
            response = await self.call_handler(request, inbox)
            if self.server.stopping:
                proto.close_after_current()
            await self.write_response(started.stream_id, response, self.flush)
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
                if type(events[0]) is RequestReceived or type(events[0]) is ProtocolSwitched:
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

    async def _serve_streams(self) -> None:
        """HTTP/2: this task reads; each stream is answered by a task of its own."""
        self.responding = True  # no 408 in HTTP/1.1 syntax on this connection any more
        self.streams = AsyncStreams(self)
        await self.streams.serve()

    # Socket edges ------------------------------------------------------------

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive(RECV_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return b""

    async def flush(self) -> None:
        await self.send(self.proto.data_to_send())

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
            if not self.proto.multiplexed:  # HTTP/2 refuses the one stream, not the connection
                self.proto.close_after_current()
            return error_response(503, "server overloaded", {"retry-after": "1"})

    async def write_response(self, stream_id: int, response: Response, flush,
                             wait_for_window=None, flush_whole=None) -> None:
        """As the thread runtimes' ``write_response``, awaiting instead of blocking.

        ``flush`` sends what the protocol has queued; ``wait_for_window``
        (HTTP/2) holds a streamed body back while flow control keeps the
        stream's earlier bytes queued; ``flush_whole`` (default ``flush``)
        sends a response held whole in memory, which HTTP/2 batches. A synchronous stream (a file, a
        generator that may block) is read on a worker thread, chunk by chunk,
        so it never blocks the loop.
        """
        proto = self.proto
        self.responding = True
        response = start_response(proto, stream_id, response)
        body = response.body
        if body.data is not None:
            proto.send_data(stream_id, body.data)
            proto.end_stream(stream_id)
            await (flush_whole or flush)()
            return
        try:
            await flush()
            if body.is_async:
                chunks = body.achunks()
                next_chunk = lambda: anext(chunks, None)  # noqa: E731
            else:
                chunks = body.chunks()
                next_chunk = lambda: self._next_chunk(chunks)  # noqa: E731
            while (chunk := await next_chunk()) is not None:
                if wait_for_window is not None:
                    await wait_for_window(stream_id)
                proto.send_data(stream_id, chunk)
                await flush()
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
        await flush()

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
        return body_reader(server, self.read_chunk)

    async def read_chunk(self) -> bytes:
        connection = self.connection
        proto = connection.proto
        while (chunk := self.take()) is None:
            if proto.expects_continue:
                proto.send_continue(self.stream_id)
                await connection.send(proto.data_to_send())
            await self._receive_more()
        return chunk

    async def gather(self) -> None:
        """Read the rest of a small body now, before the handler runs on a pool thread."""
        while not self.ended and self.error is None:
            await self._receive_more()

    async def _receive_more(self) -> None:
        connection = self.connection
        proto = connection.proto
        connection.set_deadline(connection.config.io_timeout, BODY)
        data = await connection.receive()
        connection.deadline = None
        proto.receive_data(data)
        for event in proto.events():
            self.absorb(event)

