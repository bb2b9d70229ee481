""":class:`~.h1_parser.RequestParser` on llhttp (Node's parser, through httptools) for request heads.

The only module that imports httptools (the ``fast`` extra): an
``ImportError`` here is what ``--http1-parser auto`` falls back to h11 on.

What llhttp is given, and what stays ours:

- **Where a head ends** is ours: the first CRLF CRLF in the bytes received,
  the rule h11 follows once the connection has refused bare CR and LF (which
  it does before any parser sees a head). llhttp is fed one complete head at
  a time and never a byte beyond it, so it cannot end a request anywhere else.
- **Bodies** are ours, as with h11: the bytes after the head go to the strict
  decoders of :mod:`.h1_body` (:func:`~.h1_parser.body_decoder`), and where a
  body ends is where the next request starts. llhttp never sees a body byte,
  so neither its chunked reading nor its leniencies can move a boundary.
  (httptools offers no way to pause llhttp at the end of a head and learn
  where it stopped; feeding it heads alone needs none.)
- **The request line** is read by one regular expression, h11's grammar
  (``method SP request-target SP HTTP/d.d``). llhttp's is narrower where RFC
  9110 says accept (a fixed list of methods, a URL grammar per method,
  versions 0.9, 1.0, 1.1 and 2.0 only) and wider where we refuse (runs of
  spaces, HTTP/0.9 request lines without a version), and the connection's
  policy, not the parser, decides about methods, targets and versions.
- **Header fields** are llhttp's: it is shown a constant request line and the
  client's field lines, and reports each field (``on_header``). That is the
  work that grows with the request, and it runs in C.
- **A head that llhttp or the request-line expression refuses**, or that
  llhttp reads as a different number of fields than it has lines, is read
  again by h11, and h11's reading (its fields, or its error and status) is
  the answer. So every refused head gets the status it gets with h11, and
  the few that llhttp refuses although RFC 9110 allows them (``Content-Length:
  5, 5``, a Content-Length repeated with one value) are accepted as h11
  accepts them. The one shape known where llhttp accepts what h11 refuses, a
  Content-Length of more than 20 digits (leading zeros), is sent to h11 too.
  A client pays h11's price only for a head that is malformed or unusual.

That nothing else is accepted by llhttp and refused by h11 is what the
differential fuzzer (``tests/test_fuzz_h1.py``) checks: it serves every
stream through both parsers, whole and cut into reads, and requires the same
requests, bodies and statuses. The one difference a handler can see: h11
lowercases a Transfer-Encoding value (``Chunked`` reaches the handler as
``chunked``); llhttp leaves it as sent.
"""

from __future__ import annotations

import re

import h11
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .h1_body import BodyDecoder
from .h1_parser import (
    CONNECTION_CLOSED,
    NEED_DATA,
    ParseError,
    ParserEvent,
    RequestHead,
    _BodyReading,
    body_decoder,
)

__all__ = ["HttptoolsParser"]

# h11's request-line grammar (h11._abnf.request_line): a token, one space, visible
# ASCII, one space, HTTP/ and a one-digit major and minor version.
_REQUEST_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
# What llhttp is shown in place of the client's request line (see the module docstring).
_FIELDS_AFTER = b"GET / HTTP/1.1\r\n"


class _Received:
    """Bytes received while no body decoder is taking them, and whether the client has closed.

    Its own object, so that the parser can hand out its bound ``receive_data``
    without a reference cycle through itself.
    """

    __slots__ = ("data", "closed")

    def __init__(self, data: bytes, closed: bool) -> None:
        self.data = data
        self.closed = closed

    def receive_data(self, data: bytes) -> None:
        if data:
            self.data += data  # b"" + data is data itself: the common single read is not copied
        else:
            self.closed = True


class _Fields:
    """The callbacks llhttp calls with a head's fields (it holds no reference to the parser)."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        value = value.rstrip(b" \t")  # llhttp drops the whitespace before a value, not after it
        # h11 refuses a Content-Length of more than 20 digits; llhttp takes any
        # number of leading zeros. Raising makes the head h11's to read.
        if len(value) > 20 and len(name) == 14 and name.lower() == b"content-length":
            raise ValueError("a Content-Length h11 refuses")
        self.fields.append((name, value))


class HttptoolsParser(_BodyReading):
    """Request heads by llhttp (see the module docstring), bodies by :mod:`.h1_body`."""

    __slots__ = ("_max_head", "_received", "_recorder", "_fields", "_version", "_body", "_ended",
                 "_expects_continue", "receive_data")

    def __init__(self, max_head_bytes: int) -> None:
        self._max_head = max_head_bytes
        self._received = received = _Received(b"", False)
        self.receive_data = received.receive_data
        self._recorder = _Fields()
        self._fields: list[tuple[bytes, bytes]] | None = None  # the head returned, until its body starts
        self._version = b""
        self._body: BodyDecoder | None = None
        self._ended = False  # END_OF_MESSAGE has been returned
        self._expects_continue = False

    def next_event(self) -> ParserEvent:
        if self._body is not None:
            return self._body_event(self._body)
        if self._fields is not None:
            return self._body_event(self._start_body(self._fields))
        received = self._received
        data = received.data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            # As h11 does: a first byte that no request line starts with is
            # refused at once (a TLS handshake, an empty line), not after a timeout.
            if data and data[0] < 0x21:
                raise ParseError("illegal request line")
            if len(data) > self._max_head:  # the connection checks first; this is for the parser alone
                raise ParseError("request head too large", 431)
            if received.closed:
                if data:
                    raise ParseError("peer unexpectedly closed connection")
                return CONNECTION_CLOSED
            return NEED_DATA
        if data[0] < 0x21:
            raise ParseError("illegal request line")
        end += 4
        received.data = data[end:]
        head = self._read_head(data, end)
        self._version = head[2]
        self._fields = head[3]
        return head

    def _read_head(self, data: bytes, end: int) -> RequestHead:
        """The head in ``data[:end]`` (its blank line included), by llhttp, or by h11 where llhttp cannot vouch."""
        line_end = data.find(b"\r\n")
        match = _REQUEST_LINE.fullmatch(data, 0, line_end)
        if match is None:
            return _h11_head(data[:end])
        method, target, version = match.groups()
        if line_end + 4 == end:  # no fields at all
            return (method, target, version, [])
        recorder = self._recorder
        recorder.fields = fields = []
        try:
            HttpRequestParser(recorder).feed_data(_FIELDS_AFTER + data[line_end + 2:end])
        except HttpParserUpgrade:
            pass  # Upgrade and Connection: upgrade; the head is complete, and the rest is ours
        except HttpParserError:  # a callback's exception included
            return _h11_head(data[:end])
        # One field per line (field lines hold no CR or LF: the connection has
        # checked); anything else is a reading h11 gets to judge.
        if len(fields) != data.count(b"\r\n", line_end, end) - 2:
            return _h11_head(data[:end])
        return (method, target, version, fields)

    def _start_body(self, fields: list[tuple[bytes, bytes]]) -> BodyDecoder:
        """Give the bytes after the head to a body decoder, which from now on receives the client's bytes."""
        received = self._received
        self._expects_continue = _expects_continue(self._version, fields)
        self._body = body = body_decoder(fields, self._max_head, received.data, received.closed)
        received.data = b""
        self.receive_data = body.receive_data
        return body

    def buffered(self) -> bytes:
        if self._body is not None:
            return self._body.buffered()
        return self._received.data

    def start_next(self) -> bool:
        if self._body is not None:
            leftover, closed = self._body.leftover()
            self._body = None
            self._ended = False
            received = self._received
            received.data, received.closed = leftover, closed
            self.receive_data = received.receive_data
        else:
            received = self._received
            leftover, closed = received.data, received.closed
        self._fields = None
        return bool(leftover) or closed

    @property
    def waiting_for_continue(self) -> bool:
        if self._body is not None:
            return self._expects_continue and not self._body.received
        return self._fields is not None and _expects_continue(self._version, self._fields)


def _expects_continue(version: bytes, fields: list[tuple[bytes, bytes]]) -> bool:
    """Does the head ask for ``100 Continue``? h11's rule: ``100-continue`` among the Expect
    values, and ignored below HTTP/1.1 (RFC 9110 10.1.1)."""
    if version < b"1.1":
        return False
    for name, value in fields:
        if name.lower() == b"expect" and any(token.strip() == b"100-continue" for token in value.lower().split(b",")):
            return True
    return False


def _h11_head(head: bytes) -> RequestHead:
    """h11's reading of one complete head: the fields it returns, or its refusal (and status)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise ParseError(str(exc), exc.error_status_hint) from None
    if type(event) is not h11.Request:  # a complete head is a request or an error
        raise ParseError("illegal request head")
    return (event.method, event.target, event.http_version, event.headers.raw_items())
