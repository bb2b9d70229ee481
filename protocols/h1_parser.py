"""What the HTTP/1.1 connection needs from a request parser, and h11 providing it.

:class:`~.http11.HTTP11Connection` is policy: limits, the strict reading of
RFC 9112, keep-alive, framing of responses. Turning bytes into a request line,
header fields and body bytes is the parser's job, and more than one parser can
do it: h11 in pure Python (:class:`H11Parser`, here) and llhttp in C, through
httptools (:class:`~.h1_httptools.HttptoolsParser`, the ``fast`` extra). Each
is wrapped in an adapter implementing :class:`RequestParser`, so that the
policy is written once and a new parser brings only its adapter.
:func:`parser_factory` turns a :attr:`~.limits.Limits.http1_parser` choice
(:data:`HTTP1_PARSERS`) into one.

Both adapters read request *heads* only. Bodies are decoded by :mod:`.h1_body`
whichever parser read the head, and a head ends at its first blank line by
one rule for both, so where one request ends and the next begins never
depends on the parser.

The interface is shaped by the per-request hot path: :meth:`~RequestParser.next_event`
returns a plain tuple, a ``bytes`` object or a module-level signal, which the
connection tells apart with one ``type(...) is`` test, instead of an event
object allocated per occurrence and an ``isinstance`` chain.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol, Union, runtime_checkable

import h11

from .errors import ProtocolError
from .h1_body import BodyDecoder, ChunkedDecoder, FramingError, LengthDecoder

__all__ = [
    "CONNECTION_CLOSED", "END_OF_MESSAGE", "H11Parser", "Http1Parser", "NEED_DATA", "PAUSED",
    "ParseError", "ParserEvent", "ParserFactory", "RequestHead", "RequestParser", "Signal",
    "body_decoder", "parser_factory",
]


class Signal:
    """A parser event that carries no data; each kind exists once and is compared by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Every byte received has been parsed; more are needed to go on.
NEED_DATA = Signal("NEED_DATA")
#: The request is complete; what follows is the next request, which waits
#: until :meth:`RequestParser.start_next` (after the response has ended).
PAUSED = Signal("PAUSED")
#: The request body (possibly empty) is complete.
END_OF_MESSAGE = Signal("END_OF_MESSAGE")
#: The client closed its side between requests.
CONNECTION_CLOSED = Signal("CONNECTION_CLOSED")

#: ``(method, target, http_version, fields)``: all bytes, ``http_version``
#: like ``b"1.1"``, ``fields`` the ``(name, value)`` pairs as received (names
#: in any case, values without surrounding whitespace). It must be a plain
#: ``tuple``, not a subclass: the connection dispatches on ``type(event) is tuple``.
RequestHead = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]
#: A head, a piece of body (``bytes``, never empty) or a :class:`Signal`.
ParserEvent = Union[RequestHead, bytes, Signal]


class ParseError(ProtocolError):
    """The bytes are not a valid HTTP/1.1 request; ``status`` is the answer to give (400, 431, 501...)."""


@runtime_checkable
class RequestParser(Protocol):
    """A parser of one connection's requests, one request at a time.

    It parses up to the end of one request and then reports :data:`PAUSED`
    (however many bytes follow) until the connection calls :meth:`start_next`,
    which is what keeps pipelined requests behind their predecessors'
    responses. It does not judge anything the connection can judge from the
    head it returns (Host, Content-Length against Transfer-Encoding,
    keep-alive): that is policy, and lives in the connection.
    """

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` once it has closed its side (nothing follows that).

        Never raises: a parser that finds errors while it is fed keeps them
        for :meth:`next_event`.
        """

    def next_event(self) -> ParserEvent:
        """The next thing the received bytes say; raises :class:`ParseError` when they are invalid.

        After a head that announces no body, the connection does not ask for
        its :data:`END_OF_MESSAGE`: it knows.
        """

    def buffered(self) -> bytes:
        """Bytes received but not yet parsed (the connection checks a head's raw syntax on them)."""

    def start_next(self) -> bool:
        """Start parsing the next request with the bytes left over; True when bytes (or EOF) wait.

        Called once the response has ended and the request is complete, even
        when its :data:`END_OF_MESSAGE` was not asked for.
        """

    @property
    def waiting_for_continue(self) -> bool:
        """Did the client send ``Expect: 100-continue`` and no body byte yet?"""


#: Makes a parser; the argument is the largest request head to accept, which
#: the parser may use to stop buffering early (the connection enforces it too).
ParserFactory = Callable[[int], RequestParser]


def body_decoder(fields: list[tuple[bytes, bytes]], budget: int, received: bytes, closed: bool) -> BodyDecoder:
    """The decoder for the body a head announces, given the bytes after the head.

    The framing is read from the head as the connection has judged it: at
    most one Transfer-Encoding, and it is ``chunked``; Content-Length values
    are digits, and repeats agree. Whether that framing is acceptable at all
    (both headers, chunked in HTTP/1.0) is the connection's judgement, made
    before it asks for the body. ``budget`` is the chunked framing budget
    (see :mod:`.h1_body`).
    """
    length = 0
    for name, value in fields:
        name = name.lower()
        if name == b"transfer-encoding":
            return ChunkedDecoder(budget, received, closed)
        if name == b"content-length":
            length = int(value)
    return LengthDecoder(length, received, closed)


class _BodyReading:
    """What both adapters do once a head's body has started: hand out what :mod:`.h1_body` decodes.

    A subclass has the slots ``_ended`` (END_OF_MESSAGE has been returned)
    and ``_body`` (the decoder).
    """

    __slots__ = ()

    def _body_event(self, body: BodyDecoder) -> ParserEvent:
        try:
            data = body.read()
        except FramingError as exc:
            raise ParseError(exc.message, exc.status) from None
        if data:
            return data
        if data is None:
            return NEED_DATA
        if self._ended:
            return PAUSED
        self._ended = True
        return END_OF_MESSAGE


class H11Parser(_BodyReading):
    """:class:`RequestParser` on h11 for request heads, and :mod:`.h1_body` for bodies.

    h11 parses one request head per ``h11.Connection``; :meth:`start_next`
    hands the leftover bytes to a fresh one. That is cheaper than driving
    h11's writer and state machine through every response (the connection
    writes responses itself, see :mod:`.h1_wire`), and keeps keep-alive
    decisions in the connection rather than split between it and h11.

    h11 never sees a body byte: it reads chunked framing leniently (see
    :mod:`.h1_body` for what that lets through). When the connection asks
    for the event after a head, the bytes h11 holds beyond the head go to a
    strict decoder of ours, which from then on receives the client's bytes.
    A request without a body never gets that far (the connection does not
    ask for its end), so the hot path of a GET is h11's alone.
    """

    __slots__ = ("_max_head", "_conn", "_fields", "_body", "_ended", "_expects_continue", "receive_data")

    def __init__(self, max_head_bytes: int) -> None:
        self._max_head = max_head_bytes
        self._conn = conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        # h11's own method, bound: a forwarding method would cost a call per read.
        self.receive_data = conn.receive_data
        self._fields: list[tuple[bytes, bytes]] | None = None  # the head returned, until its body starts
        self._body: BodyDecoder | None = None
        self._ended = False  # END_OF_MESSAGE has been returned
        self._expects_continue = False

    def next_event(self) -> ParserEvent:
        if self._body is not None:
            return self._body_event(self._body)
        if self._fields is not None:
            return self._body_event(self._start_body(self._fields))
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(str(exc), exc.error_status_hint) from None
        kind = type(event)
        if kind is h11.Request:
            # raw_items() is a plain list; iterating h11's Headers goes through
            # the generic Sequence protocol, several times slower per field.
            self._fields = fields = event.headers.raw_items()
            return (event.method, event.target, event.http_version, fields)
        if kind is h11.ConnectionClosed:
            return CONNECTION_CLOSED
        # h11 is given only heads, so NEED_DATA is all that is left (PAUSED
        # would follow a body h11 had read, which it never does).
        return NEED_DATA if event is h11.NEED_DATA else PAUSED

    def _start_body(self, fields: list[tuple[bytes, bytes]]) -> BodyDecoder:
        """Take the bytes after the head away from h11 and give them to a body decoder."""
        received, closed = self._conn.trailing_data
        self._expects_continue = self._conn.they_are_waiting_for_100_continue
        self._body = body = body_decoder(fields, self._max_head, received, closed)
        self.receive_data = body.receive_data
        return body

    def buffered(self) -> bytes:
        if self._body is not None:
            return self._body.buffered()
        return self._conn.trailing_data[0]

    def start_next(self) -> bool:
        if self._body is not None:
            leftover, closed = self._body.leftover()
            self._body = None
            self._ended = False
        else:
            leftover, closed = self._conn.trailing_data
        self._fields = None
        self._conn = conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)
        self.receive_data = conn.receive_data
        if leftover:
            conn.receive_data(leftover)
        if closed:
            conn.receive_data(b"")
        return bool(leftover) or closed

    @property
    def waiting_for_continue(self) -> bool:
        if self._body is not None:
            return self._expects_continue and not self._body.received
        return self._conn.they_are_waiting_for_100_continue


# -- choosing a parser ------------------------------------------------------------------

class Http1Parser(StrEnum):
    """Which parser reads HTTP/1.1 request heads (:attr:`~.limits.Limits.http1_parser`, ``--http1-parser``).

    A :class:`~enum.StrEnum`, so the plain strings (``"httptools"``) still
    work where a choice is given in code or on the command line.
    """

    H11 = "h11"  #: pure Python, always installed
    HTTPTOOLS = "httptools"  #: llhttp, in C: ``pip install astra[fast]``
    AUTO = "auto"  #: httptools when it can be imported, else h11


_FACTORIES: dict[Http1Parser, ParserFactory] = {Http1Parser.H11: H11Parser}


def parser_factory(choice: Http1Parser | str) -> ParserFactory:
    """The parser class a :class:`Http1Parser` choice names.

    Raises ValueError for an unknown choice and ImportError for
    ``httptools`` when httptools is not installed. Resolved once per choice
    (``auto`` tries the import once), so a connection pays a dict lookup.
    """
    factory = _FACTORIES.get(choice)
    if factory is None:
        try:
            choice = Http1Parser(choice)
        except ValueError:
            raise ValueError(f"http1_parser must be one of {[p.value for p in Http1Parser]}, "
                             f"not {choice!r}") from None
        try:
            from .h1_httptools import HttptoolsParser
        except ImportError as exc:
            if choice is Http1Parser.HTTPTOOLS:
                raise ImportError(
                    f"the httptools HTTP/1 parser needs httptools ({exc}): pip install 'astra[fast]'"
                ) from exc
            factory = H11Parser
        else:
            factory = HttptoolsParser
        _FACTORIES[choice] = factory
    return factory
