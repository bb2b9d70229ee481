"""One request's life on an event loop, for HTTP/1.1 and HTTP/2 alike.

An *exchange* is one request and its response: one HTTP/1.1 request, or
one HTTP/2 stream. :func:`answer` lives it, in this order:

1. **The body.** A request with a body gets an :class:`AsyncBody`, the
   family's one body reader: body events are queued in it (it is a
   :class:`~runtimes._lifecycle.BodyInbox`) and, when the queue is empty,
   it asks whatever *carries* the exchange for more (:meth:`Carrier.more`):
   an HTTP/1.1 connection reads its socket, an HTTP/2 stream waits for the
   connection's reading task to deliver.
2. **Gather before dispatch.** A blocking handler that is about to get a
   thread is given the whole body first when it is small
   (:func:`~runtimes._lifecycle.gather_body_first`): a client trickling a
   small POST costs a task, not a thread. A body that does not arrive in
   time is answered 408 without the handler.
3. **The handler.** An ``async def`` handler is awaited. A plain blocking
   one goes to the server's worker pool (503 when its queue is full), or,
   with ``blocking_handlers="inline"``, runs on the loop itself, which is
   fast for handlers that never block and the clearest demonstration of
   what one blocking call does to everyone else. Its failures become
   responses as on every runtime (``_lifecycle.call_handler``).
4. **The response.** :func:`write_response` writes it through the carrier's
   sender, with backpressure: a streamed body waits for a slow client (and,
   on HTTP/2, for its flow-control window); a body held whole in memory is
   handed over in one go (HTTP/2 batches such responses across streams).

Two small interfaces are all this module knows of the rest:
:class:`Host` (the server, as an exchange sees it) and :class:`Carrier`
(the connection or stream set that carries it). Neither side reaches into
the other.

Deadlines: a body read owns the BODY deadline, ``io_timeout`` for each chunk
(or for the whole of a gathered body), and hands it to the carrier it waits
on. Everything else an exchange waits for is bounded by its carrier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import anyio
import anyio.from_thread

from protocols import (
    Body,
    ClientDisconnected,
    HTTPError,
    Request,
    RequestBody,
    RequestReceived,
    Response,
    ServerConnection,
)
from protocols.forwarded import TrustedProxies

from .._lifecycle import (
    PASSES_THROUGH,
    AccessLog,
    BodyInbox,
    abandoned,
    body_too_late,
    call_handler,
    check_response,
    close_body,
    error_response,
    gather_body_first,
    handler_failed,
    start_response,
)
from ..common import Handler, logger
from .transport import DISCONNECTS

__all__ = ["REFUSED", "AsyncBody", "Carrier", "Host", "PoolFull", "answer", "answer_logged", "write_response"]


#: How long a streamed body's close() waits for a worker before it runs on the loop instead.
CLOSE_ON_WORKER_WITHIN = 1.0


class PoolFull(Exception):
    """The worker pool's queue is full: refuse the request."""


class Host(Protocol):
    """What an exchange needs from the server (``server.AsyncServer``)."""

    handler: Handler
    handler_is_async: bool
    #: Blocking handlers run on the loop itself.
    inline: bool
    #: A graceful shutdown has begun.
    stopping: bool
    #: The loop's token, for a handler's thread to ask the loop for body bytes.
    token: Any

    async def run_in_pool(self, fn: Callable[..., Any], *args: Any, waits_on_client: bool = False,
                          unless: Callable[[], bool] | None = None) -> Any:
        """``fn(*args)`` on a worker thread; raises :class:`PoolFull` when none can take it.

        ``waits_on_client``: ``fn`` will wait for the client's bytes (the pool
        gives such jobs a share of its workers). ``unless()``, asked on the
        worker just before ``fn`` would start: True skips it, and the await
        raises ClientDisconnected.
        """

    def count_overload(self) -> None:
        """A request was refused because the pool was full (a statistic)."""


class Carrier(Protocol):
    """What an exchange needs from what carries it: an HTTP/1.1 connection, an HTTP/2 stream set."""

    proto: ServerConnection

    async def flush(self) -> None:
        """Send what the protocol has queued, waiting while the client is slow to read."""

    async def flush_whole(self) -> None:
        """Send a response that is whole in memory (HTTP/2 batches these across streams)."""

    async def more(self, body: AsyncBody, deadline: float) -> bool:
        """Wait for more of ``body`` to be absorbed; False when ``deadline`` (monotonic) passed first."""

    #: Before each streamed chunk: ``wait_for_window(stream_id, due)`` waits while
    #: flow control holds the stream's earlier bytes, until ``due`` (monotonic;
    #: raises ClientDisconnected then, or on a reset). None without flow control.
    wait_for_window: Callable[[int, float], Awaitable[None]] | None
    #: ``send_file(fd, offset, count)`` after a flush: the file's bytes straight to the socket
    #: (``sendfile``), bounded by the send deadline. None where the transport cannot.
    send_file: Callable[[int, int, int], Awaitable[None]] | None
    #: With flow control: a streamed response may take io_timeout plus its size at send_rate.
    io_timeout: float
    send_rate: float
    #: Whose forwarding headers say who the client is (None: nobody's).
    proxies: TrustedProxies | None


# 1. The body ---------------------------------------------------------------------

class AsyncBody(BodyInbox):
    """``request.body`` on an event loop, for either protocol.

    Each chunk taken is reported to the protocol as consumed (HTTP/2 then
    reopens the client's window: it sends only as fast as the handler
    reads). A client waiting for ``100 Continue`` is told to go ahead only
    when the handler actually asks for the body. ``answered`` says whether
    the exchange's response has started (a 408 is then too late).
    ``request``, when given, is whose body it is: for a carrier that answers
    a late body itself (and logs that answer).
    """

    __slots__ = ("carrier", "io_timeout", "receive_rate", "answered", "request")

    def __init__(self, stream_id: int, carrier: Carrier, io_timeout: float, receive_rate: float,
                 request: Request | None = None) -> None:
        super().__init__(stream_id)
        self.request = request
        self.carrier = carrier
        self.io_timeout = io_timeout
        self.receive_rate = receive_rate  # see BodyInbox.due
        self.answered = False

    def request_body(self, host: Host) -> RequestBody:
        """The ``RequestBody`` for the handler's kind: awaited, or fetched through the loop by a thread."""
        if host.handler_is_async:
            return RequestBody(asource=self.read_chunk)
        token = host.token
        read_chunk = self.read_chunk
        return RequestBody(source=lambda: anyio.from_thread.run(read_chunk, token=token), asource=read_chunk)

    async def read_chunk(self) -> bytes:
        carrier = self.carrier
        stream_id = self.stream_id
        deadline = None
        while (chunk := self.take()) is None:
            proto = carrier.proto
            if proto.expects_continue(stream_id):
                proto.send_continue(stream_id)
                await carrier.flush()
            if deadline is None:  # silence may last io_timeout; the whole body, its due time
                deadline = min(time.monotonic() + self.io_timeout, self.due(self.io_timeout, self.receive_rate))
            if not await carrier.more(self, deadline):
                raise body_too_late(carrier.proto)
        if chunk:
            carrier.proto.consumed(stream_id, len(chunk))
            await carrier.flush()  # a WINDOW_UPDATE, perhaps (HTTP/1.1 queues nothing)
        return chunk

    async def gather(self) -> bool:
        """Wait for the body (or its first GATHERED_BODY_BYTES) before a thread is involved;
        False if it is overdue (BodyInbox.due).

        A body that failed (the client hung up, reset the stream, broke the
        framing) raises ClientDisconnected: there is nobody to run a handler for.
        """
        await self.carrier.flush()  # a 100 Continue gather_body_first queued
        while not self.gathered:
            if not await self.carrier.more(self, self.due(self.io_timeout, self.receive_rate)):
                return False
        if self.error is not None:
            raise ClientDisconnected("the request body failed before the handler ran")
        return True


# 2. The exchange -----------------------------------------------------------------

#: What :func:`answer` returns for a request turned away unprocessed (every worker busy):
#: a 503 on HTTP/1.1, REFUSED_STREAM on HTTP/2.
REFUSED = object()


async def answer(host: Host, carrier: Carrier, started: RequestReceived, body: AsyncBody | None
                 ) -> Response | object | None:
    """Serve one request: gather its body if it must be, run the handler, write the response.

    A client that goes away only costs its own stream (on HTTP/1.1 that is
    the connection: the carrier then finds ``proto.should_close``).
    Returns the response started (or the handler's, if the client left
    while it was written), :data:`REFUSED`, or None when there was none.
    """
    proto = carrier.proto
    stream_id = started.stream_id
    request = started.request
    if carrier.proxies is not None:  # once per request, before anyone looks at it
        request.connection = carrier.proxies.resolve(request.connection, request.headers)
    response = None
    try:
        if body is not None:
            request.body = body.request_body(host)
            if (not (host.handler_is_async or host.inline) and gather_body_first(request, proto, stream_id)
                    and not await body.gather()):
                response = error_response(408, "request body not received in time")
                await write_response(host, carrier, stream_id, response, body)
                return response
        # The handler is called here rather than in a function of its own:
        # this is the hot path, and every coroutine frame shows at 64 connections.
        handler = host.handler
        if host.handler_is_async:
            try:
                response = check_response(await handler(request), request)
            except BaseException as exc:  # SystemExit too: one request must not stop the server
                response = handler_failed(exc, request, (*PASSES_THROUGH, anyio.get_cancelled_exc_class()))
        elif host.inline:
            try:
                if body is not None:  # a handler on the loop cannot wait for body bytes
                    request.body = RequestBody(_buffered(await request.body.aread()))
                response = call_handler(handler, request)
            except HTTPError as exc:  # the body broke its framing, or came too late
                response = handler_failed(exc, request)
        else:
            try:
                response = await host.run_in_pool(
                    call_handler, handler, request, waits_on_client=body is not None and not body.settled,
                    unless=(lambda: abandoned(proto, stream_id)) if proto.multiplexed else None)
            except PoolFull:  # refused, so that the client may retry: 503 (HTTP/1.1) or REFUSED_STREAM
                host.count_overload()
                proto.refuse_stream(stream_id)
                await carrier.flush()
                return REFUSED
        if host.stopping:
            proto.close_after_current()
        return await write_response(host, carrier, stream_id, response, body)
    except DISCONNECTS:
        proto.abort_stream(stream_id)
    return response


async def answer_logged(log: AccessLog, host: Host, carrier: Carrier, started: RequestReceived,
                        body: AsyncBody | None) -> None:
    """:func:`answer`, and its line in the access log.

    A carrier picks this or plain ``answer`` once, when it starts: with the
    access log off, a request pays nothing for it.
    """
    arrived = time.monotonic()
    outcome = await answer(host, carrier, started, body)
    if outcome is REFUSED:
        log.refused(started.request, arrived)
    elif outcome is not None:
        log.responded(started.request, outcome, arrived)


def _buffered(data: bytes) -> Callable[[], bytes]:
    """A body source over bytes already read (inline handlers)."""
    parts = [data]
    return lambda: parts.pop() if parts else b""


# 3. The response -----------------------------------------------------------------

async def write_response(host: Host, carrier: Carrier, stream_id: int, response: Response,
                         body: AsyncBody | None = None) -> Response:
    """As the thread runtimes' writer, awaiting instead of blocking; returns the response started
    (a 500 in place of an invalid one).

    An in-memory body goes out with its head in one send (one segment for a
    small response, clear of Nagle and delayed-ACK stalls). A streamed body
    is sent chunk by chunk as it is produced; a synchronous stream (a file,
    a generator that may block) is read on a worker thread, so it never
    blocks the loop. If the body fails mid-way the stream is aborted (on
    HTTP/1.1 that closes the connection).
    """
    proto = carrier.proto
    if body is not None:
        body.answered = True
    response = start_response(proto, stream_id, response)
    data = response.body.data
    if data is not None:
        proto.send_data(stream_id, data)
        proto.end_stream(stream_id)
        await carrier.flush_whole()
        return response
    await _write_streamed(host, carrier, stream_id, response)
    await carrier.flush()
    return response


async def _write_streamed(host: Host, carrier: Carrier, stream_id: int, response: Response) -> None:
    proto = carrier.proto
    body = response.body
    wait_for_window = carrier.wait_for_window
    on_workers: WorkerIterated | None = None
    try:
        await carrier.flush()
        if carrier.send_file is not None and (region := body.file_region()) is not None \
                and proto.raw_body(stream_id, region[2]):
            # The kernel copies the file: no byte of it passes through Python or a worker.
            await carrier.send_file(*region)
            proto.end_stream(stream_id)
            return
        if body.is_async:
            chunks = body.achunks()
            next_chunk = lambda: anext(chunks, None)  # noqa: E731
        elif host.inline:
            chunks = body.chunks()
            next_chunk = _next_inline(chunks)
        else:
            on_workers = WorkerIterated(body)
            next_chunk = lambda: host.run_in_pool(on_workers.next)  # noqa: E731
        due = time.monotonic() + carrier.io_timeout
        while (chunk := await next_chunk()) is not None:
            if wait_for_window is not None:
                await wait_for_window(stream_id, due)
                due += len(chunk) / carrier.send_rate
            proto.send_data(stream_id, chunk)
            await carrier.flush()
        proto.end_stream(stream_id)
    except DISCONNECTS:
        proto.abort_stream(stream_id)
        raise
    except Exception:
        logger.exception("response body failed mid-stream; aborting the stream")
        proto.abort_stream(stream_id)
    finally:
        with anyio.CancelScope(shield=True):
            await _close_body(host, body, on_workers)


async def _close_body(host: Host, body: Body, on_workers: WorkerIterated | None = None) -> None:
    """Close a streamed body where its chunks were made: a synchronous one on a worker, since
    its ``close()`` may block or use the thread's state (a WSGI framework's end of request
    closes that thread's database connections). What it raises is logged (``close_body``)."""
    if body.is_async:
        try:
            await body.aclose()
        except Exception:
            logger.exception("closing the response body failed")
        return
    if on_workers is None:
        on_workers = WorkerIterated(body)  # nothing was iterated: only close() to order
    if host.inline or host.stopping:
        on_workers.close_soon()  # (stopping: the workers may all be held by handlers that will not end)
        return
    with anyio.move_on_after(CLOSE_ON_WORKER_WITHIN) as waited:
        try:
            await host.run_in_pool(on_workers.close)
        except PoolFull:  # no worker to spare: close it here rather than never
            on_workers.close_soon()
    if waited.cancelled_caught:  # every worker busy for long: close it here rather than never
        on_workers.close_soon()


def _next_inline(chunks: Iterator[bytes]) -> Callable[[], Awaitable[bytes | None]]:
    """The next chunk of a synchronous body, on the loop (inline handlers: no workers)."""
    async def next_inline() -> bytes | None:
        return next(chunks, None)
    return next_inline


class WorkerIterated:
    """A synchronous body iterated on worker threads, whose ``next()`` and ``close()`` never overlap.

    Each chunk is a pool job, and a job can outlive its awaiting task: a
    client that leaves mid-response cancels the task while a worker is still
    inside the application's generator. Closing that generator from another
    thread then raised "generator already executing" (and left the iterable
    unclosed); without the GIL it can crash the interpreter. So both run
    under one lock: a worker's close waits for the chunk in progress, and
    the loop, which must not wait, asks for the close and leaves it to
    whoever holds the lock last (:meth:`close_soon`).
    """

    __slots__ = ("_body", "_chunks", "_lock", "_close_wanted", "_closed")

    def __init__(self, body: Body) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._lock = threading.Lock()
        self._close_wanted = False
        self._closed = False

    def next(self) -> bytes | None:
        """On a worker: the next chunk, None at the end (or once closed)."""
        with self._lock:
            if self._closed:
                return None
            if self._chunks is None:
                self._chunks = self._body.chunks()
            chunk = next(self._chunks, None)
        if self._close_wanted:  # the loop asked while this chunk was being made
            self._close_if_free()
        return chunk

    def close(self) -> None:
        """On a worker: close, after the chunk in progress if there is one."""
        with self._lock:
            self._close()

    def close_soon(self) -> None:
        """On the loop: close now if no worker is inside the body, else as that worker leaves it."""
        self._close_wanted = True
        self._close_if_free()

    def _close_if_free(self) -> None:
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            close_body(self._body)
