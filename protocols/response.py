"""What a handler returns: :class:`Response`, built directly or with :class:`ResponseBuilder`.

A response body is a :class:`Body`: bytes or text held in memory (its length
is known, so ``Content-Length`` is sent), or a stream: an iterable of chunks
or a binary file-like object. An ``async`` generator is a stream too, on the
event-loop runtimes. A stream whose length cannot be known up front
goes out chunked on HTTP/1.1 (and as plain DATA frames on HTTP/2); a regular
file's remaining size is known, so it gets a ``Content-Length`` too.
"""

from __future__ import annotations

import io
import os
import stat
from http import HTTPStatus
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple, Union

from .headers import Headers

__all__ = ["Body", "Response", "ResponseBuilder", "BodyContent", "CONNECT_REFUSAL", "Refusal"]

BodyContent = Union[bytes, bytearray, memoryview, str, Iterable[bytes], BinaryIO, "Body", None]

CHUNK_SIZE = 64 * 1024
_TEXT_PLAIN = "text/plain; charset=utf-8"  # a str body's type, unless the handler names another


class Body:
    """A response body: in memory (``data``) or streamed (``chunks()``).

    ``length`` is the size in bytes when known up front, else ``None``.
    ``data`` is the whole body for in-memory bodies and ``None`` for streams;
    runtimes use it to send a small response in one write.
    """

    __slots__ = ("data", "length", "_stream")

    def __init__(self, content: BodyContent = b"") -> None:
        self._stream: Any = None
        if content is None:
            content = b""
        if isinstance(content, bytes):
            self.data: bytes | None = content
        elif isinstance(content, str):
            self.data = content.encode("utf-8")
        elif isinstance(content, (bytearray, memoryview)):
            self.data = bytes(content)
        elif isinstance(content, Body):
            self.data, self.length, self._stream = content.data, content.length, content._stream
            return
        elif hasattr(content, "__aiter__"):  # an async generator: event-loop runtimes only
            self.data = None
            self._stream = content
            self.length = None
            return
        elif hasattr(content, "read"):
            self.data = None
            self._stream = content
            self.length = _remaining_size(content)
            return
        elif isinstance(content, Iterable):
            self.data = None
            self._stream = content
            self.length = None
            return
        else:
            raise TypeError(f"cannot make a response body from {type(content).__name__}")
        self.length = len(self.data)

    @classmethod
    def empty(cls) -> Body:
        return cls(b"")

    @classmethod
    def _of_bytes(cls, data: bytes) -> Body:
        """An in-memory body from bytes, without the checks of ``Body(content)``."""
        body = cls.__new__(cls)
        body.data = data
        body.length = len(data)
        body._stream = None
        return body

    @property
    def is_stream(self) -> bool:
        return self.data is None

    @property
    def is_async(self) -> bool:
        """An async iterable: only an event-loop runtime can send it."""
        return hasattr(self._stream, "__aiter__")

    async def achunks(self) -> AsyncIterator[bytes]:
        """Yield an async stream's chunks as bytes, skipping empty ones."""
        async for chunk in self._stream:
            if chunk:
                yield _chunk_bytes(chunk)

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.close()

    def chunks(self) -> Iterator[bytes]:
        """Yield the body as non-empty byte chunks, reading streams lazily."""
        if self.data is not None:
            if self.data:
                yield self.data
            return
        stream = self._stream
        if hasattr(stream, "__aiter__"):
            raise TypeError("an async body needs an event-loop runtime (asyncio, trio)")
        if hasattr(stream, "read"):
            while chunk := stream.read(CHUNK_SIZE):
                yield _chunk_bytes(chunk)
            return
        for chunk in stream:
            if chunk:
                yield _chunk_bytes(chunk)

    def file_region(self) -> tuple[int, int, int] | None:
        """``(descriptor, offset, size)`` of a body that is the rest of a regular file, else None.

        What a runtime needs to send it with ``sendfile``: the kernel copies
        the file to the socket, and no byte passes through Python. The file's
        own position is not moved; the body is closed afterwards anyway.
        """
        if self.length is None or self.data is not None:
            return None
        stream = self._stream
        try:
            return stream.fileno(), stream.tell(), self.length
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None  # BytesIO, a wrapper without a descriptor, a closed file

    def close(self) -> None:
        """Release a streamed body's resources (files, generators)."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        kind = "stream" if self.is_stream else "bytes"
        return f"<Body {kind} length={self.length}>"


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason_phrase(status: int) -> str:
    """The standard reason phrase, or "" for a status Python's HTTPStatus does not know (599)."""
    return _REASONS.get(status, "")


class Refusal(NamedTuple):
    """An answer the server gives itself before any handler runs, the same on every protocol."""

    status: int
    reason: str  # the plain-text body's message
    headers: tuple[tuple[str, str], ...] = ()  # lower-case names, added to the answer


#: CONNECT (RFC 9110 9.3.6) asks for a tunnel; an origin server opens none, so
#: the method is refused, whatever the target, before a handler sees it.
#:
#: 405 must carry Allow, "the target resource's currently supported methods"
#: (RFC 9110 15.5.6). CONNECT's target is an authority, ``host:port``
#: (RFC 9112 3.2.3, RFC 9113 8.5): a tunnel endpoint, not a resource this
#: server has, so no method applies to it and the honest list is empty (RFC
#: 9110 10.2.1: an empty Allow means the resource allows no method). Listing
#: GET, POST and the like would be a guess about the application: the server
#: does not know which methods the handler serves, and on which paths. (A
#: CONNECT naming anything other than an authority is malformed; HTTP/2
#: resets it, and HTTP/1.1 refuses it as here rather than guess.)
CONNECT_REFUSAL = Refusal(405, "CONNECT is not supported: this is an origin server, not a proxy", (("allow", ""),))


def response_length(response: Response, declared: str | None) -> int | None:
    """The body length a response announces: its own when known, else the handler's Content-Length.

    ``declared`` is the handler's content-length value, if any. Raises
    ValueError for one that is not plain decimal digits ("-5" or "1e3" must
    never reach the wire, where a client or proxy would read it its own way).
    """
    length = response.body.length
    if length is None and declared:
        if not (declared.isascii() and declared.isdigit()):
            raise ValueError(f"invalid content-length {declared!r}")
        length = int(declared)  # a stream whose size the handler knows
    return length


def _chunk_bytes(chunk: object) -> bytes:
    """A streamed chunk as bytes; anything but bytes-like or str is the handler's bug.

    ``bytes(chunk)`` alone would turn an ``int`` n into n zero bytes on the wire.
    """
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"a response body chunk must be bytes or str, not {type(chunk).__name__}")


def _remaining_size(stream: Any) -> int | None:
    """Bytes left in a binary file, or None when that cannot be known cheaply."""
    if isinstance(stream, io.TextIOBase):
        return None  # characters, not bytes
    try:
        if isinstance(stream, io.BytesIO):
            return len(stream.getbuffer()) - stream.tell()
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return max(0, st.st_size - stream.tell())
    except (OSError, ValueError):
        return None


class Response:
    """An HTTP response: ``Response("Hello World!")``, ``Response(data, status=201)``.

    ``headers`` may be a dict or a list of pairs; ``content_type`` is a
    shortcut for the ``Content-Type`` header. A ``str`` body defaults to
    ``text/plain; charset=utf-8``. The server adds ``Content-Length`` or
    chunked framing, ``Date`` and ``Server`` itself. ``reason`` replaces the
    standard reason phrase on HTTP/1.1 (a WSGI app's ``"299 Custom"``);
    HTTP/2 has none.
    """

    __slots__ = ("status", "headers", "body", "reason")

    def __init__(
        self,
        body: BodyContent = b"",
        status: int = 200,
        headers: Headers | dict[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.status = status if type(status) is int else int(status)
        self.reason = reason
        if headers is None and content_type is None:  # Response("text") or Response(b"data"): the usual
            kind = type(body)
            if kind is str:
                self.headers = Headers._trusted([("content-type", _TEXT_PLAIN)])
                self.body = Body._of_bytes(body.encode("utf-8"))
                return
            self.headers = Headers()
            if kind is bytes:
                self.body = Body._of_bytes(body)
                return
        elif isinstance(headers, Headers):
            self.headers = headers
        else:
            self.headers = Headers(headers)
        if content_type is not None:
            self.headers["content-type"] = content_type
        elif isinstance(body, str) and "content-type" not in self.headers:
            self.headers.add("content-type", _TEXT_PLAIN)
        self.body = body if isinstance(body, Body) else Body(body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body!r}>"


class ResponseBuilder:
    """Build a response step by step, as in the Rust original::

        ResponseBuilder().status(201).header("Content-Type", "text/html").body("<p>hi</p>")
    """

    __slots__ = ("_status", "_headers")

    def __init__(self) -> None:
        self._status = 200
        self._headers = Headers()

    def status(self, status: int) -> ResponseBuilder:
        if not 100 <= int(status) <= 999:
            raise ValueError(f"invalid status code {status!r}")
        self._status = int(status)
        return self

    def header(self, name: str, value: str) -> ResponseBuilder:
        self._headers.add(name, value)
        return self

    def body(self, body: BodyContent = b"") -> Response:
        return Response(body, status=self._status, headers=self._headers)
