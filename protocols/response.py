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
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO, Union

from .headers import Headers

__all__ = ["Body", "Response", "ResponseBuilder", "BodyContent"]

BodyContent = Union[bytes, bytearray, memoryview, str, Iterable[bytes], BinaryIO, "Body", None]

CHUNK_SIZE = 64 * 1024


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
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if chunk:
                yield bytes(chunk)

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
                yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
            return
        for chunk in stream:
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if chunk:
                yield bytes(chunk)

    def close(self) -> None:
        """Release a streamed body's resources (files, generators)."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        kind = "stream" if self.is_stream else "bytes"
        return f"<Body {kind} length={self.length}>"


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
    chunked framing, ``Date`` and ``Server`` itself.
    """

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        body: BodyContent = b"",
        status: int = 200,
        headers: Headers | dict[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = int(status)
        if isinstance(headers, Headers):
            self.headers = headers
        else:
            self.headers = Headers(headers)
        if content_type is not None:
            self.headers["content-type"] = content_type
        elif isinstance(body, str) and "content-type" not in self.headers:
            self.headers.add("content-type", "text/plain; charset=utf-8")
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
