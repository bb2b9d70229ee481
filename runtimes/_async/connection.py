"""One connection of the event-loop runtimes, as a task.

:meth:`Connection.serve` is a connection's whole life. It starts with the
protocol :func:`~protocols.server_connection` chooses and serves requests
one at a time (HTTP/1.1): read until a request head is parsed, live the
exchange (``exchange.answer``: body, handler, response), wait for the next.
No task is started per request: the keep-alive hot path is this loop, the
handler and one send. When the protocol hands over to a successor
(:class:`~protocols.ProtocolSwitched`, wherever it comes) the connection
drives the successor from there; a successor whose streams overlap (HTTP/2)
is handed to a :class:`~.streams.StreamSet`, with this task as its reader.

What a connection needs from the server is the small :class:`Server`
interface; what the server calls here is :meth:`Connection.serve`,
:meth:`Connection.check` and :meth:`Connection.close_if_idle`. To an
exchange this connection is a :class:`~.exchange.Carrier`, to a stream set a
:class:`~.streams.Line`. Bytes come and go through an
:class:`~.transport.AsyncTransport`, never a socket.

Deadlines cost nothing on the hot path: instead of a cancel scope per read
or write (anyio's cost several microseconds each on asyncio), the connection
keeps two deadlines, and the server's sweeper calls :meth:`Connection.check`
every tick, which cancels the connection's one scope when one has passed:

- ``deadline`` (with ``deadline_kind``), the wait for the client. It has one
  writer at a time, whoever is reading: on HTTP/1.1 this loop between
  requests (HEAD for a head being received, IDLE for keep-alive) and, during
  a request, the exchange's body read (BODY, through :meth:`Connection.more`);
  on HTTP/2 the stream set's keep-alive clock (IDLE, through
  :meth:`Connection.keep_alive`).
- ``send_deadline`` (SEND), owned by the sender: every byte leaves through
  :meth:`Connection.flush` or :meth:`Connection.send`, each bounded by
  ``io_timeout`` plus the time its bytes take at ``min_send_rate`` (a reader
  that trickles runs out of time).

When HEAD or BODY passes before a response has started, the client gets a
408 (the connection's last words, with a second of their own to leave);
IDLE and SEND close quietly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

import anyio

from protocols import (
    ClientDisconnected,
    Event,
    ProtocolFailed,
    ProtocolSwitched,
    RequestReceived,
    error_response_bytes,
    server_connection,
)

from .._lifecycle import Deadline, access_log, trusted_proxies
from ..common import Config, logger
from .exchange import AsyncBody, Host, answer, answer_logged
from .streams import StreamSet
from .transport import RECV_SIZE, AsyncTransport, is_disconnect

__all__ = ["Connection", "Server"]

HEAD, BODY, IDLE, SEND = Deadline.HEAD, Deadline.BODY, Deadline.IDLE, Deadline.SEND

FILE_SLICE = 1024 * 1024  # a file sent with sendfile, a deadline per this many bytes


class Scope(Protocol):
    """A cancel scope: ``cancel()`` ends what runs inside it, and the scope swallows that."""

    def __enter__(self) -> Scope: ...

    def __exit__(self, *exc_info: object) -> bool | None: ...

    def cancel(self) -> None: ...


class Server(Host, Protocol):
    """What a connection needs from the server (``server.AsyncServer``), besides what its exchanges need."""

    config: Config
    #: A new cancel scope, the loop's own where it has one (anyio's costs more per connection).
    cancel_scope: Callable[[], Scope]

    def forget(self, connection: Connection) -> None:
        """The connection has closed."""


class Connection:
    """One client connection, served by one task."""

    def __init__(self, server: Server, transport: AsyncTransport, head_deadline: float) -> None:
        self.server = server
        self.config = config = server.config
        self.io_timeout = config.io_timeout
        self.min_send_rate = config.min_send_rate
        self.min_receive_rate = config.min_receive_rate
        self.transport = transport
        self.receive = transport.receive  # a Line's reads are the transport's, unwrapped
        self.proto = server_connection(transport.info, config.limits, config.http, transport.tls)
        self.proxies = trusted_proxies(config)
        self.access_log = access_log(config)
        #: ``exchange.answer``, logged or not: chosen once, so that a request pays nothing for the choice.
        self.answer = answer if self.access_log is None else partial(answer_logged, self.access_log)
        self.scope: Scope | None = None
        # HEAD runs from the connect, not from now: the connection may have waited for its
        # first byte in the server's waiting room (``waiting.py``).
        self.deadline: float | None = head_deadline
        self.deadline_kind = HEAD
        self.send_deadline: float | None = None
        self.expired: Deadline | None = None
        #: (see exchange.Carrier) the file sender, where the transport has one
        self.send_file = self._send_file if getattr(transport, "send_file", None) is not None else None
        self.body: AsyncBody | None = None  # the HTTP/1.1 request in progress, if it has a body
        self.streams: StreamSet | None = None  # once its streams overlap (HTTP/2)

    # 1. As the server sees it ------------------------------------------------------

    async def serve(self) -> None:
        try:
            with self.server.cancel_scope() as self.scope:
                if self.proto.multiplexed:
                    await self._serve_streams(self.proto.events())
                else:
                    await self._serve_one_at_a_time()
            if self.expired is not None:
                await self._answer_expiry(self.expired)
        except Exception as exc:
            if not is_disconnect(exc):  # the client going away costs its connection, and no log line
                logger.exception("connection failed")
        finally:
            self.server.forget(self)
            # Queued responses go now, not when a cycle holding them is collected.
            (self.streams.proto if self.streams is not None else self.proto).release()
            if self.expired is SEND:  # what it did not read is dropped, not trickled out
                self.transport.abort()
            await self.transport.aclose()  # never interrupted: a cancelled connection still closes

    def check(self, now: float) -> None:
        """The sweeper's tick: end the connection if one of its deadlines has passed."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self._expire(self.deadline_kind)
        elif (deadline := self.send_deadline) is not None and now >= deadline:
            self._expire(SEND)
        elif self.streams is not None:
            self.streams.check(now)

    def close_if_idle(self) -> None:
        """Shutdown: close now if no request is in progress, else after it."""
        if self.deadline is not None and self.deadline_kind in (HEAD, IDLE):
            self._expire(IDLE)  # no request in progress: close without a word
        elif self.streams is not None:
            self.streams.wake_reader()  # to send GOAWAY

    def _expire(self, kind: Deadline) -> None:
        if self.scope is not None and self.expired is None:
            self.expired = kind
            self.scope.cancel()

    async def _answer_expiry(self, kind: Deadline) -> None:
        """A 408 for a head or body that came too late, unless a response has begun."""
        answered = self.streams is not None or (self.body is not None and self.body.answered)
        if kind.answer is not None and not answered:
            with anyio.move_on_after(1):
                await self.transport.send(error_response_bytes(kind.answer, kind.reason))
            if kind is BODY and self.access_log is not None and self.body is not None:  # a request was made
                self.access_log.answered(self.body.request, kind.answer, None, self.body.opened)

    # 2. Requests one at a time (HTTP/1.1) -------------------------------------------

    async def _serve_one_at_a_time(self) -> None:
        while True:
            events = await self._wait_for_request()
            if events is None:
                return
            if self.proto.multiplexed:
                await self._serve_streams(events)
                return
            started = events[0]
            body = None
            if started.has_body:
                body = self.body = AsyncBody(started.stream_id, self, self.io_timeout, self.min_receive_rate,
                                             started.request)
                for event in events[1:]:
                    body.absorb(event)
            await self.answer(self.server, self, started, body)
            # An idle keep-alive connection holds no request: at thousands of
            # connections the last one's objects would add up, for the collector too.
            events = started = body = self.body = None
            if self.proto.should_close:
                await self.flush()
                return
            self._expect(IDLE, self.config.keep_alive_timeout)

    async def _wait_for_request(self) -> list[Event] | None:
        """Read until a request head is parsed (or streams begin); None means close the connection.

        Deadlines as on the thread runtimes: a new connection has
        header_timeout to deliver its first head; an idle keep-alive one may
        stay silent for keep_alive_timeout, then has header_timeout to finish.
        """
        while True:
            events = self.proto.events()
            if events and type(events[-1]) is ProtocolSwitched:
                events = self._adopt(events)
                if self.proto.multiplexed:
                    self.deadline = None  # the stream set keeps the clock from here
                    return events
            if events:
                self.deadline = None  # no longer waiting: a handler takes as long as it takes
                if type(events[0]) is RequestReceived:
                    return events
                if self.access_log is not None and type(events[0]) is ProtocolFailed:
                    self.access_log.unparsed(self.proto.info, events[0].status)
                await self.flush()  # ProtocolFailed: its 4xx is queued
                return None
            if self.proto.should_close or self.server.stopping:
                self.deadline = None
                await self.flush()
                return None
            data = await self.receive(RECV_SIZE)
            if not data:
                return None
            if self.deadline_kind is IDLE:
                self._expect(HEAD, self.config.header_timeout)
            self.proto.receive_data(data)

    def _adopt(self, events: list[Event]) -> list[Event]:
        """Drive the successor a ProtocolSwitched names; its events continue the batch."""
        while events and type(events[-1]) is ProtocolSwitched:
            self.proto = events[-1].connection
            events = events[:-1] + self.proto.events()
        return events

    async def _serve_streams(self, events: list[Event]) -> None:
        """Overlapping streams (HTTP/2): this task reads; each stream is answered by a task of its own."""
        self.streams = StreamSet(self, self.server, self.proto, self.io_timeout, self.min_receive_rate,
                                 self.min_send_rate, self.proxies, self.access_log)
        await self.streams.serve(events)

    def _expect(self, kind: Deadline, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    # 3. As an HTTP/1.1 exchange's carrier --------------------------------------------

    async def flush(self) -> None:
        """Send what the protocol has queued (the send inlined: this is the hot path)."""
        data = self.proto.data_to_send()
        if data:
            self.send_deadline = time.monotonic() + self.io_timeout + len(data) / self.min_send_rate
            try:
                await self.transport.send(data)
            finally:
                self.send_deadline = None

    flush_whole = flush  # one request at a time: nothing to batch with
    wait_for_window = None  # no flow control but the socket's

    async def _send_file(self, fd: int, offset: int, count: int) -> None:
        """In slices, each with the deadline of a streamed chunk its size: a client that stops
        reading is cut off after ``io_timeout``, not after the whole file's allowance."""
        send_file = self.transport.send_file
        try:
            while count:
                size = min(count, FILE_SLICE)
                self.send_deadline = time.monotonic() + self.io_timeout + size / self.min_send_rate
                await send_file(fd, offset, size)
                offset += size
                count -= size
        finally:
            self.send_deadline = None

    async def more(self, body: AsyncBody, deadline: float) -> bool:
        """The body read reads the socket itself; its deadline is this connection's until then.

        Never returns False: a BODY deadline that passes ends the connection
        (with a 408 if no response has started), as a HEAD one does.
        """
        self.deadline = deadline
        self.deadline_kind = BODY
        data = await self.receive(RECV_SIZE)
        self.deadline = None
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events():  # the protocol switches between requests, never mid-body
            body.absorb(event)
        if not data:
            # The client closed, or we did (its deadline passed while the body's reader was
            # queued for a worker). Either way no more bytes will come: without this, a reader
            # started after the protocol had reported the close would loop on b"" forever,
            # never yielding, and hold the whole event loop.
            body.fail(ClientDisconnected("the connection closed mid-body"))
        return True

    # 4. As a stream set's line -----------------------------------------------------

    async def send(self, data: bytes) -> None:
        self.send_deadline = time.monotonic() + self.io_timeout + len(data) / self.min_send_rate
        try:
            await self.transport.send(data)
        finally:
            self.send_deadline = None

    def keep_alive(self, on: bool) -> None:
        if on:
            self._expect(IDLE, self.config.keep_alive_timeout)
        else:
            self.deadline = None
