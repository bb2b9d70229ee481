"""One hybrid connection, as the reactor and the workers answering its requests share it.

Everything mutable is guarded by the lock of the connection's
:class:`~.._sync.StreamSet` (``self.lock``): the protocol connection, the
pending output, the deadline, and the wishes ``paused`` / ``want_write``.
Only the reactor talks to the selector (it records what it told it in
``registered``, under the same lock); the connection reaches the reactor
only through the small :class:`Loop` interface.
"""

from __future__ import annotations

import selectors
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from protocols import ClientDisconnected, RequestReceived, error_response_bytes, server_connection

from .._lifecycle import Deadline, access_log, trusted_proxies
from .._sync import StreamSet
from .._transport import SocketTransport
from ..common import Config, Handler

__all__ = ["Connection", "Loop", "READ", "WRITE"]

HIGH_WATER = 256 * 1024  # pending output past which a streaming worker waits
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Loop(Protocol):
    """What a connection asks of the reactor."""

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the reactor thread (from any thread)."""

    def sync_interest(self, connection: Connection) -> None:
        """Reactor thread: make the selector match the connection's wishes."""

    def close(self, connection: Connection) -> None:
        """Reactor thread: close the connection and forget it."""


class Connection:
    """A client connection: read by the reactor, answered by workers."""

    def __init__(self, loop: Loop, transport: SocketTransport, config: Config, handler: Handler) -> None:
        self.loop = loop
        self.transport = transport
        transport.send_limits(config.io_timeout, config.min_send_rate)  # for a worker's send_file
        self.config = config
        proto = server_connection(transport.info, config.limits, config.http, transport.tls)
        self.streams = StreamSet(proto, self, handler, config.io_timeout,
                                 config.min_receive_rate, config.min_send_rate,
                                 proxies=trusted_proxies(config), access_log=access_log(config))
        self.lock = self.streams.lock
        self.writable = threading.Condition(self.lock)  # pending output fell below HIGH_WATER
        self.out = bytearray()
        self.closed = False
        self.close_when_flushed = False
        self.eof = False
        self.paused = False  # stop reading for now (backpressure)
        self.want_write = False  # output is pending
        self.registered = READ  # what the selector was last told (written by the reactor, under the lock)
        self.last_progress = time.monotonic()
        #: When ``out`` must be sent by: io_timeout plus its size at min_send_rate (owned by the reactor).
        self.send_deadline: float | None = None
        self.deadline: float | None = None  # HEAD or IDLE, owned by the reactor
        self.deadline_kind = Deadline.HEAD
        self._set_deadline(config.header_timeout, Deadline.HEAD)

    def _set_deadline(self, seconds: float, kind: Deadline) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    def _settle_deadline(self) -> None:
        """Lock held: no deadline while a request is answered; the idle clock once none is."""
        if self.streams.running:
            self.deadline = None
        elif self.deadline is None or (self.deadline_kind is Deadline.HEAD and self.streams.proto.multiplexed):
            self._set_deadline(self.config.keep_alive_timeout, Deadline.IDLE)

    @property
    def wanted(self) -> int:
        """The selector events this connection wants now (lock held)."""
        reading = not (self.paused or self.eof or self.close_when_flushed)
        return (READ if reading else 0) | (WRITE if self.want_write else 0)

    # -- the reactor's side ----------------------------------------------------------

    def on_readable(self) -> list[RequestReceived]:
        """Reactor: read, parse, and return the streams ready for a worker."""
        data = self.transport.receive_now()
        if data is None:
            return []
        streams = self.streams
        with self.lock:
            busy = streams.running > 0
            if data and not busy and self.deadline_kind is Deadline.IDLE and not streams.proto.multiplexed:
                self._set_deadline(self.config.header_timeout, Deadline.HEAD)  # a head has begun
            streams.proto.receive_data(data)
            ready = streams.absorb(streams.proto.events())
            self.eof = self.eof or not data
            self._settle_deadline()
            # Stop reading only once bytes arrive that nobody wants yet (a pipelined request
            # while one is answered, an upload far ahead of its handler), or while the client
            # is not reading what we owe it: pausing every connection at every request would
            # cost two epoll_ctl calls and a wake-up each.
            self.paused = (busy and not streams.input_wanted_now()) or self.backlogged()
            multiplexed = streams.proto.multiplexed
            gathering = bool(streams.gathering)
            done = (streams.proto.should_close or self.eof) and not streams.running
        if multiplexed or gathering:
            self.flush(wait=False)  # SETTINGS and PING acknowledgements, WINDOW_UPDATEs; a 100 Continue
        if done:
            self.send_and_close()  # with an HTTP/1.1 4xx, if one is queued
        else:
            self.loop.sync_interest(self)
        return ready

    def on_writable(self) -> list[RequestReceived]:
        """Reactor: send what is pending; close once done if so asked.

        Returns a pipelined request that waited for the client to catch up
        with the responses before it, if one is now ready.
        """
        ready: list[RequestReceived] = []
        with self.lock:
            backlogged = self.backlogged()
            try:
                sent = self.transport.send_now(self.out)
            except ClientDisconnected:
                sent = -1
            if sent > 0:
                del self.out[:sent]
                self.last_progress = time.monotonic()
                if backlogged and not self.backlogged():
                    self.writable.notify_all()
                    ready = self._caught_up()
                elif not self.out:
                    self.writable.notify_all()  # a worker may wait to send a file after it
            done = sent < 0 or not self.out
            if done:
                self.want_write = False
                self.send_deadline = None
            close = sent < 0 or (done and self.close_when_flushed)
            resync = self.wanted != self.registered
        if close:
            self.loop.close(self)
            return []
        if resync:
            self.loop.sync_interest(self)
        return ready

    def _caught_up(self) -> list[RequestReceived]:
        """Lock held: the client took enough of our output; read again, start what waited."""
        streams = self.streams
        if not streams.running and not streams.proto.multiplexed and not streams.proto.should_close:
            events = streams.proto.events()  # a pipelined request held back by _finished
            ready = streams.absorb(events) if events else []
            self._settle_deadline()
        else:
            ready = []
        self.paused = (streams.running > 0 and not streams.input_wanted_now()) or self.backlogged()
        return ready

    def expire(self, now: float) -> None:
        """Reactor, every tick: the head, idle, send and gathering deadlines, and parked responses."""
        if self.deadline is not None and now >= self.deadline:
            with self.lock:
                kind = self.deadline_kind
                expired = self.deadline is not None and now >= self.deadline and not self.streams.running
                if expired:
                    self.deadline = None
            if expired and kind.answer:
                self.send_and_close(error_response_bytes(kind.answer, kind.reason))
            elif expired:
                self.loop.close(self)
        elif self.out and self._send_stalled(now):
            self.loop.close(self)  # the client stopped reading our response, or reads it too slowly
        if self.streams.gathering and not self.closed:
            with self.lock:
                late = self.streams.overdue(now)
            for stream in late:  # a small body that never finished arriving
                self.streams.refuse(stream, 408, "request body not received in time")
        if self.streams.proto.multiplexed and not self.closed:
            with self.lock:
                aborted = self.streams.abort_parked(now)
            if aborted:  # responses parked too long behind a shut window: their resets go out
                try:
                    self.flush(wait=False)
                except ClientDisconnected:
                    self.loop.close(self)

    def _send_stalled(self, now: float) -> bool:
        """Checked again under the lock: a worker writes ``last_progress`` and ``out`` under it, and
        without a GIL the unlocked glance above may see one of those writes and not the other."""
        with self.lock:
            return bool(self.out) and (now - self.last_progress > self.config.io_timeout
                                       or (self.send_deadline is not None and now > self.send_deadline))

    def begin_shutdown(self) -> None:
        """Reactor: idle connections close now; busy ones after their responses (HTTP/2: GOAWAY now)."""
        with self.lock:
            self.streams.close_after_current()
            busy = self.streams.running > 0
        if not busy:
            self.send_and_close()
            return
        try:
            self.flush(wait=False)  # the GOAWAY; the last stream to finish closes the connection
        except ClientDisconnected:  # the client is gone already: its streams are moot
            self.loop.close(self)

    def send_and_close(self, last_words: bytes = b"") -> None:
        """Reactor: send what the protocol queued (and ``last_words``), then close."""
        with self.lock:
            self._queue(self.streams.proto.data_to_send() + last_words)
            self.close_when_flushed = True
            pending = self.want_write = bool(self.out)
        if pending:
            self.loop.sync_interest(self)
        else:
            self.loop.close(self)

    def mark_closed(self) -> None:
        """Reactor, closing (lock held): wake every worker waiting on this connection."""
        self.closed = True  # under the lock: no worker sends on a reused descriptor
        self.writable.notify_all()
        self.streams.fail_all(ClientDisconnected("connection closed"))
        self.streams.proto.release()  # queued responses go now, not when a cycle holding them is collected
        self.out.clear()

    # -- the Owner interface, for the workers (see _sync.Owner) -------------------------

    def flush(self, wait: bool = True) -> None:
        """Send what the protocol has queued; a worker waits while too much is pending.

        A worker with a response ready tries one non-blocking send itself:
        handing it to the reactor would cost a wake-up and two thread
        switches per request. What the kernel does not take waits in
        ``out`` for the reactor. Taking the bytes and queueing them happen
        under one hold of the lock, so output leaves in protocol order.
        """
        with self.lock:
            data = self.streams.proto.data_to_send()
            if not data:
                return
            if self.closed:
                if not wait:
                    return
                raise ClientDisconnected("connection closed")
            if not self.out:  # nothing queued ahead of us: try the kernel directly
                sent = self.transport.send_now(data)
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
                self.last_progress = time.monotonic()
            self._queue(data)
            must_arm = not self.want_write
            self.want_write = True
            if wait and len(self.out) > HIGH_WATER:
                if must_arm:
                    self.loop.call_soon(lambda: self.loop.sync_interest(self))
                    must_arm = False
                self._wait_writable()
        if must_arm:
            self.loop.call_soon(lambda: self.loop.sync_interest(self))

    def _queue(self, data: bytes | memoryview) -> None:
        """Lock held: add to ``out``, moving its send deadline by the time the bytes may take."""
        if not data:
            return
        allowance = len(data) / self.config.min_send_rate
        if self.out and self.send_deadline is not None:
            self.send_deadline += allowance
        else:
            self.send_deadline = time.monotonic() + self.config.io_timeout + allowance
        self.out += data

    def send_file(self, fd: int, offset: int, count: int) -> None:
        """A worker sends the file itself, once the reactor has sent everything queued before it.

        Each ``sendfile`` is made under the lock and only while the
        connection is open: the reactor may close it meanwhile, and its
        descriptor may then already be another client's.
        """
        with self.lock:
            self._wait_writable(0)
        self.transport.send_file(fd, offset, count, self._open)

    @contextmanager
    def _open(self) -> Iterator[None]:
        with self.lock:
            if self.closed:
                raise ClientDisconnected("connection closed")
            yield

    def backlogged(self) -> bool:
        """Lock held: more output is queued than the client has taken (see _sync.Owner)."""
        return len(self.out) > HIGH_WATER

    def _wait_writable(self, limit: int = HIGH_WATER) -> None:
        """Lock held: a worker waits for the reactor to drain ``out`` to ``limit`` bytes."""
        deadline = time.monotonic() + self.config.io_timeout
        while len(self.out) > limit:
            if self.closed:
                raise ClientDisconnected("connection closed")
            left = deadline - time.monotonic()
            if left <= 0 or not self.writable.wait(left):
                raise ClientDisconnected("client stopped reading")

    def stream_done(self) -> None:
        """A worker finished a stream: close if that was the last one owed, else read on."""
        with self.lock:
            self._settle_deadline()
            self.paused = not self.streams.input_wanted_now() or self.backlogged()
            closing = (self.streams.proto.should_close or self.eof) and not self.streams.running
            resync = self.wanted != self.registered  # the reactor updates `registered` under this lock
        if closing:
            self.loop.call_soon(self.send_and_close)
        elif resync:
            self.loop.call_soon(self._after_stream)

    def _after_stream(self) -> None:
        if not self.closed:
            self.loop.sync_interest(self)

    def input_wanted(self) -> None:
        with self.lock:
            self.paused = False
        self.loop.call_soon(self._after_stream)
