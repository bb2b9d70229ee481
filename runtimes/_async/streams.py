"""Streams that overlap (HTTP/2) on an event loop: the connection's task reads, a task per stream answers.

The same split as the thread runtimes', with tasks for threads. The
connection's task runs :meth:`StreamSet.serve`: it feeds received bytes to
the protocol connection, files body events with their streams' bodies, and
starts a task for each new stream in the set's task group. A stream's task
lives the stream through ``exchange.answer``, exactly as an HTTP/1.1 request
is lived; the stream set is its :class:`~.exchange.Carrier`.

No lock guards the protocol connection: tasks only switch at an ``await``,
and none awaits half-way through a protocol call. Sends are serialized by
``send_lock``, so bytes leave in the order the protocol encoded them
(HTTP/2's header compression depends on it). A response that is whole in
memory is not sent at once but by :meth:`StreamSet.flush_soon`: when one
read brings many requests, their responses leave in one send.

The task group is the structure: a stream task cannot outlive its
connection, and a connection that is cancelled (a timeout, a forced
shutdown) cancels its streams with it.

Deadlines, each with one owner:

- the keep-alive clock (IDLE) belongs to the stream set: it runs while no
  stream runs and nothing is being sent, and the set says so through
  :meth:`Line.keep_alive`; the connection's sweeper enforces it;
- a send (SEND) belongs to the connection's sender, :meth:`Line.send`;
- a body read (BODY) belongs to the stream's :class:`~.exchange.AsyncBody`:
  here it waits for the reading task with a cancel scope of its own
  (:meth:`StreamSet.more`), and a late body is that stream's 408 alone;
- a wait for the flow-control window belongs to the stream's writer
  (:meth:`StreamSet.wait_for_window`): the whole response may take
  ``io_timeout`` plus its size at ``send_rate``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Protocol

import anyio

from protocols import (
    ClientDisconnected,
    Event,
    ProtocolSwitched,
    RequestReceived,
    ServerConnection,
)
from protocols.forwarded import TrustedProxies

from .._lifecycle import AccessLog, ParkedResponses, deliver
from .exchange import AsyncBody, Host, answer, answer_logged
from .transport import RECV_SIZE

__all__ = ["Line", "StreamSet"]

#: Response bytes a stream may have queued behind a shut flow-control window
#: before its handler is held back.
STREAM_HIGH_WATER = 256 * 1024

_SEND_FAILED = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Line(Protocol):
    """What a stream set needs from the connection it runs on (``connection.Connection``)."""

    async def receive(self, max_bytes: int) -> bytes:
        """The next bytes from the client; b"" once it has closed."""

    async def send(self, data: bytes) -> None:
        """Send bytes to the client, bounded by the connection's send deadline."""

    def keep_alive(self, on: bool) -> None:
        """Start (again from now) or stop the connection's keep-alive clock."""


class StreamSet:
    """The streams of one multiplexed connection, served by tasks."""

    def __init__(self, line: Line, host: Host, proto: ServerConnection, io_timeout: float,
                 receive_rate: float, send_rate: float, proxies: TrustedProxies | None = None,
                 access_log: AccessLog | None = None) -> None:
        self.line = line
        self.host = host
        self.proto = proto
        self.io_timeout = io_timeout
        self.receive_rate = receive_rate
        self.send_rate = send_rate
        self.proxies = proxies  # (see exchange.Carrier)
        self.answer = answer if access_log is None else partial(answer_logged, access_log)  # (see connection.py)
        self.parked = ParkedResponses(io_timeout, send_rate)
        self.send_lock = anyio.Lock()
        self.bodies: dict[int, AsyncBody] = {}
        self.running = 0  # streams started and not yet answered
        self._changed = anyio.Event()  # set (and replaced) whenever input arrived
        self._reading: anyio.CancelScope | None = None
        self._flush_scheduled = False
        self._idle: bool | None = None  # is the keep-alive clock running? (None: not said yet)

    # 1. The reading task ------------------------------------------------------------

    async def serve(self, events: list[Event]) -> None:
        """On the connection's task: read until the connection is done. ``events`` come first."""
        async with anyio.create_task_group() as tasks:
            self.tasks = tasks
            try:
                self._absorb(events)
                await self.flush()
                while not self._done():
                    with anyio.CancelScope() as self._reading:
                        data = await self.line.receive(RECV_SIZE)
                        self.proto.receive_data(data)
                    self._absorb(self.proto.events())
                    await self.flush()
            finally:
                # However reading ended (a send that failed ends it too, before the client's
                # close is read), a body still awaited will not come. A handler's thread
                # blocked on one must hear so now: its stream task cannot be cancelled
                # while the thread runs, and this task group waits for that task.
                self._end_bodies()
            with anyio.CancelScope(shield=True):
                try:
                    await self.flush()  # a last response, a GOAWAY
                except _SEND_FAILED:
                    pass
            tasks.cancel_scope.cancel()  # the client is gone: streams still running are moot

    def _end_bodies(self) -> None:
        for body in self.bodies.values():
            body.fail(ClientDisconnected("the connection closed mid-body"))
        self._changed.set()

    def _done(self) -> bool:
        proto = self.proto
        if self.host.stopping:
            proto.close_after_current()  # GOAWAY; the streams already started go on
        if proto.should_close:
            # The client went away or broke the protocol (the streams are
            # moot), or a GOAWAY has been sent and every stream is answered.
            return True
        self._settle()
        return False

    def _absorb(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self.running += 1
                body = None
                if event.has_body:
                    body = self.bodies[event.stream_id] = AsyncBody(event.stream_id, self, self.io_timeout, self.receive_rate)
                self.tasks.start_soon(self._serve_stream, event, body)
            elif kind is ProtocolSwitched:
                # Always last in its batch: the successor's events continue it.
                # (A multiplexed connection only ever hands over to another.)
                self.proto = event.connection
                self._absorb(self.proto.events())
                return
            else:
                deliver(self.bodies, event)
        self._changed.set()
        self._changed = anyio.Event()

    def check(self, now: float) -> None:
        """The sweeper's tick: abort responses parked too long behind a shut window, and send the resets."""
        late = self.parked.overdue(self.proto, now)
        for stream_id in late:
            self.proto.abort_stream(stream_id)
        if late and not self._flush_scheduled:
            self._flush_scheduled = True
            self.tasks.start_soon(self._scheduled_flush)

    def wake_reader(self) -> None:
        """Interrupt the reading task's read, so it looks at the server's state again."""
        if self._reading is not None:
            self._reading.cancel()

    # 2. One stream's task -----------------------------------------------------------

    async def _serve_stream(self, started: RequestReceived, body: AsyncBody | None) -> None:
        try:
            await self.answer(self.host, self, started, body)
        finally:
            self.bodies.pop(started.stream_id, None)
            self.running -= 1
            await self.flush_soon()
            if self.proto.should_close:
                self.wake_reader()  # the connection is finished

    # 3. The carrier, as a stream's exchange sees it --------------------------------

    async def more(self, body: AsyncBody, deadline: float) -> bool:
        """A stream's body waits for the reading task to deliver (any input wakes it)."""
        return await self._wait_changed(deadline)

    async def wait_for_window(self, stream_id: int, due: float) -> None:
        """Hold a streamed response back while its earlier bytes wait for the client's window.

        ``due`` bounds the whole response (io_timeout plus its size at the
        send rate, kept by the writer): input that keeps arriving (PINGs, a
        window opened a crack) does not hold it forever.
        """
        proto = self.proto
        while True:
            if proto.stream_reset(stream_id):
                raise ClientDisconnected("the client reset the stream")
            if proto.pending(stream_id) <= STREAM_HIGH_WATER:
                return
            if not await self._wait_changed(min(due, time.monotonic() + self.io_timeout)):
                raise ClientDisconnected("the client stopped reading (window shut)")

    async def _wait_changed(self, deadline: float) -> bool:
        """Wait until input arrives; False if ``deadline`` (monotonic) passed first."""
        with anyio.move_on_after(deadline - time.monotonic()):
            await self._changed.wait()
            return True
        return False

    async def flush(self) -> None:
        """Send what the protocol has queued, one sender at a time."""
        async with self.send_lock:
            data = self.proto.data_to_send()
            if data:
                self._keep_alive(False)  # the send is bounded by its own deadline
                await self.line.send(data)
        self._settle()

    async def flush_soon(self) -> None:
        """Send what is queued once the tasks ready to run now have had their turn.

        When a read brings many requests, their handlers' responses then
        leave in one send instead of one each: the flushing task is queued
        behind the stream tasks already runnable.
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.tasks.start_soon(self._scheduled_flush)

    flush_whole = flush_soon
    send_file = None  # HTTP/2 frames every byte (see exchange.Carrier)

    async def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            await self.flush()
        except _SEND_FAILED:
            pass  # the reading task finds out on its next read

    # 4. The keep-alive clock ----------------------------------------------------------

    def _settle(self) -> None:
        """No stream running and nothing being sent: the keep-alive clock runs; otherwise not."""
        if not self.send_lock.locked():  # a send in progress settles when it is done
            self._keep_alive(not self.running)

    def _keep_alive(self, on: bool) -> None:
        if on is not self._idle:
            self._idle = on
            self.line.keep_alive(on)
