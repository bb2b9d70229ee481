"""What the runtimes that call handlers on OS threads share.

``threaded`` (a thread per connection) and ``hybrid`` (a reactor plus a
worker pool) differ in who waits on sockets, not in how a handler's response
is written out, how request body events are queued for the handler, or how a
connection over the cap is turned away. Those live here, once, with the
elastic :class:`WorkerPool` that ``hybrid`` and the event-loop runtimes both
run blocking handlers on.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from protocols import (
    BodyEnded,
    BodyReceived,
    ClientDisconnected,
    ConnectionClosed,
    Event,
    ProtocolError,
    ProtocolFailed,
    Response,
    StreamReset,
    error_response_bytes,
)

from .common import logger, start_response

__all__ = ["BodyInbox", "WorkerPool", "deliver", "reject_connection", "write_response"]

_UNLOCKED = nullcontext()


def write_response(
    conn: Any,
    stream_id: int,
    response: Response,
    flush: Callable[[], None],
    guard: AbstractContextManager = _UNLOCKED,
    wait_for_window: Callable[[int], None] | None = None,
    flush_whole: Callable[[], None] | None = None,
) -> None:
    """Send a response through a protocol connection, on the handler's thread.

    ``flush`` sends whatever the protocol connection has queued
    (``conn.data_to_send()``), blocking while the client is slow to read; it
    takes the bytes and hands them to the socket in one step, because on a
    multiplexed connection several threads flush and HTTP/2's header
    compression needs its frames on the wire in the order they were encoded.
    ``guard`` is held around every call into the protocol connection (a
    runtime whose reader feeds the same connection from another thread passes
    its lock) and released around ``flush``. ``wait_for_window``, called
    under ``guard`` before each streamed chunk, holds a streaming handler back
    while HTTP/2 flow control keeps the stream's earlier bytes queued.
    ``flush_whole`` (default ``flush``) sends a response held whole in
    memory: a runtime that queues output for a reactor passes one that never
    waits, since holding back bytes that already exist saves no memory and
    would let a slow reader hold the thread (the slow-read attack).

    An in-memory body goes out with its head in a single flush: one segment
    on the wire for a small response, which keeps keep-alive clients clear of
    Nagle and delayed-ACK stalls. A streamed body is sent chunk by chunk as
    the handler's iterator or file produces it. If the body fails mid-way the
    stream is aborted (on HTTP/1.1 that closes the connection).
    """
    with guard:
        response = start_response(conn, stream_id, response)
        body = response.body
        if body.data is not None:
            conn.send_data(stream_id, body.data)
            conn.end_stream(stream_id)
    if body.data is not None:
        (flush_whole or flush)()
        return
    try:
        flush()
        for chunk in body.chunks():
            with guard:
                if wait_for_window is not None:
                    wait_for_window(stream_id)
                conn.send_data(stream_id, chunk)
            flush()
        with guard:
            conn.end_stream(stream_id)
    except (OSError, ClientDisconnected):
        with guard:
            conn.abort_stream(stream_id)
        raise
    except Exception:
        logger.exception("response body failed mid-stream; aborting the stream")
        with guard:
            conn.abort_stream(stream_id)
    finally:
        body.close()
    flush()


class BodyInbox:
    """Request body events for one stream, queued until the handler reads them.

    ``absorb`` files a protocol event; subclasses decide how ``read_chunk``
    (the ``RequestBody`` source) waits when the queue is empty.
    """

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.ended = False
        self.error: Exception | None = None

    def absorb(self, event: Event) -> None:
        if isinstance(event, BodyReceived):
            self.chunks.append(event.data)
            self.buffered += len(event.data)
        elif isinstance(event, BodyEnded):
            self.ended = True
        elif isinstance(event, ConnectionClosed):
            self.fail(ClientDisconnected("client closed the connection mid-body"))
        elif isinstance(event, ProtocolFailed):
            self.fail(ProtocolError(event.reason, event.status))
        elif isinstance(event, StreamReset):
            self.fail(ClientDisconnected("the client reset the stream"))

    def fail(self, error: Exception) -> None:
        if not self.ended and self.error is None:
            self.error = error

    def take_would_wait(self) -> bool:
        return not self.chunks and not self.ended and self.error is None

    def take(self) -> bytes | None:
        """The next queued chunk, b"" at the end, None if the caller must wait."""
        if self.chunks:
            chunk = self.chunks.popleft()
            self.buffered -= len(chunk)
            return chunk
        if self.ended:
            return b""
        if self.error is not None:
            raise self.error
        return None


def deliver(inboxes: dict[int, BodyInbox], event: Event) -> None:
    """File a multiplexed connection's event with its stream's inbox.

    An event without a stream (the client hung up, or broke the protocol)
    concerns every stream still waiting for body bytes.
    """
    stream_id = getattr(event, "stream_id", None)
    if stream_id is None:
        for inbox in inboxes.values():
            inbox.absorb(event)
    elif (inbox := inboxes.get(stream_id)) is not None:
        inbox.absorb(event)


def reject_connection(sock: socket.socket, why: str) -> None:
    """Answer 503 on a connection we will not serve, without waiting for anything."""
    try:
        sock.setblocking(False)
        try:
            sock.recv(65536)  # unread request bytes would turn our close into a reset
        except OSError:
            pass
        sock.send(error_response_bytes(503, why, [("retry-after", "1")]))
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


class WorkerPool:
    """An elastic pool of daemon threads with a bounded queue.

    It starts empty. A job goes to an idle worker if there is one, else to a
    new worker while fewer than ``max_workers`` are alive, else into the
    queue while fewer than ``max_queued`` jobs wait there; otherwise
    ``submit`` returns False and the caller refuses the work. A worker idle
    for ``keep_alive`` seconds exits.

    Jobs travel through a ``queue.SimpleQueue`` (a C semaphore: handing a job
    to a sleeping worker is one futex wake), while the bookkeeping that
    decides where a job goes sits under a plain lock. ``threading.Condition``
    would do both, in Python, at several times the cost per request.
    """

    def __init__(self, max_workers: int, keep_alive: float, max_queued: int) -> None:
        self.max_workers = max(1, max_workers)
        self.keep_alive = keep_alive
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.pending = 0  # submitted, not yet taken by a worker
        self.alive = 0
        self.idle = 0  # blocked in get(), waiting for a job
        self.peak = 0
        self.started = 0
        self._closed = False

    def submit(self, job: Callable[[], None]) -> bool:
        with self._lock:
            if self._closed:
                return False
            spawn = False
            if self.idle <= self.pending:  # nobody free to take it at once
                if self.alive < self.max_workers:
                    spawn = True
                    self.alive += 1
                    self.started += 1
                    self.peak = max(self.peak, self.alive)
                elif self.pending - self.idle >= self.max_queued:
                    return False
            self.pending += 1
        self._jobs.put(job)
        if spawn:
            try:
                threading.Thread(target=self._work_loop, name="astra-worker", daemon=True).start()
            except RuntimeError:  # no more threads from the OS: the job waits for a live one
                with self._lock:
                    self.alive -= 1
                logger.error("could not start a worker thread (%d alive)", self.alive)
        return True

    def _work_loop(self) -> None:
        jobs = self._jobs
        while True:
            with self._lock:
                self.idle += 1
            try:
                job = jobs.get(timeout=self.keep_alive)
            except queue.Empty:
                job = None
            with self._lock:
                self.idle -= 1
                if job is None:
                    if self.pending and not self._closed:
                        continue  # a job was promised to an idle worker: stay for it
                    self.alive -= 1
                    return
                self.pending -= 1
            try:
                job()
            except BaseException:
                logger.exception("worker job failed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            alive = self.alive
        for _ in range(alive):
            self._jobs.put(None)  # wakes each worker; finding no job, it exits

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers_alive": self.alive,
                "workers_idle": self.idle,
                "workers_peak": self.peak,
                "workers_started": self.started,
                "queue_depth": max(0, self.pending - self.idle),
            }
