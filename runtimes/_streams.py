"""HTTP/2 on threads: the streams of one multiplexed connection, each on its own thread.

On HTTP/1.1 a thread runtime answers one request per connection at a time,
so the thread that reads the request can also run its handler. HTTP/2
interleaves requests on one connection, and a slow handler must not hold up
its siblings (gunicorn serializes them; that is the behaviour to beat). So a
multiplexed connection splits the work:

- one *reader* (the connection's thread in ``threaded``, the reactor in
  ``hybrid``) feeds received bytes to the protocol connection and hands
  each new stream to :meth:`StreamSet.serve` on a thread of its own (a new
  thread, or a pool worker);
- each stream's thread runs the handler and writes its response, waiting on
  flow control when the client's window is shut.

A stream with a small declared body is not handed to a thread until the
body is in (``gather_body_first``, as on HTTP/1.1): a client trickling a
small POST then costs a buffer, not a worker. The reader expires those that
take longer than ``io_timeout`` (:meth:`StreamSet.overdue`) with a 408.

Everything they share sits behind one lock: the protocol connection and the
per-stream body inboxes. ``changed`` is signalled by the reader whenever
input arrived (body bytes, a WINDOW_UPDATE, a reset), which is what waiting
stream threads wait for. Output leaves through the owner's ``flush``, which
takes the protocol's bytes and queues or sends them in one step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from protocols import (
    ClientDisconnected,
    Event,
    HTTPError,
    RequestBody,
    RequestReceived,
)

from ._threads import BodyInbox, deliver, write_response
from .common import call_handler, error_response, gather_body_first

__all__ = ["StreamSet"]

#: Response bytes a stream may have queued behind a shut flow-control window
#: before its handler is held back.
STREAM_HIGH_WATER = 256 * 1024


class StreamSet:
    """The live streams of one HTTP/2 connection served by threads.

    ``flush()`` sends the protocol's queued output (owner-provided, callable
    from any thread); ``stream_done()`` is called after each stream's
    handler and response have finished (the owner may close the connection
    if the protocol says so).
    """

    def __init__(
        self,
        proto: Any,
        lock: threading.Lock,
        handler: Callable,
        io_timeout: float,
        flush: Callable[[], None],
        stream_done: Callable[[], None],
        flush_whole: Callable[[], None] | None = None,
    ) -> None:
        self.proto = proto
        self.lock = lock
        self.changed = threading.Condition(lock)
        self.handler = handler
        self.io_timeout = io_timeout
        self.flush = flush
        self.flush_whole = flush_whole  # see write_response
        self.stream_done = stream_done
        self.inboxes: dict[int, StreamBody] = {}
        self.running = 0  # streams accepted and not yet answered (gathering ones included)
        #: Streams whose small body is being read before a thread runs them, with their deadline.
        self.gathering: dict[int, tuple[RequestReceived, float]] = {}

    def absorb(self, events: list[Event]) -> list[RequestReceived]:
        """File events into the streams' inboxes (lock held); return new streams to serve."""
        started = []
        for event in events:
            if type(event) is RequestReceived:
                self.running += 1
                if event.has_body:
                    self.inboxes[event.stream_id] = StreamBody(self, event.stream_id)
                    if gather_body_first(event.request, self.proto):
                        self.gathering[event.stream_id] = (event, time.monotonic() + self.io_timeout)
                        continue
                started.append(event)
            else:
                deliver(self.inboxes, event)
        if self.gathering:
            # A gathered body that ended is ready for a thread; one that failed (the client reset the
            # stream or hung up) is dropped without involving one.
            for sid in [sid for sid in self.gathering if (inbox := self.inboxes[sid]).ended or inbox.error]:
                event, _ = self.gathering.pop(sid)
                if self.inboxes[sid].ended:
                    started.append(event)
                else:
                    self.proto.abort_stream(sid)
                    self.inboxes.pop(sid)
                    self.running -= 1
        self.changed.notify_all()
        return started

    def next_deadline(self) -> float | None:
        """Lock held: when the first gathering stream runs out of time, if any is gathering."""
        return min((deadline for _, deadline in self.gathering.values()), default=None)

    def overdue(self, now: float) -> list[RequestReceived]:
        """Lock held: the gathering streams past their deadline, for the reader to answer 408."""
        late = [sid for sid, (_, deadline) in self.gathering.items() if deadline <= now]
        return [self.gathering.pop(sid)[0] for sid in late]

    def fail_all(self, error: Exception) -> None:
        """The connection is gone (lock held): wake every waiting stream with ``error``."""
        for inbox in self.inboxes.values():
            inbox.fail(error)
        for sid in self.gathering:  # never started: nothing will finish them
            self.inboxes.pop(sid, None)
        self.running -= len(self.gathering)
        self.gathering.clear()
        self.changed.notify_all()

    # -- on the stream's own thread --------------------------------------------

    def serve(self, started: RequestReceived) -> None:
        """Run one stream's handler and send its response."""
        stream_id = started.stream_id
        request = started.request
        inbox = self.inboxes.get(stream_id)
        if inbox is not None:
            request.body = RequestBody(inbox.read_chunk)
        try:
            response = call_handler(self.handler, request)
            write_response(self.proto, stream_id, response, self.flush, self.lock, self.wait_for_window,
                           self.flush_whole)
        except (ClientDisconnected, OSError):
            with self.lock:
                self.proto.abort_stream(stream_id)
        finally:
            self._finished(stream_id)

    def refuse(self, started: RequestReceived, status: int, why: str, headers: dict | None = None,
               flush: Callable[[], None] | None = None) -> None:
        """Answer a stream without running its handler (no thread for it, or its body came too late).

        ``flush`` replaces the owner's when the caller must not wait (the reactor).
        """
        flush = flush or self.flush
        try:
            write_response(self.proto, started.stream_id, error_response(status, why, headers), flush, self.lock)
        except (ClientDisconnected, OSError):
            pass
        finally:
            self._finished(started.stream_id, flush)

    def _finished(self, stream_id: int, flush: Callable[[], None] | None = None) -> None:
        with self.lock:
            self.inboxes.pop(stream_id, None)
            self.running -= 1
        try:
            (flush or self.flush)()
        except (ClientDisconnected, OSError):
            pass
        self.stream_done()

    def wait_for_window(self, stream_id: int) -> None:
        """Lock held: wait while the stream's queued output is past the high-water mark."""
        proto = self.proto
        deadline = None
        while True:
            if proto.stream_reset(stream_id):
                raise ClientDisconnected("the client reset the stream")
            if proto.pending(stream_id) <= STREAM_HIGH_WATER:
                return
            if deadline is None:
                deadline = time.monotonic() + self.io_timeout
            left = deadline - time.monotonic()
            if left <= 0 or not self.changed.wait(left):
                raise ClientDisconnected("the client stopped reading (flow control window shut)")


class StreamBody(BodyInbox):
    """``request.body`` of one stream: chunks arrive from the reader thread.

    Each chunk the handler takes is reported to the protocol as consumed,
    which reopens the client's flow-control window: the client can send only
    as fast as the handler reads.
    """

    def __init__(self, streams: StreamSet, stream_id: int) -> None:
        super().__init__(stream_id)
        self.streams = streams

    def read_chunk(self) -> bytes:
        streams = self.streams
        with streams.lock:
            deadline = None
            while (chunk := self.take()) is None:
                if deadline is None:
                    deadline = time.monotonic() + streams.io_timeout
                left = deadline - time.monotonic()
                if left <= 0 or not streams.changed.wait(left):
                    if self.take_would_wait():
                        raise HTTPError(408, "request body not received in time")
            if chunk:
                streams.proto.consumed(self.stream_id, len(chunk))
        if chunk:
            streams.flush()  # a WINDOW_UPDATE, perhaps
        return chunk
