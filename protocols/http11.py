"""HTTP/1.1 as a sans-IO connection: h11 parses, :mod:`.h1_wire` writes.

:class:`HTTP11Connection` turns received bytes into request events and
responses into bytes to send. It never touches a socket: a runtime calls
:meth:`receive_data` with whatever it read, handles :meth:`events`, calls
:meth:`send_response` / :meth:`send_data` / :meth:`end_stream` for each
response and writes :meth:`data_to_send` out. HTTP/2 has the same shape, so a
runtime is written once for both.

h11 parses one request per ``h11.Connection``; when a response ends, a fresh
one takes over the bytes left in the buffer (a pipelined request, perhaps).
That is cheaper than driving h11's writer and state machine through every
response, and it leaves keep-alive decisions here, in one place.

On top of h11 this layer adds what a server needs: limits (431, 413); a
stricter reading of RFC 9112 where h11 is lenient (it accepts bare LF line
endings and obsolete line folding, and lets Transfer-Encoding silently win
over Content-Length: each is a request-smuggling vector when a proxy reads the
message differently); a policy for request bodies the handler left unread; and
the server's ``Date`` and ``Server`` headers.
"""

from __future__ import annotations

import base64
import binascii
import re
from http import HTTPStatus

import h11

from ._dates import http_date
from .errors import ProtocolError
from .events import (
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    Event,
    ProtocolFailed,
    ProtocolSwitched,
    RequestReceived,
)
from .h1_wire import CONTINUE, LAST_CHUNK, chunk, encode_head
from .headers import Headers
from .http2 import PREFACE, HTTP2Connection
from .limits import Limits
from .request import ConnectionInfo, Request
from .response import Response

__all__ = ["HTTP11Connection", "error_response_bytes", "SERVER_NAME"]

SERVER_NAME = "astra"

# Statuses whose responses never carry a body (RFC 9110 6.4.1 and 15.3.5).
_NO_BODY_STATUSES = frozenset({204, 304})
# RFC 9112 3.2: a Host that is not uri-host [":" port] gets a 400.
_VALID_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?")
# Framing is ours to decide; a handler's own values would contradict it.
_FRAMING_HEADERS = frozenset({"transfer-encoding", "content-length"})
_SWITCHING_TO_H2C = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)


def error_response_bytes(status: int, message: str, headers: list[tuple[str, str]] = ()) -> bytes:
    """A complete ``Connection: close`` error response, for when parsing failed
    (or for a runtime turning a connection away before any parsing)."""
    body = f"{status} {HTTPStatus(status).phrase}: {message}\n".encode("utf-8", "replace")
    head = encode_head(status, [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        ("date", http_date()),
        ("server", SERVER_NAME),
        *headers,
    ])
    return head + body


class HTTP11Connection:
    """One HTTP/1.1 connection, seen from the server.

    Requests are numbered as streams 1, 2, 3... Only one is open at a time: a
    pipelined request waits in the buffer until the response before it has
    ended, which is what keeps pipelined responses in order.

    With ``h2=True`` the connection also recognizes a client that wants
    HTTP/2 instead, by its connection preface or by an ``Upgrade: h2c``
    request, and hands over with a :class:`~.events.ProtocolSwitched` event.
    """

    protocol = "HTTP/1.1"
    multiplexed = False

    def __init__(self, info: ConnectionInfo, limits: Limits | None = None, h2: bool = False) -> None:
        self.info = info
        self.limits = limits or Limits()
        self._h2_preface = h2  # the first bytes may still turn out to be HTTP/2's preface
        self._h2_upgrade = h2
        self._upgrade_settings: bytes | None = None  # HTTP2-Settings of an Upgrade: h2c request
        self._parser = self._new_parser()
        self._out: list[bytes] = []
        self._eof = False  # the client closed its side
        self._unparsed = False  # bytes arrived that events() has not looked at
        self._broken = False  # a protocol error or an aborted response: close now
        self._closing = False  # graceful shutdown: close after the current response
        self._stream_id = 0
        self._in_request = False  # between a request head and the end of its response
        # The request in flight.
        self._method = b""
        self._version = "1.1"
        self._client_keep_alive = True
        self._body_expected: int | None = 0  # Content-Length; None when chunked
        self._body_seen = 0
        self._request_done = True  # its body has fully arrived
        self._discarding = False  # its response has ended; drop the rest of the body
        self._continue_sent = False
        # The response in flight.
        self._responding = False
        self._chunked = False
        self._suppress_body = False  # HEAD, 204, 304
        self._to_send: int | None = None  # bytes still owed under Content-Length
        self._close_after_response = False
        self._finished = False  # last response sent and the connection must close

    def _new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""
        if self._broken or self._eof:
            return
        if not data:
            self._eof = True
        self._parser.receive_data(data)
        self._unparsed = True

    def events(self) -> list[Event]:
        """Everything that can be parsed from the bytes received so far."""
        events: list[Event] = []
        if not self._unparsed:  # nothing new since the parser last ran dry
            return events
        parser = self._parser
        while not (self._broken or self._finished):
            try:
                if parser.their_state is h11.IDLE:
                    if self._h2_preface:
                        preface = self._look_for_preface()
                        if preface is not None:
                            if preface:
                                events.append(self._switch())
                            else:
                                self._unparsed = False  # too few bytes to tell yet
                            break
                    self._check_head_syntax()
                event = parser.next_event()
                kind = type(event)
                if kind is h11.Data:
                    self._body_seen += len(event.data)
                    if self._body_seen > self.limits.max_body_bytes:
                        raise ProtocolError("request body too large", status=413)
                    if not self._discarding:
                        events.append(BodyReceived(self._stream_id, bytes(event.data)))
                elif kind is h11.Request:
                    started = self._start_request(event)
                    if self._upgrade_settings is not None:
                        events.append(self._switch(started.request))
                        break
                    events.append(started)
                    if not started.has_body:
                        # h11 would report EndOfMessage on the next call without
                        # consuming a byte; say it here and save the call.
                        events.append(BodyEnded(self._stream_id))
                        self._unparsed = False  # nothing more until the response ends
                        break
                elif kind is h11.EndOfMessage:
                    self._request_done = True
                    if self._discarding:
                        self._discarding = False
                        self._next_cycle()
                        parser = self._parser
                    else:
                        events.append(BodyEnded(self._stream_id))
                        self._unparsed = False  # the next request waits for this response
                        break
                elif kind is h11.ConnectionClosed:
                    events.append(ConnectionClosed())
                    break
                else:  # NEED_DATA, or PAUSED until the response ends
                    self._unparsed = False
                    break
            except h11.RemoteProtocolError as exc:
                events.append(self._fail(exc.error_status_hint, str(exc)))
            except ProtocolError as exc:
                events.append(self._fail(exc.status, str(exc)))
        return events

    def _look_for_preface(self) -> bool | None:
        """True: the client sent HTTP/2's preface; None: not (yet) known; False: wait."""
        buffered, closed = self._parser.trailing_data
        if not buffered or closed:
            return None
        if buffered[:len(PREFACE)] != PREFACE[:len(buffered)]:
            self._h2_preface = False  # an HTTP/1 request: stop looking
            return None
        return len(buffered) >= len(PREFACE)

    def _switch(self, upgraded: Request | None = None) -> ProtocolSwitched:
        """Hand the connection to HTTP/2: the bytes received so far and the output queued."""
        leftover, closed = self._parser.trailing_data
        output = self.data_to_send()
        upgrade = None
        if upgraded is not None:
            output += _SWITCHING_TO_H2C
            upgrade = (upgraded, self._upgrade_settings)
        successor = HTTP2Connection(self.info, self.limits, upgrade=upgrade, received=bytes(leftover), output=output)
        if closed:
            successor.receive_data(b"")
        self._finished = True
        return ProtocolSwitched(successor)

    def _check_head_syntax(self) -> None:
        """Refuse oversized heads, bare CR/LF line endings and obsolete line folding
        before h11 sees them."""
        buffered, _ = self._parser.trailing_data
        if b"\n" not in buffered and b"\r" not in buffered:
            return
        end = buffered.find(b"\r\n\r\n")
        # h11 bounds only an *incomplete* head; one that arrives whole in a
        # single read must be measured here.
        if end > self.limits.max_header_bytes:
            raise ProtocolError("request head too large", status=431)
        head = buffered if end < 0 else buffered[: end + 2]
        stripped = head.replace(b"\r\n", b"")
        if end < 0 and head.endswith(b"\r"):
            stripped = stripped[:-1]  # half of a CRLF still in flight
        if b"\n" in stripped or b"\r" in stripped:
            raise ProtocolError("bare CR or LF in request head")
        if b"\n " in head or b"\n\t" in head:
            raise ProtocolError("obsolete line folding in request head")

    def _start_request(self, event: h11.Request) -> RequestReceived:
        hosts = 0
        content_length: int | None = None
        chunked = False
        close = False
        upgrade_settings = None
        headers: list[tuple[str, str]] = []
        # raw_items() is a plain list; iterating h11's Headers goes through the
        # generic Sequence protocol, several times slower per field.
        for raw_name, value in event.headers.raw_items():
            name = raw_name.lower()
            if name == b"host":
                hosts += 1
                if not _VALID_HOST.fullmatch(value):
                    raise ProtocolError("invalid Host header")
            elif name == b"content-length":
                content_length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                close = close or b"close" in value.lower()
            elif name == b"http2-settings" and self._h2_upgrade:
                upgrade_settings = value
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        version = event.http_version.decode("ascii")
        if hosts > 1:
            raise ProtocolError("more than one Host header")
        if chunked and content_length is not None:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        if chunked and version == "1.0":
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None and content_length > self.limits.max_body_bytes:
            raise ProtocolError("request body too large", status=413)

        self._h2_preface = False
        if upgrade_settings is not None:
            upgrade_settings = self._h2c_upgrade(headers, upgrade_settings, chunked or bool(content_length))
        self._h2_upgrade = False  # only the first request may upgrade
        self._upgrade_settings = upgrade_settings
        self._stream_id += 1
        self._in_request = True
        self._method = event.method
        self._version = version
        # HTTP/1.0 keep-alive is a non-standard extension; such clients get one
        # response per connection, which is always correct.
        self._client_keep_alive = version == "1.1" and not close
        self._body_expected = None if chunked else (content_length or 0)
        self._body_seen = 0
        has_body = chunked or bool(content_length)
        self._request_done = not has_body
        self._continue_sent = False
        request = Request(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            Headers._trusted(headers),
            version,
            self.info,
        )
        return RequestReceived(self._stream_id, request, has_body)

    @staticmethod
    def _h2c_upgrade(headers: list[tuple[str, str]], settings: bytes, has_body: bool) -> bytes | None:
        """The decoded HTTP2-Settings if this request asks for (and may have) ``h2c``.

        A request with a body is answered over HTTP/1.1 instead (RFC 7540
        3.2 allows either): after 101 its body would have to be fed into
        stream 1 as if it had come in DATA frames.
        """
        upgrade = ",".join(v for n, v in headers if n == "upgrade").lower()
        connection = ",".join(v for n, v in headers if n == "connection").lower()
        if has_body or "h2c" not in upgrade or "http2-settings" not in connection:
            return None
        try:
            decoded = base64.b64decode(settings + b"=" * (-len(settings) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(decoded) % 6:
            return None
        return base64.urlsafe_b64encode(decoded)

    def _fail(self, status: int, reason: str) -> Event:
        """Queue an error response (if none has started) and mark the connection for closing."""
        self._broken = True
        if self._eof:  # the client hung up mid-request: nobody to answer
            return ConnectionClosed()
        if not self._responding:
            self._out.append(error_response_bytes(status, reason))
        return ProtocolFailed(status, reason)

    # -- output --------------------------------------------------------------

    @property
    def expects_continue(self) -> bool:
        """The client waits for ``100 Continue`` before sending its body."""
        return (
            self._parser.they_are_waiting_for_100_continue
            and not self._continue_sent
            and not self._responding
        )

    def send_continue(self, stream_id: int) -> None:
        """Tell a waiting client to go ahead with its body (done on the handler's first read)."""
        if self.expects_continue:
            self._continue_sent = True
            self._out.append(CONTINUE)

    def send_response(self, stream_id: int, response: Response) -> None:
        """Queue the status line and headers; the body follows with send_data.

        Raises ValueError (and queues nothing) for a malformed status or header.
        """
        if self._broken:  # an error response is queued already; nothing else goes out
            return
        status = response.status
        if status < 200:
            raise ValueError("informational responses are sent by the server itself")
        headers = [(n, v) for n, v in response.headers if n not in _FRAMING_HEADERS]
        suppress = self._method == b"HEAD" or status in _NO_BODY_STATUSES
        length = response.body.length
        if length is None and (declared := response.headers.get("content-length")):
            length = int(declared)  # a stream whose size the handler knows
        chunked = False
        close = self._closing or not self._client_keep_alive
        if status not in _NO_BODY_STATUSES:
            if length is not None:
                headers.append(("content-length", str(length)))
            elif self._method != b"HEAD":
                if self._version == "1.1":
                    chunked = True
                    headers.append(("transfer-encoding", "chunked"))
                else:
                    close = True  # HTTP/1.0: the body ends when the connection does
        if not self._request_done and not self._unread_body_can_be_drained():
            close = True
        if any(n == "connection" and "close" in v.lower() for n, v in headers):
            close = True
        elif close:
            headers = [(n, v) for n, v in headers if n != "connection"]
            headers.append(("connection", "close"))
        headers.append(("date", http_date()))
        if "server" not in response.headers:
            headers.append(("server", SERVER_NAME))
        head = encode_head(status, headers)

        self._out.append(head)
        self._responding = True
        self._chunked = chunked
        self._suppress_body = suppress
        self._to_send = None if suppress else length
        self._close_after_response = close
        if not self._request_done and not close:
            self._discarding = True

    def _unread_body_can_be_drained(self) -> bool:
        """May a body the handler did not finish reading be read and dropped?

        Only a small, known remainder from a client that is actually sending
        it: a chunked or large remainder, or a client still waiting for
        ``100 Continue`` (that will now never come), closes the connection.
        """
        if self.expects_continue or self._body_expected is None:
            return False
        return self._body_expected - self._body_seen <= self.limits.max_drain_bytes

    def send_data(self, stream_id: int, data: bytes) -> None:
        if not data or self._suppress_body or self._broken:
            return
        if self._to_send is not None:
            if len(data) > self._to_send:
                raise ValueError("response body longer than its Content-Length")
            self._to_send -= len(data)
        self._out.append(chunk(data) if self._chunked else data)

    def end_stream(self, stream_id: int) -> None:
        """Finish the response; a pipelined request may then appear in events().

        Raises ValueError when the body fell short of its Content-Length (the
        connection is then broken: the client cannot tell where the message ends).
        """
        if self._broken:
            return
        if self._to_send:
            self._broken = True
            raise ValueError(f"response body {self._to_send} bytes short of its Content-Length")
        if self._chunked:
            self._out.append(LAST_CHUNK)
        self._responding = False
        self._in_request = False
        if self._close_after_response:
            self._finished = True
        elif self._request_done:
            self._next_cycle()

    def abort_stream(self, stream_id: int) -> None:
        """A response cannot be finished (its body failed mid-way): close the connection.

        HTTP/1.1 has no way to cancel one response and keep the connection,
        so the only honest signal to the client is a truncated message.
        """
        self._broken = True

    def _next_cycle(self) -> None:
        """Hand the leftover bytes to a fresh parser for the next request."""
        leftover, closed = self._parser.trailing_data
        self._parser = self._new_parser()
        if leftover:
            self._parser.receive_data(leftover)
        if closed:
            self._parser.receive_data(b"")
        self._unparsed = bool(leftover) or closed

    def close_after_current(self) -> None:
        """Graceful shutdown: the current (or next) response says Connection: close."""
        self._closing = True

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- state a runtime needs ----------------------------------------------

    @property
    def should_close(self) -> bool:
        """Once data_to_send is flushed, close the socket."""
        return self._broken or self._finished or (self._closing and not self._in_request)
