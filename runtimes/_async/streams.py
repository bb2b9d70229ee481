"""HTTP/2 on an event loop: the connection's task reads, a task per stream answers.

The same split as the thread runtimes' (``runtimes/_streams.py``), with tasks
for threads: the connection task feeds received bytes to the protocol and
starts a task for each new stream in the connection's task group; a stream's
task runs the handler (awaited, or on the worker pool) and sends its
response. No lock guards the protocol connection: tasks only switch at an
``await``, and none awaits while half-way through a protocol call. Sends are
serialized by ``send_lock`` so bytes leave in the order the protocol encoded
them (HTTP/2's header compression depends on it).

A blocking handler's stream with a small declared body waits for the whole
body in its task before it goes to a worker thread (``gather_body_first``,
as on HTTP/1.1): a client trickling a small POST costs a task, not a thread.

The task group is the structure: a stream task cannot outlive its
connection, and a connection that is cancelled (timeout, forced shutdown)
cancels its streams with it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.from_thread

from protocols import ClientDisconnected, Event, HTTPError, RequestBody, RequestReceived

from .._threads import BodyInbox, deliver
from ..common import error_response, gather_body_first
from .deadlines import IDLE, SEND

if TYPE_CHECKING:
    from .connection import AsyncConnection

__all__ = ["AsyncStreams", "body_reader"]

#: Response bytes a stream may have queued behind a shut flow-control window
#: before its handler is held back.
STREAM_HIGH_WATER = 256 * 1024


def body_reader(server: Any, read_chunk: Callable[[], Awaitable[bytes]]) -> RequestBody:
    """``request.body`` over an awaitable ``read_chunk``, for the handler's kind.

    An ``async def`` handler awaits the chunks; a blocking handler on a worker
    thread asks the loop for each one.
    """
    if server.handler_is_async:
        return RequestBody(asource=read_chunk)
    token = server.token
    return RequestBody(source=lambda: anyio.from_thread.run(read_chunk, token=token), asource=read_chunk)


class AsyncStreams:
    """The streams of one HTTP/2 connection, served by tasks."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.server = connection.server
        self.config = connection.config
        self.proto = connection.proto
        self.send_lock = anyio.Lock()
        self.inboxes: dict[int, AsyncStreamBody] = {}
        self.running = 0
        self._changed = anyio.Event()  # set (and replaced) whenever input arrived
        self._reading: anyio.CancelScope | None = None
        self._flush_scheduled = False

    async def serve(self) -> None:
        proto = self.proto
        connection = self.connection
        async with anyio.create_task_group() as tasks:
            self.tasks = tasks
            self._absorb(proto.events())
            await self.flush()
            while not self._done():
                with anyio.CancelScope() as self._reading:
                    data = await connection.receive()
                    proto.receive_data(data)
                self._absorb(proto.events())
                await self.flush()
            with anyio.CancelScope(shield=True):
                try:
                    await self.flush()  # a last response, a GOAWAY
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
            tasks.cancel_scope.cancel()  # the client is gone: streams still running are moot

    def _done(self) -> bool:
        proto = self.proto
        if self.server.stopping:
            proto.close_after_current()  # GOAWAY; the streams already started go on
        if proto.should_close:
            # The client went away or broke the protocol (the streams are
            # moot), or a GOAWAY has been sent and every stream is answered.
            return True
        self._settle_deadline()
        return False

    def _absorb(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is RequestReceived:
                self.running += 1
                if event.has_body:
                    self.inboxes[event.stream_id] = AsyncStreamBody(self, event.stream_id)
                self.tasks.start_soon(self._serve_stream, event)
            else:
                deliver(self.inboxes, event)
        self._changed.set()
        self._changed = anyio.Event()

    def _settle_deadline(self) -> None:
        """No stream running: the keep-alive clock runs; otherwise none does."""
        connection = self.connection
        if self.send_lock.locked():
            return  # the send in progress owns the deadline, and settles it when done
        if self.running:
            connection.deadline = None
        elif connection.deadline is None or connection.deadline_kind != IDLE:
            connection.set_deadline(self.config.keep_alive_timeout, IDLE)

    async def flush_soon(self) -> None:
        """Send what is queued once the tasks ready to run now have had their turn.

        When a read brings many requests, their handlers' responses then
        leave in one send instead of one each: the flushing task is queued
        behind the stream tasks already runnable.
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.tasks.start_soon(self._scheduled_flush)

    async def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            await self.flush()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the connection task finds out on its next read

    async def flush(self) -> None:
        """Send what the protocol has queued, one sender at a time."""
        connection = self.connection
        async with self.send_lock:
            data = self.proto.data_to_send()
            if data:
                connection.set_deadline(self.config.io_timeout, SEND)
                try:
                    await connection.stream.send(data)
                finally:
                    connection.deadline = None
        self._settle_deadline()

    def wake_reader(self) -> None:
        """Interrupt the connection task's read, so it looks at the server's state again."""
        if self._reading is not None:
            self._reading.cancel()

    async def wait_changed(self, timeout: float, why: str) -> None:
        with anyio.move_on_after(timeout) as scope:
            await self._changed.wait()
        if scope.cancelled_caught:
            raise ClientDisconnected(why)

    # -- one stream's task ---------------------------------------------------

    async def _serve_stream(self, started: RequestReceived) -> None:
        stream_id = started.stream_id
        request = started.request
        inbox = self.inboxes.get(stream_id)
        if inbox is not None:
            request.body = body_reader(self.server, inbox.read_chunk)
        server = self.server
        try:
            if (inbox is not None and not (server.handler_is_async or server.inline)
                    and gather_body_first(request, self.proto) and not await inbox.gather()):
                response = error_response(408, "request body not received in time")
            else:
                response = await self.connection.call_handler(request, inbox)
            await self.connection.write_response(stream_id, response, self.flush, self.wait_for_window,
                                                 self.flush_soon)
        except (ClientDisconnected, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.proto.abort_stream(stream_id)
        finally:
            self.inboxes.pop(stream_id, None)
            self.running -= 1
            await self.flush_soon()
            if self.proto.should_close:
                self.wake_reader()  # the connection is finished

    async def wait_for_window(self, stream_id: int) -> None:
        proto = self.proto
        while True:
            if proto.stream_reset(stream_id):
                raise ClientDisconnected("the client reset the stream")
            if proto.pending(stream_id) <= STREAM_HIGH_WATER:
                return
            await self.wait_changed(self.config.io_timeout, "the client stopped reading (window shut)")


class AsyncStreamBody(BodyInbox):
    """``request.body`` of one stream: chunks arrive from the connection's task.

    Each chunk taken is reported to the protocol as consumed, which reopens
    the client's flow-control window: it sends only as fast as the handler reads.
    """

    def __init__(self, streams: AsyncStreams, stream_id: int) -> None:
        super().__init__(stream_id)
        self.streams = streams

    async def gather(self) -> bool:
        """Wait until the whole body is in; False if it took longer than io_timeout.

        A body that failed (the client reset the stream or hung up) raises
        ClientDisconnected: no thread is involved for it.
        """
        deadline = time.monotonic() + self.streams.config.io_timeout
        while not self.ended and self.error is None:
            try:
                await self.streams.wait_changed(deadline - time.monotonic(), "body stalled")
            except ClientDisconnected:
                return False
        if not self.ended:
            raise ClientDisconnected("the request body failed before the handler ran")
        return True

    async def read_chunk(self) -> bytes:
        streams = self.streams
        deadline = time.monotonic() + streams.config.io_timeout
        while (chunk := self.take()) is None:
            left = deadline - time.monotonic()
            try:
                await streams.wait_changed(left, "body stalled")
            except ClientDisconnected:
                raise HTTPError(408, "request body not received in time") from None
        if chunk:
            streams.proto.consumed(self.stream_id, len(chunk))
            await streams.flush()  # a WINDOW_UPDATE, perhaps
        return chunk
