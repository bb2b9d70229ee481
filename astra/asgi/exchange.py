"""One HTTP request between astra's connection and an ASGI app: the two tasks' meeting point.

Two tasks meet in an :class:`Exchange`. The *app task* runs
``app(scope, receive, send)``. The *connection task* is the one astra
called the handler on; it alone touches the connection. It reads the
request body when the app's ``receive()`` asks for it, and it writes the
response: the handler returns a :class:`~protocols.Response` as soon as the
app has started one, and the response's body is this exchange, an async
iterator that the connection task drains chunk by chunk.

Why the connection task reads the body on the app's behalf: on HTTP/1.1 a
body read is a read of the connection's socket, and once the response is
over the connection task reads the next request from that same socket. A
body read left running in the app's task (an app that streams its response
while a second task of its own waits in ``receive()``, as frameworks do to
watch for disconnects) would then race the connection for its bytes. With
every read made by the connection task, and none once the response is over,
no two tasks ever read one socket, and the body's deadline cancels the task
that is actually waiting for the client.

The handoff holds one response chunk at a time: ``send()`` puts a chunk in
the slot and waits while the slot is still full, so an app producing faster
than its client reads is held back (at most the chunk in the slot and the
one being written are in memory), and a slot the connection will never
empty (the client has gone) ends the wait with :class:`ClientGone`.

What the app sees when the response is over (complete, or the client gone):
``receive()`` returns ``http.disconnect``; ``send()`` raises
:class:`ClientGone`, an :class:`OSError`, which is what ASGI spec version 2.4
asks of a server (a no-op would let an app stream into the void until its
source ran dry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel

from protocols import ClientDisconnected, Headers, HTTPError, Request, Response

from runtimes.common import logger

__all__ = ["ClientGone", "Exchange"]

Message = dict[str, Any]


class ClientGone(ClientDisconnected, OSError):
    """``send()`` after the response is over: the client went away, or the server answered it itself.

    An :class:`OSError` for ASGI apps (spec 2.4: Starlette turns it into its
    own ``ClientDisconnect``) and a :class:`~protocols.ClientDisconnected`
    for astra, which drops the request quietly if it reaches the handler.
    """


class Exchange:
    """One request's state, shared by the app task and the connection task.

    The app task calls :meth:`receive`, :meth:`send` and, when the app
    returns or raises, :meth:`app_finished`. The connection task calls
    :meth:`respond` (inside the handler), then iterates the exchange as the
    response body, and :meth:`close` or :meth:`aclose` when it stops.
    """

    __slots__ = (
        "request", "chunks", "expected", "received", "reading", "empty_due", "wants_read", "read_message",
        "start", "chunk", "final", "closed", "gone", "app_done", "app_error", "body_error",
        "connection_wake", "app_wake",
    )

    def __init__(self, request: Request) -> None:
        self.request = request
        body = request.body
        #: The request body's chunks (an async generator), while the app may ask for more.
        self.chunks: AsyncIterator[bytes] | None = None
        self.reading = not body.complete  # the app may ask for more of the body
        self.empty_due = not self.reading  # a bodiless request's one empty message is still to come
        self.expected = -1  # the declared Content-Length (-1: none), to end the body without a last read
        self.received = 0
        if self.reading:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit():
                self.expected = int(length)
        self.wants_read = False  # the app waits in receive() for the connection task to read
        self.read_message: Message | None = None
        self.start: tuple[int, Headers] | None = None
        self.chunk: bytes | None = None  # the slot: a body chunk sent, not yet taken by the connection
        self.final = False  # the app has sent its last body message
        self.closed = False  # the response is over: complete, failed or abandoned
        self.gone = False  # ... and not by completing (the client left, or the server answered itself)
        self.app_done = False
        self.app_error: BaseException | None = None
        self.body_error: Exception | None = None
        self.connection_wake: anyio.Event | None = None
        self.app_wake: anyio.Event | None = None

    # Waiting and waking. A side may have several waiters (an app often has a task in
    # receive() and another in send()): they share one event, and each checks its own
    # condition again when it fires. An anyio event cannot be cleared, so a fired one is
    # dropped and the next wait makes a new one.

    async def _wait_connection(self) -> None:
        event = self.connection_wake
        if event is None:
            event = self.connection_wake = anyio.Event()
        await event.wait()

    def _wake_connection(self) -> None:
        event = self.connection_wake
        if event is not None:
            self.connection_wake = None
            event.set()

    async def _wait_app(self) -> None:
        event = self.app_wake
        if event is None:
            event = self.app_wake = anyio.Event()
        await event.wait()

    def _wake_app(self) -> None:
        event = self.app_wake
        if event is not None:
            self.app_wake = None
            event.set()

    # The app's side ------------------------------------------------------------------

    async def receive(self) -> Message:
        while True:
            message = self.read_message
            if message is not None:
                self.read_message = None
                return message
            if self.closed:
                return {"type": "http.disconnect"}
            if self.reading:
                if not self.wants_read:
                    self.wants_read = True
                    self._wake_connection()
            elif self.empty_due:
                self.empty_due = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._wait_app()  # for the connection task's read, or for the response to end

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.start is None or self.final:
                when = "after the last one" if self.final else "before http.response.start"
                raise RuntimeError(f"ASGI message {kind!r} sent {when}")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):  # bytes(5) would be five zero bytes
                    raise TypeError(f"ASGI response body must be bytes, not {type(body).__name__}")
                body = bytes(body)
            while self.chunk is not None and not self.closed:  # the slot is full: the client is behind
                await self._wait_app()
            if self.closed:
                raise ClientGone("the response is over: the client has gone, or the server answered it")
            self.chunk = body
            self.final = not message.get("more_body", False)
            self._wake_connection()
        elif kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("ASGI message 'http.response.start' sent twice")
            if self.closed:
                raise ClientGone("the response is over: the client has gone, or the server answered it")
            status = message["status"]
            if type(status) is not int:
                raise TypeError(f"ASGI response status must be an int, not {type(status).__name__}")
            # Checked for CR, LF and the like by the protocol layer when it writes them.
            headers = Headers._trusted([(name.decode("latin-1").lower(), value.decode("latin-1"))
                                        for name, value in message.get("headers", ())])
            self.start = (status, headers)
            self._wake_connection()
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} on an HTTP connection")

    def app_finished(self, error: BaseException | None) -> None:
        """The app returned (``error`` None) or raised. Whoever still waits on it reports the error."""
        self.app_done = True
        if error is not None:
            if not self.closed:
                self.app_error = error  # the connection task raises it: astra logs it and answers 500 or aborts
            elif self.gone:
                logger.debug("ASGI app failed after its client had gone: %r", error)
            else:
                logger.error("ASGI app failed after its response: %s %s", self.request.method,
                             self.request.target, exc_info=error)
        self._wake_connection()

    # The connection task's side --------------------------------------------------------

    async def respond(self) -> Response:
        """Inside the handler: wait for the app's start, serving its body reads meanwhile."""
        # The app's task was started just now. One trip round the loop lets it run its first
        # step, which for most apps is the whole response (asyncio runs ready tasks in order;
        # trio may not, and then the wait below does it): no event to make, set and wait on.
        await anyio.lowlevel.checkpoint()
        while self.start is None:
            if self.wants_read:
                await self._read()
                if self.body_error is not None:
                    raise self._body_failure()
            elif self.app_done:
                raise self._no_start()
            else:
                await self._wait_connection()
        status, headers = self.start
        data = self.chunk
        # One body message with the start is the whole body: an in-memory response, sent with
        # its head in one write. (An empty one to a HEAD request is not: the app's Content-Length
        # then describes the body it would have sent, and a streamed body keeps it.)
        if self.final and data is not None and (data or self.request.method != "HEAD"):
            self.chunk = None
            await self._finish()
            return Response(data, status, headers)
        return Response(self, status, headers)

    def _no_start(self) -> BaseException:
        self.closed = True
        error = self.app_error
        if error is None:
            return RuntimeError("the ASGI app returned without starting a response")
        return error

    def _body_failure(self) -> Exception:
        """The request body failed before the response started: astra answers (4xx) or drops it."""
        self.closed = self.gone = True
        self._wake_app()
        error = self.body_error
        if isinstance(error, HTTPError):
            return error  # 408, 413, 400: the client's fault, whatever the app makes of its disconnect
        return ClientDisconnected("the client went away mid-body")

    async def _read(self) -> None:
        """Read the next body chunk for the app's receive()."""
        chunks = self.chunks
        if chunks is None:
            chunks = self.chunks = aiter(self.request.body)
        try:
            chunk = await anext(chunks, b"")
        except Exception as exc:  # the client went, broke its framing, or was too slow or too large
            self.body_error = exc
            self.reading = False
            message = {"type": "http.disconnect"}
        else:
            self.received += len(chunk)
            more = bool(chunk) and self.received != self.expected
            if not more:
                self.reading = False
            message = {"type": "http.request", "body": chunk, "more_body": more}
        self.read_message = message
        self.wants_read = False
        self._wake_app()

    def __aiter__(self) -> Exchange:
        return self

    async def __anext__(self) -> bytes:
        """The response's next chunk, as the app sends it (serving its body reads meanwhile)."""
        while True:
            if self.wants_read:
                await self._read()  # a failure mid-response: the app hears disconnect, the response goes on
                continue
            chunk = self.chunk
            if chunk is not None:
                self.chunk = None
                self._wake_app()  # the slot is free again
                if chunk:
                    return chunk
                continue
            if self.final:
                await self._finish()
                raise StopAsyncIteration
            if self.app_done:
                raise self.app_error or RuntimeError("the ASGI app returned before its response was complete")
            await self._wait_connection()

    async def _finish(self) -> None:
        """The response is complete: the app's receive() now says disconnect, its send() raises."""
        self.closed = True
        self._wake_app()
        if self.app_error is not None:  # raised after its last body message, before that was written
            logger.error("ASGI app failed after its response: %s %s", self.request.method,
                         self.request.target, exc_info=self.app_error)
        if self.chunks is not None:
            await self.chunks.aclose()  # a body the app stopped reading at its Content-Length

    def close(self) -> None:
        """The response will not go on (cancelled, replaced, aborted): release the app."""
        if not self.closed:
            self.closed = self.gone = True
            self.wants_read = False
            self._wake_app()

    async def aclose(self) -> None:
        self.close()
