"""``start_response``, ``write`` and the application's iterable, made into one astra :class:`Response`.

A WSGI application answers in two steps that astra's handlers take in one:
it calls ``start_response`` with the head, then returns an iterable of
body chunks; a generator application may even call ``start_response`` only
when first iterated. So before the adapter can hand astra a Response it
iterates the result until the head is known and the first non-empty chunk
is in hand (PEP 3333's moment for sending the head). Until then the head
may still be replaced (``start_response`` with ``exc_info``); after it, such
a call re-raises the application's exception, which cuts the response off.

The body then takes one of three shapes:

- **in memory**: a list or tuple (``[b"Hello"]``), an iterable that ran
  dry before yielding anything, or one whose first chunk holds all of the
  declared ``Content-Length`` (Flask's responses): sent with its head in
  one write;
- **a file**: a ``wsgi.file_wrapper`` returned as is, read by astra's Body
  in large blocks with the file's size as ``Content-Length``;
- **a stream**: anything else, a :class:`ResponseStream` that astra's Body
  iterates as the client takes the bytes (chunked on HTTP/1.1 unless the
  application declared a ``Content-Length``).

The iterable's ``close()`` is called exactly once whatever happens: here
when the body ended before the Response was made (or the application
failed first), otherwise by the runtime through ``Body.close()`` when the
response ends, fails mid-way or its client goes away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from types import GeneratorType, TracebackType
from typing import Any

from protocols import Body, Headers, Response

from .fields import WSGIError, header_fields, status_code
from .streams import FileWrapper

__all__ = ["Exchange", "ResponseStream"]

logger = logging.getLogger("astra.wsgi")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class Exchange:
    """One request's ``start_response`` and ``write``, and the Response its application's answer makes.

    ``write()`` data cannot go out while the application runs: the Response
    exists only once the application returns. It is held, and sent before
    the iterable's chunks; ``max_pending`` bounds what an application may
    hold that way (past it ``write()`` raises), so an old-style application
    streaming gigabytes through ``write()`` fails instead of exhausting memory.
    """

    __slots__ = ("status", "reason", "fields", "declared", "committed", "pending", "pending_bytes", "max_pending")

    def __init__(self, max_pending: int) -> None:
        self.status = 0  # 0 until start_response is called
        self.reason: str | None = None  # a reason phrase other than the standard one
        self.fields: list[tuple[str, str]] = []
        self.declared: int | None = None  # the application's Content-Length
        self.committed = False  # the head can no longer change (PEP 3333: "headers sent")
        self.pending: list[bytes] = []  # write() data not yet handed to astra
        self.pending_bytes = 0
        self.max_pending = max_pending

    # -- what the application calls --------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None):
        if exc_info is not None:
            try:
                if self.committed:  # too late to change the head: the application's error ends the response
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback's frames
        elif self.status:
            raise WSGIError("start_response() called a second time without exc_info")
        code, reason = status_code(status)
        self.fields, self.declared = header_fields(headers)
        self.status, self.reason = code, reason
        return self.write

    def write(self, data: bytes) -> None:
        if not self.status:
            raise WSGIError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        self.committed = True
        if data:
            self.pending_bytes += len(data)
            if self.pending_bytes > self.max_pending:
                raise WSGIError(f"more than {self.max_pending} bytes held from write() (see max_write_buffer)")
            self.pending.append(data)

    def take_pending(self) -> list[bytes]:
        pending = self.pending
        self.pending = []
        self.pending_bytes = 0
        return pending

    # -- what the adapter calls ------------------------------------------------------

    def respond(self, result: Iterable[bytes]) -> Response:
        """The Response for the application's return value (raises what the application raised)."""
        kind = type(result)
        if kind is list or kind is tuple:
            if not self.status:
                raise WSGIError("the application returned without calling start_response()")
            if self.pending:
                result = [*self.take_pending(), *result]
            data = result[0] if len(result) == 1 else b"".join(result)
            if type(data) is not bytes:
                raise TypeError(f"the application's body must hold bytes, not {type(data).__name__}")
            return self._whole(data)
        if kind is FileWrapper and self.status and not self.pending:
            response = self._file(result)
            if response is not None:
                return response
        return self._streamed(result)

    def _streamed(self, result: Iterable[bytes]) -> Response:
        try:
            chunks = iter(result)
            for chunk in chunks:  # until the head is known and a chunk is in hand
                if type(chunk) is not bytes:
                    raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
                if chunk:
                    break
            else:
                chunk = b""
            if not self.status:
                raise WSGIError("the application's body ended without a call to start_response()")
        except BaseException:
            close_result(result)
            raise
        if not chunk:  # it ran dry: nothing is left to stream
            close_result(result)
            return self._whole(b"".join(self.take_pending()))
        declared = self.declared
        if declared is not None and self.pending_bytes + len(chunk) >= declared \
                and type(chunks) is not GeneratorType:
            # The first chunk completes the declared length: nothing more may be sent (PEP 3333),
            # so the body is whole now. What nearly every framework returns (Flask's closing
            # iterator over one block) then costs one write, and on the event loops no more
            # trips to a worker for the iterable's end and its close(). Not a generator: the
            # code after its last yield is the application's, and runs as it expects.
            close_result(result)
            return self._whole(b"".join([*self.take_pending(), chunk]))
        self.committed = True
        return self._response(Body(ResponseStream(self, result, chunks, chunk)))

    def _whole(self, data: bytes) -> Response:
        declared = self.declared
        if declared is not None and declared != len(data):
            if declared < len(data):
                data = data[:declared]  # PEP 3333: never more than the application declared
            elif not data:
                # No body, a length declared: the answer to HEAD. A body of unknown
                # length lets the protocol send the application's Content-Length.
                return self._response(Body(()))
        return self._response(Body(data))

    def _file(self, wrapper: FileWrapper) -> Response | None:
        """A returned ``wsgi.file_wrapper``, as a file astra sends (None: iterate it instead)."""
        filelike = wrapper.filelike
        if not hasattr(filelike, "read"):
            return None
        body = Body(filelike)  # its close() closes the file, as the wrapper's would
        if self.declared is not None and body.length != self.declared:
            return None  # part of the file: iterated, to stop at the declared length
        self.committed = True
        return self._response(body)

    def _response(self, body: Body) -> Response:
        # The names are checked and lower-cased already: no second pass over them.
        return Response(body, self.status, Headers._trusted(self.fields), reason=self.reason)


class ResponseStream:
    """The application's iterable after its first chunk, as the iterable astra's Body streams and closes.

    Yields held ``write()`` data first, then the first chunk, then the rest,
    with any ``write()`` made while producing a chunk before that chunk; a
    declared ``Content-Length`` is a ceiling (PEP 3333: the server sends no
    more). ``close()`` closes the application's iterable once, however
    often it is called.
    """

    __slots__ = ("_exchange", "_result", "_chunks", "_first")

    def __init__(self, exchange: Exchange, result: Iterable[bytes], chunks: Iterator[bytes], first: bytes) -> None:
        self._exchange = exchange
        self._result: Any = result
        self._chunks = chunks
        self._first = first

    def __iter__(self) -> Iterator[bytes]:
        if self._exchange.declared is None:
            return self._produce()
        return self._up_to(self._exchange.declared)

    def _produce(self) -> Iterator[bytes]:
        exchange = self._exchange
        if exchange.pending:
            yield from exchange.take_pending()
        yield self._first
        for chunk in self._chunks:
            if type(chunk) is not bytes:
                raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
            if exchange.pending:
                yield from exchange.take_pending()
            yield chunk
        if exchange.pending:  # written while the iterable finished
            yield from exchange.take_pending()

    def _up_to(self, left: int) -> Iterator[bytes]:
        for chunk in self._produce():
            if len(chunk) > left:
                yield chunk[:left]
                return  # the rest is never sent; close() tells the application
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        result, self._result = self._result, None
        if result is not None:
            close_result(result)


def close_result(result: object) -> None:
    """Call the iterable's ``close()``, if it has one; a failure there is the application's, logged."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.exception("the WSGI application's close() failed")
