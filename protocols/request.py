"""The request a handler receives, and the reader for its body.

A :class:`Request` is built by the protocol layer from a parsed request head;
the runtime then attaches a :class:`RequestBody` whose *source* knows how to
fetch the next chunk of body bytes. That split keeps this module free of I/O:
a thread runtime's source blocks on a socket, an event-loop runtime's source
waits on a queue, and the reader above them is the same code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from .headers import Headers

__all__ = ["AsyncBodySource", "BodySource", "ConnectionInfo", "Request", "RequestBody", "TLSInfo"]

#: Returns the next chunk of body bytes, ``b""`` once the body is complete.
#: May block (thread runtimes) and may raise ``ClientDisconnected``,
#: ``BodyTooLarge`` or a timeout.
BodySource = Callable[[], bytes]
#: The same, awaited: how an ``async def`` handler's body arrives.
AsyncBodySource = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What a connection's TLS handshake settled (``request.connection.tls``)."""

    version: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    alpn: str | None  # the protocol agreed, "h2" or "http/1.1"; None if the client offered none
    server_name: str | None  # SNI: the host name the client asked for, None if it named none
    #: The client's certificate as ``ssl.SSLSocket.getpeercert()`` gives it, if it sent one
    #: that was verified (mutual TLS); None otherwise.
    client_certificate: dict | None = None
    # The same settlement as numbers and PEM text: what the ASGI TLS extension reports.
    version_code: int | None = None  # 0x0304 for TLS 1.3
    cipher_code: int | None = None  # the suite's IANA number: 0x1302 for TLS_AES_256_GCM_SHA384
    client_certificate_chain: tuple[str, ...] = ()  # PEM, the client's own certificate first
    client_certificate_name: str | None = None  # its subject as RFC 4514 text: "CN=alice,O=Example"
    server_certificate: str | None = None  # PEM: the certificate this server presented


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who is on the other end of a connection, and how they reached us."""

    peer: tuple[str, int] | None
    local: tuple[str, int] | None
    scheme: str = "http"
    #: Set once the TLS handshake has finished (scheme "https"); None on a cleartext connection.
    tls: TLSInfo | None = None


class RequestBody:
    """A request body, streamed: read it whole, in chunks, or like a file.

    ``read()`` with no size returns everything; ``read(n)`` at most ``n``
    bytes; iterating yields chunks as they arrive from the client; and
    ``readline`` / ``readinto`` make it usable wherever a binary file is
    expected. Bytes are fetched from the client only when asked for, so a
    handler that streams a large upload never holds it all in memory.

    On the event-loop runtimes an ``async def`` handler awaits instead:
    ``await body.aread()`` or ``async for chunk in body``.
    """

    __slots__ = ("_source", "_asource", "_buffer", "_done")

    def __init__(self, source: BodySource | None = None, asource: AsyncBodySource | None = None) -> None:
        self._source = source
        self._asource = asource
        self._buffer = b""
        self._done = source is None and asource is None

    def _fetch(self) -> bytes:
        if self._done:
            return b""
        if self._source is None:
            raise RuntimeError("this body can only be read with await (body.aread(), async for)")
        chunk = self._source()
        if not chunk:
            self._done = True
        return chunk

    async def _afetch(self) -> bytes:
        if self._done:
            return b""
        if self._asource is None:
            raise RuntimeError("this body is read without await (body.read(), for)")
        chunk = await self._asource()
        if not chunk:
            self._done = True
        return chunk

    async def aread(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while chunk := await self._afetch():
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buffer) < size:
            chunk = await self._afetch()
            if not chunk:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            yield chunk
        while chunk := await self._afetch():
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            yield chunk
        while chunk := self._fetch():
            yield chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            parts.extend(iter(self._fetch, b""))
            return b"".join(parts)
        while len(self._buffer) < size:
            chunk = self._fetch()
            if not chunk:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def read1(self, size: int = -1) -> bytes:
        """Return what is buffered, or one chunk from the client: never waits twice."""
        if not self._buffer:
            self._buffer = self._fetch()
        if size is None or size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self._buffer and (size < 0 or len(self._buffer) < size):
            chunk = self._fetch()
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size >= 0:
            end = min(end, size)
        out, self._buffer = self._buffer[:end], self._buffer[end:]
        return out

    def readable(self) -> bool:
        return True

    @property
    def complete(self) -> bool:
        """True once every byte the client sent has been handed out."""
        return self._done and not self._buffer


#: The body of every request that has none. Shared: reading an empty body
#: changes nothing in it, and a runtime gives a request with a body its own.
_NO_BODY = RequestBody()


class Request:
    """One HTTP request, whatever protocol carried it.

    Attributes: ``method`` (``"GET"``), ``target`` (as sent: ``"/a%20b?x=1"``),
    ``path`` (percent-decoded: ``"/a b"``), ``query`` (raw query string),
    ``headers`` (:class:`Headers`), ``http_version`` (``"1.1"``, ``"2"``),
    ``connection`` (:class:`ConnectionInfo`) and ``body``
    (:class:`RequestBody`).
    """

    __slots__ = (
        "method", "target", "headers", "http_version", "connection", "body",
        "_path", "_query", "_query_params",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        http_version: str = "1.1",
        connection: ConnectionInfo | None = None,
        body: RequestBody | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.connection = connection or ConnectionInfo(None, None)
        self.body = body if body is not None else _NO_BODY
        self._path: str | None = None
        self._query = ""
        self._query_params: dict[str, list[str]] | None = None

    def _split_target(self) -> None:
        target = self.target
        if target.startswith("/"):
            raw_path, _, self._query = target.partition("?")
        elif "://" in target:  # absolute-form, as sent to proxies
            parts = urlsplit(target)
            raw_path, self._query = parts.path or "/", parts.query
        else:  # "*" (OPTIONS) or authority-form (CONNECT)
            raw_path = target
        self._path = unquote(raw_path) if "%" in raw_path else raw_path

    @property
    def path(self) -> str:
        if self._path is None:
            self._split_target()
        return self._path  # type: ignore[return-value]

    @property
    def query(self) -> str:
        if self._path is None:
            self._split_target()
        return self._query

    @property
    def query_params(self) -> dict[str, list[str]]:
        """The query string parsed into ``{name: [values]}``."""
        if self._query_params is None:
            self._query_params = parse_qs(self.query, keep_blank_values=True)
        return self._query_params

    @property
    def protocol(self) -> str:
        """``"HTTP/1.1"``, ``"HTTP/1.0"`` or ``"HTTP/2"``."""
        return f"HTTP/{self.http_version}"

    @property
    def peer(self) -> tuple[str, int] | None:
        """The client's address, as the socket reports it."""
        return self.connection.peer

    # -- body conveniences --------------------------------------------------

    def read(self) -> bytes:
        """The whole body (bounded by the server's ``max_body_bytes``)."""
        return self.body.read()

    async def aread(self) -> bytes:
        """The whole body, awaited (``async def`` handlers)."""
        return await self.body.aread()

    def text(self, encoding: str = "utf-8") -> str:
        return self.read().decode(encoding)

    def json(self) -> object:
        return json.loads(self.read())

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} {self.protocol}>"
