"""The request lifecycle on threads, once for every thread runtime and both protocols.

A connection served by threads has a *reader* (the thread that feeds
received bytes to the protocol connection) and *stream threads* (which run
handlers and write responses). They may be one and the same thread: on
HTTP/1.1 ``threaded`` and ``pinned`` run the handler on the thread that
reads, and the handler's body reads *pull* more bytes from the socket
themselves. Or they differ: ``hybrid``'s reactor reads while a worker
answers, and on HTTP/2 every runtime's reader hands each stream to a thread
of its own; then body reads wait to be *pushed* bytes by the reader.

:class:`StreamSet` is everything the two share about one connection: the
protocol connection and its lock, the body inboxes, the streams running,
the small bodies being gathered, and :meth:`StreamSet.serve`, one stream's
life on its thread (body, handler, response, then a pipelined request if
one is waiting). The owner, the runtime's connection, gives it a
:class:`Owner`: how to send the protocol's bytes, and what to do when a
stream ends or reading may resume.

Deadlines here: a body read waits at most ``io_timeout`` for each chunk
(owned by the reading handler); a gathered body must be complete within
``io_timeout`` (owned by the reader, which asks :meth:`StreamSet.overdue`);
a streamed response waits at most ``io_timeout`` for the client's
flow-control window (owned by the writing stream thread). Head, idle and
send deadlines belong to the runtime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from protocols import (
    Body,
    ClientDisconnected,
    Event,
    ProtocolFailed,
    ProtocolSwitched,
    RequestBody,
    RequestReceived,
    Response,
    ServerConnection,
)
from protocols.forwarded import TrustedProxies

from ._lifecycle import (
    AccessLog,
    BodyInbox,
    ParkedResponses,
    abandoned,
    body_too_late,
    call_handler,
    close_body,
    deliver,
    error_response,
    gather_body_first,
    start_response,
)
from .common import Handler, logger

__all__ = ["Owner", "StreamSet", "SyncBody"]

#: Response bytes a stream may have queued behind a shut flow-control window
#: before its handler is held back.
STREAM_HIGH_WATER = 256 * 1024
#: Request body bytes buffered ahead of a one-at-a-time handler past which
#: the reader stops reading (HTTP/2's windows bound them there).
BODY_HIGH_WATER = 1024 * 1024


#: What is left of a body sent with sendfile: nothing.
_SENT = Body(b"")


class Owner(Protocol):
    """What a :class:`StreamSet` needs from the connection that owns it."""

    def flush(self, wait: bool) -> None:
        """Send what the protocol has queued (taken under the set's lock, by the callee).

        ``wait=False``: hand the bytes over and return, whatever the client
        does (the reactor, or a response that already exists whole).
        """

    def send_file(self, fd: int, offset: int, count: int) -> None:
        """After a flush: write ``count`` bytes of file ``fd`` from ``offset`` to the client with
        ``sendfile``, waiting while it is slow (see ``SocketTransport.send_file``)."""

    def stream_done(self) -> None:
        """A stream has finished: the owner may close, or start reading again."""

    def input_wanted(self) -> None:
        """A handler drained its body buffer: a reader that paused may read again."""

    def backlogged(self) -> bool:
        """Lock held: is more output queued than the client has taken (past a high-water mark)?

        While it is, no pipelined request is started on this connection: each
        would queue a whole response behind a client that is not reading.
        """


class StreamSet:
    """The streams of one connection, and the lock that guards its protocol state."""

    def __init__(self, proto: ServerConnection, owner: Owner, handler: Handler, io_timeout: float,
                 receive_rate: float = 1024.0, send_rate: float = 1024.0, *,
                 proxies: TrustedProxies | None = None, access_log: AccessLog | None = None) -> None:
        self.proto = proto
        self.owner = owner
        self.handler = handler
        self.io_timeout = io_timeout
        self.receive_rate = receive_rate  # bytes/s a body must keep to after io_timeout (BodyInbox.due)
        self.send_rate = send_rate  # and a streamed response, behind HTTP/2 flow control
        self.parked = ParkedResponses(io_timeout, send_rate)  # timed by the reader (abort_parked)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # input arrived: body bytes, a window, a reset
        self.waiters = 0  # threads waiting on ``changed`` (a notify with none costs microseconds)
        self.inboxes: dict[int, SyncBody] = {}
        self.running = 0  # streams accepted and not yet answered (gathering ones included)
        #: Streams whose (small, or first part of a) body is read before a thread runs them.
        #: A 100 Continue this queues is for the reader to flush.
        self.gathering: dict[int, RequestReceived] = {}
        #: Set while the reader itself runs the handler: body reads then read the
        #: socket (``pull(timeout) -> bool``: False when nothing came in time).
        self.pull: Callable[[float], bool] | None = None
        self.proxies = proxies  # whose forwarding headers say who the client is (None: nobody's)
        self.access_log = access_log
        #: Stream -> when its request arrived (monotonic), while logging; a stream's ending takes its entry.
        self.arrivals: dict[int, float] = {}

    @property
    def inline(self) -> bool:
        """Is the reader itself running this connection's (one-at-a-time) handler?"""
        return self.pull is not None and not self.proto.multiplexed

    # -- on the reader, lock held ---------------------------------------------------

    def absorb(self, events: list[Event]) -> list[RequestReceived]:
        """File events with their streams; return the streams a thread may now serve."""
        ready = []
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self.running += 1
                if self.proxies is not None:  # once per request, before anyone looks at it
                    request = event.request
                    request.connection = self.proxies.resolve(request.connection, request.headers)
                if self.access_log is not None:
                    self.arrivals[event.stream_id] = time.monotonic()
                if event.has_body:
                    self.inboxes[event.stream_id] = SyncBody(self, event.stream_id)
                    if not self.inline and gather_body_first(event.request, self.proto, event.stream_id):
                        self.gathering[event.stream_id] = event
                        continue
                ready.append(event)
            elif kind is ProtocolSwitched:  # always last: continue with the successor's events
                self.proto = event.connection
                ready += self.absorb(self.proto.events())
            elif self.inboxes:  # body events, or the end of everything, for the streams reading
                deliver(self.inboxes, event)
            elif kind is ProtocolFailed and self.access_log is not None and not self.running:
                if not self.proto.multiplexed:  # (HTTP/2's is a GOAWAY: no response, no line)
                    self.access_log.unparsed(self.proto.info, event.status)
        if self.gathering:
            ready += self._gathered()
        if self.waiters:  # even with no events: a WINDOW_UPDATE or a reset arrives as none
            self.changed.notify_all()
        return ready

    def _gathered(self) -> list[RequestReceived]:
        """Streams whose body is gathered are ready; one whose body failed is dropped without a thread."""
        ready = []
        for sid in [sid for sid in self.gathering if self.inboxes[sid].gathered]:
            event = self.gathering.pop(sid)
            if self.inboxes[sid].error is None:
                ready.append(event)
            else:
                self.proto.abort_stream(sid)
                del self.inboxes[sid]
                self.arrivals.pop(sid, None)
                self.running -= 1
        return ready

    def _due(self, stream_id: int) -> float:
        return self.inboxes[stream_id].due(self.io_timeout, self.receive_rate)

    def next_deadline(self) -> float | None:
        """When the first gathering stream runs out of time, if any is gathering."""
        return min((self._due(sid) for sid in self.gathering), default=None)

    def overdue(self, now: float) -> list[RequestReceived]:
        """The gathering streams past their deadline, for the reader to :meth:`refuse` with 408."""
        late = [sid for sid in self.gathering if self._due(sid) <= now]
        return [self.gathering.pop(sid) for sid in late]

    def abort_parked(self, now: float) -> bool:
        """Lock held, on the reader: abort responses parked too long behind a shut window.

        True if any was aborted: the reader then flushes (the resets).
        """
        late = self.parked.overdue(self.proto, now)
        for stream_id in late:
            self.proto.abort_stream(stream_id)
        return bool(late)

    def body_arriving(self, stream_id: int) -> bool:
        """Will this stream's handler wait for body bytes still to come? (A pool gives those a share of its workers.)

        Read without the lock: a body that ends meanwhile only looks unfinished.
        """
        inbox = self.inboxes.get(stream_id) if self.inboxes else None
        return inbox is not None and not inbox.settled

    def input_wanted_now(self) -> bool:
        """Should the reader keep reading? (A reactor stops while the answer is all it waits for.)

        One-at-a-time streams: not while a request whose body is complete is
        being answered (a pipelined request waits in the kernel, not in our
        memory), nor while the handler lags behind a large upload. Multiplexed
        streams are bounded by flow control instead.
        """
        if self.proto.multiplexed or not self.running:
            return True
        for inbox in self.inboxes.values():
            if not inbox.settled and inbox.buffered <= BODY_HIGH_WATER:
                return True
        return False

    def fail_all(self, error: Exception) -> None:
        """The connection is gone: wake every waiting stream with ``error``."""
        for inbox in self.inboxes.values():
            inbox.fail(error)
        for sid in self.gathering:  # never started: nothing will finish them
            self.inboxes.pop(sid, None)
            self.arrivals.pop(sid, None)
        self.running -= len(self.gathering)
        self.gathering.clear()
        self.changed.notify_all()

    def close_after_current(self) -> None:
        """Graceful shutdown: nothing new is accepted; what runs is finished."""
        self.proto.close_after_current()
        self.changed.notify_all()

    # -- on a stream's thread ---------------------------------------------------------

    def serve(self, started: RequestReceived | None) -> None:
        """Answer a stream, then any pipelined request that became ready after it."""
        while started is not None:
            stream_id = started.stream_id
            request = started.request
            if self.inboxes and (inbox := self.inboxes.get(stream_id)) is not None:
                request.body = RequestBody(inbox.read_chunk)
            response = None
            try:
                if self.proto.multiplexed:
                    with self.lock:
                        if abandoned(self.proto, stream_id):
                            raise ClientDisconnected("the client reset the stream before its handler ran")
                response = call_handler(self.handler, request)
                response = self.write_response(stream_id, response)
            except (ClientDisconnected, OSError):
                with self.lock:
                    self.proto.abort_stream(stream_id)
            if self.access_log is not None:
                arrived = self.arrivals.pop(stream_id, None)
                if response is not None:  # (a client that left before any answer existed has no line)
                    self.access_log.responded(request, response, arrived)
            started = self._finished(stream_id)

    def refuse(self, started: RequestReceived, status: int, why: str) -> None:
        """Answer a stream without its handler (its body came too late: 408). Never waits."""
        with self.lock:
            if not self.proto.multiplexed:
                self.proto.close_after_current()  # one stream at a time: the connection goes too
        response = error_response(status, why)
        try:
            self.write_response(started.stream_id, response, wait=False)
        except (ClientDisconnected, OSError):
            pass
        if self.access_log is not None:
            self.access_log.responded(started.request, response, self.arrivals.pop(started.stream_id, None))
        self._finished(started.stream_id)

    def turn_away(self, started: RequestReceived) -> None:
        """No thread can take this stream: refuse it so the client may retry (503 on HTTP/1.1)."""
        with self.lock:
            self.proto.refuse_stream(started.stream_id)
        try:
            self.owner.flush(False)
        except (ClientDisconnected, OSError):
            pass
        if self.access_log is not None:
            self.access_log.refused(started.request, self.arrivals.pop(started.stream_id, None))
        self._finished(started.stream_id)

    def _finished(self, stream_id: int) -> RequestReceived | None:
        """Bookkeeping after a stream; returns a pipelined request to serve next, if one is ready."""
        following = None
        with self.lock:
            if self.inboxes:
                self.inboxes.pop(stream_id, None)
            self.running -= 1
            multiplexed = self.proto.multiplexed
            if not multiplexed and not self.proto.should_close and not self.owner.backlogged():
                # A pipelined request: this thread goes on with it (else the owner starts it once
                # the client has read enough of this response).
                events = self.proto.events()
                if events:
                    ready = self.absorb(events)
                    following = ready[0] if ready else None
        if multiplexed:  # a reset, released window credit (HTTP/1.1 has flushed all it had)
            try:
                self.owner.flush(False)
            except (ClientDisconnected, OSError):
                pass
        self.owner.stream_done()
        return following

    def write_response(self, stream_id: int, response: Response, wait: bool = True) -> Response:
        """Send a response through the protocol connection, on this thread; returns the one started
        (a 500 in place of an invalid one).

        An in-memory body goes out with its head in one flush that never
        waits for the client: one segment on the wire for a small response
        (clear of Nagle and delayed-ACK stalls), and a slow reader cannot hold
        the thread for bytes that already exist (the slow-read attack). A
        streamed body is sent chunk by chunk as the handler's iterator or file
        produces it, each flush waiting while the client is slow and each
        chunk waiting while HTTP/2 flow control keeps earlier ones queued. If
        the body fails mid-way the stream is aborted (on HTTP/1.1 that closes
        the connection).
        """
        proto = self.proto
        with self.lock:
            response = start_response(proto, stream_id, response)
            body = response.body
            if body.data is not None:
                proto.send_data(stream_id, body.data)
                proto.end_stream(stream_id)
        if body.data is not None:
            self.owner.flush(False)
            return response
        try:
            region = body.file_region()
            if region is not None:
                with self.lock:
                    raw = proto.raw_body(stream_id, region[2])
                if raw:  # the kernel copies the file: no byte of it passes through Python
                    self.owner.flush(True)
                    self.owner.send_file(*region)
                    body = _SENT
            self.owner.flush(wait)
            # The client may take io_timeout plus the body's size at send_rate: opening its
            # window a crack now and then does not hold this thread forever.
            due = time.monotonic() + self.io_timeout
            for chunk in body.chunks():
                with self.lock:
                    self._wait_for_window(stream_id, due)
                    proto.send_data(stream_id, chunk)
                due += len(chunk) / self.send_rate
                self.owner.flush(wait)
            with self.lock:
                proto.end_stream(stream_id)
        except (OSError, ClientDisconnected):
            with self.lock:
                proto.abort_stream(stream_id)
            raise
        except Exception:
            logger.exception("response body failed mid-stream; aborting the stream")
            with self.lock:
                proto.abort_stream(stream_id)
        finally:
            close_body(response.body)
        self.owner.flush(wait)
        return response

    def _wait_for_window(self, stream_id: int, due: float) -> None:
        """Lock held: wait while the stream's queued output is past the high-water mark, until ``due``."""
        proto = self.proto
        while True:
            if proto.stream_reset(stream_id):
                raise ClientDisconnected("the client reset the stream")
            if proto.pending(stream_id) <= STREAM_HIGH_WATER:
                return
            left = min(due, time.monotonic() + self.io_timeout) - time.monotonic()
            if left <= 0 or not self.wait_changed(left):
                raise ClientDisconnected("the client stopped reading (flow control window shut)")

    def wait_changed(self, timeout: float) -> bool:
        """Lock held: wait for the reader to report input; False if ``timeout`` passed first."""
        self.waiters += 1
        try:
            return self.changed.wait(timeout)
        finally:
            self.waiters -= 1


class SyncBody(BodyInbox):
    """``request.body`` on a thread: chunks are pushed by the reader, or pulled from the socket.

    Each chunk taken is reported to the protocol as consumed (HTTP/2 then
    reopens the client's window: it sends only as fast as the handler
    reads). A client waiting for ``100 Continue`` is told to go ahead only
    now, when the handler actually asks for the body.
    """

    __slots__ = ("streams",)

    def __init__(self, streams: StreamSet, stream_id: int) -> None:
        super().__init__(stream_id)
        self.streams = streams

    def read_chunk(self) -> bytes:
        streams = self.streams
        # Silence may last io_timeout; the whole body, io_timeout plus its size at receive_rate.
        deadline = min(time.monotonic() + streams.io_timeout, self.due(streams.io_timeout, streams.receive_rate))
        while True:
            with streams.lock:
                chunk = self.take()
                if chunk is None:
                    go_ahead = streams.proto.expects_continue(self.stream_id)
                    if go_ahead:
                        streams.proto.send_continue(self.stream_id)
                    elif not streams.inline:
                        self._wait_pushed(deadline)
                        continue
                else:
                    if chunk:
                        streams.proto.consumed(self.stream_id, len(chunk))
                    drained = self.buffered <= BODY_HIGH_WATER // 2 < self.buffered + len(chunk)
                    break
            if go_ahead:
                streams.owner.flush(True)
            elif not streams.pull(max(0.0, deadline - time.monotonic())):
                with streams.lock:
                    raise body_too_late(streams.proto)
        if chunk and streams.proto.multiplexed:
            streams.owner.flush(False)  # a WINDOW_UPDATE, perhaps
        if drained:
            streams.owner.input_wanted()
        return chunk

    def _wait_pushed(self, deadline: float) -> None:
        """Lock held: wait for the reader to push something."""
        left = deadline - time.monotonic()
        if (left <= 0 or not self.streams.wait_changed(left)) and not self.chunks and not self.settled:
            raise body_too_late(self.streams.proto)
