"""HTTP/1.1 as a sans-IO connection: a server's policy over a request parser.

:class:`HTTP11Connection` implements :class:`~.contract.ServerConnection`:
received bytes become request events, responses become bytes to send. It
never touches a socket, and it does not parse either: a
:class:`~.h1_parser.RequestParser` (the one ``limits.http1_parser`` names:
h11's or llhttp's adapter) turns bytes into request heads and body bytes, and
:mod:`.h1_wire` writes responses. What is left here is what a server decides, whichever parser runs:

- **Limits**: 431 for a large head, 413 for a large body.
- **A strict reading of RFC 9112** where parsers are lenient: bare CR or LF
  line endings, obsolete line folding, Transfer-Encoding together with
  Content-Length (or in HTTP/1.0), a missing, repeated or malformed Host,
  a malformed or conflicting Content-Length, control characters in the
  head. Each is a request-smuggling vector when a proxy reads the message
  differently. (Chunked bodies are read as strictly by the parser's
  decoder, :mod:`.h1_body`.) A version other than HTTP/1.x gets 505.
- **Request targets**: origin-form, absolute-form (whose authority then
  becomes the Host, RFC 9112 3.2.2) and ``*`` for OPTIONS; anything else is a
  400. CONNECT is a 405 before any handler runs: an origin server does not
  open tunnels.
- **Keep-alive**: ``Connection: close``, HTTP/1.0, graceful shutdown, and what
  to do with a request body the handler left unread (drain it or close).
- **Framing of responses**: Content-Length or chunked, no body for HEAD, 204
  and 304; the ``Date`` and ``Server`` headers.
- **Upgrade** (RFC 9110 7.8) as a mechanism only: the first request may be
  offered to an ``upgrade`` hook, which decides and builds the successor
  (:mod:`.negotiation` supplies one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

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
from .h1_checks import check_head_syntax, connect_refused, content_length_value, other_target_form
from .h1_parser import CONNECTION_CLOSED, END_OF_MESSAGE, ParserFactory, parser_factory
from .h1_wire import CONTINUE, LAST_CHUNK, SERVER_NAME, chunk, encode_response_head, error_response_bytes
from .headers import VALID_HOST as _VALID_HOST, Headers  # RFC 9112 3.2: any other Host gets a 400
from .limits import Limits
from .request import ConnectionInfo, Request
from .response import Response, response_length

if TYPE_CHECKING:
    from .contract import ServerConnection

__all__ = ["HTTP11Connection", "UpgradeHook", "error_response_bytes", "SERVER_NAME"]

#: Offered the first request of a connection when it carries ``Upgrade``:
#: ``hook(request, received, eof, output)``, where ``received`` are the bytes
#: after its head (not yet parsed), ``eof`` says whether the client has
#: closed its side and ``output`` is what was queued for the client so far.
#: Returns the connection that takes over (having taken all three), or None
#: to answer the request over HTTP/1.1 as usual.
UpgradeHook = Callable[[Request, bytes, bool, bytes], Optional["ServerConnection"]]

# Statuses whose responses never carry a body (RFC 9110 6.4.1 and 15.3.5).
_NO_BODY_STATUSES = frozenset({204, 304})
# Framing is ours to decide; a handler's own values would contradict it.
_FRAMING_HEADERS = frozenset({"transfer-encoding", "content-length"})


class HTTP11Connection:
    """One HTTP/1.1 connection, seen from the server.

    Requests are numbered as streams 1, 2, 3... Only one is open at a time: a
    pipelined request waits in the parser until the response before it has
    ended, which is what keeps pipelined responses in order.

    ``parser`` makes the request parser (by default the one
    ``limits.http1_parser`` names, see :func:`~.h1_parser.parser_factory`);
    ``upgrade`` is the hook offered the first request if it asks
    to switch protocols (none: requests are never upgraded).
    """

    protocol = "HTTP/1.1"
    multiplexed = False

    def __init__(
        self,
        info: ConnectionInfo,
        limits: Limits | None = None,
        *,
        parser: ParserFactory | None = None,
        upgrade: UpgradeHook | None = None,
    ) -> None:
        self.info = info
        self.limits = limits = limits or Limits()
        self._parser = (parser or parser_factory(limits.http1_parser))(limits.max_header_bytes)
        self._upgrade = upgrade  # cleared once the first request has been seen
        self._out: list[bytes] = []
        self._eof = False  # the client closed its side
        self._unparsed = False  # bytes arrived that events() has not looked at
        self._awaiting_head = True  # the parser has not returned this request's head yet
        self._broken = False  # the connection answered itself (an error, a refusal) or gave up: close now
        self._closing = False  # graceful shutdown: close after the current response
        self._stream_id = 0
        self._valid_host: bytes | None = None  # the Host value last found valid
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
        self._finished = False  # last response sent (or connection handed over): close

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
        """Everything parsed from the bytes received so far (the next request
        waits until the response to this one has ended)."""
        events: list[Event] = []
        if not self._unparsed:  # nothing new since the parser last ran dry
            return events
        parser = self._parser
        while not (self._broken or self._finished):
            try:
                if self._awaiting_head:
                    check_head_syntax(parser.buffered(), self.limits.max_header_bytes)
                event = parser.next_event()
                kind = type(event)
                if kind is bytes:
                    self._body_seen += len(event)
                    if self._body_seen > self.limits.max_body_bytes:
                        raise ProtocolError("request body too large", status=413)
                    if not self._discarding:
                        events.append(BodyReceived(self._stream_id, event))
                elif kind is tuple:
                    started = self._start_request(*event)
                    if self._upgrade is not None and (switched := self._offer_upgrade(started)):
                        events.append(switched)
                        break
                    events.append(started)
                    if not started.has_body:
                        # The parser would report the end of the message on the
                        # next call without consuming a byte; say it here.
                        events.append(BodyEnded(self._stream_id))
                        self._unparsed = False  # nothing more until the response ends
                        break
                elif event is END_OF_MESSAGE:
                    self._request_done = True
                    if self._discarding:
                        self._discarding = False
                        self._next_cycle()
                    else:
                        events.append(BodyEnded(self._stream_id))
                        self._unparsed = False  # the next request waits for this response
                        break
                elif event is CONNECTION_CLOSED:
                    events.append(ConnectionClosed())
                    break
                else:  # NEED_DATA, or PAUSED until the response ends
                    self._unparsed = False
                    break
            except ProtocolError as exc:
                events.append(self._fail(exc.status, exc.message, exc.headers))
        return events

    def _start_request(
        self, method: bytes, target: bytes, version: bytes, fields: list[tuple[bytes, bytes]],
    ) -> RequestReceived:
        """Judge a parsed head (raising ProtocolError) and start its stream."""
        if version != b"1.1" and not version.startswith(b"1."):  # another protocol's greeting, perhaps
            raise ProtocolError(f"HTTP/{version.decode('ascii', 'replace')} is not supported here", status=505)
        if method == b"CONNECT":
            raise connect_refused()
        # Origin-form ("/path?query") is the common case and needs no more checks;
        # its test is an index, not startswith(), which costs three times as much.
        authority = None if target[0] == 47 else other_target_form(method, target)  # 47: "/"
        hosts = 0
        content_length: int | None = None
        chunked = False
        close = False
        headers: list[tuple[bytes, bytes]] = []
        for raw_name, value in fields:
            name = raw_name.lower()
            if name == b"host":
                hosts += 1
                if value != self._valid_host and not _VALID_HOST.fullmatch(value):
                    raise ProtocolError("invalid Host header")
                self._valid_host = value  # a keep-alive client names the same host each time
            elif name == b"content-length":
                content_length = content_length_value(value, content_length)
            elif name == b"transfer-encoding":
                # Only chunked, once: any other coding we could not decode.
                if chunked or value.lower() != b"chunked":
                    raise ProtocolError("unsupported Transfer-Encoding", status=501)
                chunked = True
            elif name == b"connection":
                close = close or b"close" in value.lower()
            headers.append((name, value))
        if hosts != 1 and (hosts or version == b"1.1"):
            raise ProtocolError("more than one Host header" if hosts else "missing Host header")
        if authority is not None:
            # RFC 9112 3.2.2: the target's authority wins over the Host field,
            # so handlers that route on Host see what the client addressed.
            headers = [(n, v) for n, v in headers if n != b"host"]
            headers.append((b"host", authority))
        if chunked and (content_length is not None or version == b"1.0"):
            raise ProtocolError("both Transfer-Encoding and Content-Length" if content_length is not None
                                else "Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None and content_length > self.limits.max_body_bytes:
            raise ProtocolError("request body too large", status=413)
        self._stream_id += 1
        self._awaiting_head = False
        self._in_request = True
        self._method = method
        self._version = version = version.decode("ascii")
        # HTTP/1.0 keep-alive is a non-standard extension; such clients get one
        # response per connection, which is always correct.
        self._client_keep_alive = version == "1.1" and not close
        self._body_expected = None if chunked else (content_length or 0)
        self._body_seen = 0
        has_body = chunked or bool(content_length)
        self._request_done = not has_body
        self._continue_sent = False
        request = Request(
            method.decode("ascii"), target.decode("latin-1"), Headers._parsed(headers), version, self.info,
        )
        return RequestReceived(self._stream_id, request, has_body)

    def _offer_upgrade(self, started: RequestReceived) -> ProtocolSwitched | None:
        """Let the upgrade hook take the connection over after the first request.

        Only a request without a body is offered: after the switch the body
        would have to reach the new protocol's handler as if it had come in
        that protocol's framing, and RFC 9110 7.8 lets a server decline.
        """
        hook, self._upgrade = self._upgrade, None  # only the first request may upgrade
        if started.has_body or started.request.headers.get("upgrade") is None:
            return None
        successor = hook(started.request, self._parser.buffered(), self._eof, b"".join(self._out))
        if successor is None:
            return None
        self._out.clear()
        self._finished = True
        return ProtocolSwitched(successor)

    def _fail(self, status: int, reason: str, headers: dict[str, str] | None = None) -> Event:
        """Queue an error response (if none has started) and mark the connection for closing."""
        self._broken = True
        if self._eof:  # the client hung up mid-request: nobody to answer
            return ConnectionClosed()
        if not self._responding:
            self._out.append(error_response_bytes(status, reason, list(headers.items()) if headers else []))
        return ProtocolFailed(status, reason)

    def consumed(self, stream_id: int, size: int) -> None:
        """Nothing to do: the client's window is the socket's, which reading opens."""

    def expects_continue(self, stream_id: int) -> bool:
        """The client waits for ``100 Continue`` before sending the body of ``stream_id``."""
        return (
            stream_id == self._stream_id
            and not self._continue_sent
            and not self._responding
            and self._parser.waiting_for_continue
        )

    def send_continue(self, stream_id: int) -> None:
        """Tell a waiting client to go ahead with its body (done on the handler's first read)."""
        if self.expects_continue(stream_id):
            self._continue_sent = True
            self._out.append(CONTINUE)

    # -- output --------------------------------------------------------------

    def send_response(self, stream_id: int, response: Response) -> None:
        """Queue the status line and headers; the body follows with send_data.

        Raises ValueError (and queues nothing) for a malformed status or header.
        """
        if self._broken:  # an answer of our own is queued already; nothing else goes out
            return
        status = response.status
        if status < 200:
            raise ValueError("informational responses are sent by the server itself")
        # One pass over the handler's fields: framing is ours to write, but a
        # declared length and a request to close are noted.
        fields = []
        declared = None
        close = self._closing or not self._client_keep_alive
        add_server = True
        for name, value in response.headers:
            if name in _FRAMING_HEADERS:
                if name == "content-length" and declared is None:
                    declared = value
                continue
            if name == "connection" and "close" in value.lower():
                close = True
            elif name == "server":
                add_server = False
            fields.append((name, value))
        suppress = self._method == b"HEAD" or status in _NO_BODY_STATUSES
        length = response.body.length
        if length is None:
            length = response_length(response, declared)
        # Our own fields go after the handler's as bytes: they need no checks,
        # and the handler's part of the head is then the same from one
        # response to the next (see encode_response_head).
        framing = b""
        chunked = False
        if status not in _NO_BODY_STATUSES:
            if length is not None:
                framing = b"content-length: %d\r\n" % length
            elif self._method != b"HEAD":
                if self._version == "1.1":
                    chunked = True
                    framing = b"transfer-encoding: chunked\r\n"
                else:
                    close = True  # HTTP/1.0: the body ends when the connection does
        if not self._request_done and not self._unread_body_can_be_drained():
            close = True
        if close:
            fields = [(n, v) for n, v in fields if n != "connection"]
            framing += b"connection: close\r\n"
        head = encode_response_head(status, fields, framing, add_server, response.reason)

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
        if self.expects_continue(self._stream_id) or self._body_expected is None:
            return False
        return self._body_expected - self._body_seen <= self.limits.max_drain_bytes

    def send_data(self, stream_id: int, data: bytes) -> None:
        """Queue response body bytes (chunked if the response is).

        Raises ValueError past the declared Content-Length.
        """
        if not data or self._suppress_body or self._broken:
            return
        if self._to_send is not None:
            if len(data) > self._to_send:
                raise ValueError("response body longer than its Content-Length")
            self._to_send -= len(data)
        self._out.append(chunk(data) if self._chunked else data)

    def raw_body(self, stream_id: int, size: int) -> bool:
        """True under Content-Length framing (see the contract): the bytes are counted as sent."""
        if self._broken or self._suppress_body or self._chunked or self._to_send is None:
            return False
        if size > self._to_send:
            raise ValueError("response body longer than its Content-Length")
        self._to_send -= size
        return True

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

    def _next_cycle(self) -> None:
        """Let the parser start on the next request, with the bytes left over."""
        self._unparsed = self._parser.start_next()
        self._awaiting_head = True

    def abort_stream(self, stream_id: int) -> None:
        """A response cannot be finished (its body failed mid-way): close the connection.

        HTTP/1.1 has no way to cancel one response and keep the connection,
        so the only honest signal to the client is a truncated message.
        """
        self._broken = True

    def refuse_stream(self, stream_id: int) -> None:
        """Turn the request away unprocessed: ``503`` with ``Retry-After``, then close.

        The connection closes because the request's body (if any) is left
        unread. Once a response has started it is too late for a 503; the
        connection is then cut, as by :meth:`abort_stream`.
        """
        if self._broken or self._finished or not self._in_request or stream_id != self._stream_id:
            return
        if not self._responding:
            self._out.append(error_response_bytes(
                503, "the server is busy, retry later", [("retry-after", "1")], head_only=self._method == b"HEAD",
            ))
        self._broken = True

    def close_after_current(self) -> None:
        """Graceful shutdown: the current (or next) response says Connection: close."""
        self._closing = True

    def release(self) -> None:
        """See the contract: the transport is gone."""
        self._broken = True
        self._out.clear()

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- state a runtime needs ----------------------------------------------

    def pending(self, stream_id: int) -> int:
        """Always 0: without flow control every byte queued is ready to be written."""
        return 0

    def waiting_for_window(self) -> list[tuple[int, int]]:
        """Always empty: no flow control (a slow reader is the transport's to time)."""
        return []

    def stream_reset(self, stream_id: int) -> bool:
        """Is ``stream_id`` no longer the request in flight (or the connection broken)?"""
        return self._broken or self._finished or not self._in_request or stream_id != self._stream_id

    @property
    def should_close(self) -> bool:
        """Once data_to_send is flushed, close the socket."""
        return self._broken or self._finished or (self._closing and not self._in_request)

