"""One request's life, as every runtime lives it, whatever carries it.

A request arrives as a :class:`~protocols.RequestReceived` event; its body
follows as events that are queued in a :class:`BodyInbox` until the handler
reads them; the handler is called and its failures mapped to responses
(:func:`call_handler`); the response is started (:func:`start_response`) and
its body written by the concurrency family's own writer (``_sync`` for
threads, ``_async`` for event loops). What does not depend on *how* a
runtime waits lives here, once, for both protocols:

- the body inbox, and how a connection's events reach it (:func:`deliver`);
- the gather-before-dispatch rule (:func:`gather_body_first`);
- the handler call and its error mapping;
- what a connection's deadline means when it passes (:class:`Deadline`);
- what an operator sees: the client behind a trusted proxy
  (:func:`trusted_proxies`, applied once per request where a family first
  meets it) and the access log (:class:`AccessLog`). Both are None when
  off, so the hot path pays one ``is not None`` each.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections import deque

from protocols import (
    Body,
    BodyEnded,
    BodyReceived,
    ClientDisconnected,
    ConnectionClosed,
    Event,
    HTTPError,
    ProtocolError,
    ProtocolFailed,
    Request,
    Response,
    ServerConnection,
    StreamReset,
    reason_phrase,
)
from protocols.forwarded import TrustedProxies
from protocols.request import ConnectionInfo

from .common import Config, Handler, logger

__all__ = [
    "GATHERED_BODY_BYTES", "PASSES_THROUGH", "AccessLog", "BodyInbox", "ParkedResponses", "abandoned",
    "access_log", "access_logger", "body_too_late", "Deadline", "call_handler", "close_body", "check_response", "deliver",
    "error_response", "gather_body_first", "handler_failed", "logger", "start_response", "trusted_proxies",
]


#: Up to this many bytes of a request body are read before a worker thread
#: runs the handler: a small body whole (by Content-Length, chunked or an
#: HTTP/2 stream without a length), a larger one's first part. A client
#: trickling a small POST then costs a buffer, not a thread (the slow-body
#: attack on a pool). A body declared larger goes to the handler at once, so
#: that it may refuse it before the client sends it (``100 Continue``).
GATHERED_BODY_BYTES = 64 * 1024


class Deadline(enum.Enum):
    """What a connection's (or a stream's) deadline means when it passes.

    Each deadline has exactly one owner, the code that waits for the thing
    it bounds; the runtimes' docstrings say who that is.
    """

    #: The request head did not arrive in time: 408, close.
    HEAD = "head"
    #: A request body stalled (or a small one being gathered did not arrive): 408.
    BODY = "body"
    #: A keep-alive connection stayed idle: close quietly.
    IDLE = "idle"
    #: The client stopped reading our response: close.
    SEND = "send"

    @property
    def answer(self) -> int | None:
        """The status a client gets when this deadline passes, if any."""
        return 408 if self is Deadline.HEAD or self is Deadline.BODY else None

    @property
    def reason(self) -> str:
        return f"request {self.value} not received in time"


# -- the request body -----------------------------------------------------------

class BodyInbox:
    """Request body events for one stream, queued until the handler takes them.

    The inbox does not wait: :meth:`take` says "wait" by returning None, and
    the family's body reader (``_sync.SyncBody``, ``_async.AsyncBody``)
    decides how. Errors are kept until the queued bytes before them are
    taken, so a handler reads everything that arrived before the failure.
    """

    __slots__ = ("stream_id", "chunks", "buffered", "received", "opened", "ended", "error")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received = 0
        self.opened = time.monotonic()
        self.ended = False
        self.error: Exception | None = None

    def due(self, grace: float, min_rate: float) -> float:
        """When the body has taken too long (monotonic), if the client kept to ``min_rate`` after ``grace``.

        A bound on the whole body, not on each read: a client that sends one
        byte just before every read would time out would otherwise hold its
        reader (a thread, or a gathering buffer) forever.
        """
        return self.opened + grace + self.received / min_rate

    @property
    def gathered(self) -> bool:
        """Enough has arrived for a handler to start (all of it, or GATHERED_BODY_BYTES), or it failed."""
        return self.ended or self.error is not None or self.buffered >= GATHERED_BODY_BYTES

    def absorb(self, event: Event) -> None:
        kind = type(event)
        if kind is BodyReceived:
            self.chunks.append(event.data)
            self.buffered += len(event.data)
            self.received += len(event.data)
        elif kind is BodyEnded:
            self.ended = True
        elif kind is ConnectionClosed:
            self.fail(ClientDisconnected("client closed the connection mid-body"))
        elif kind is ProtocolFailed:
            self.fail(ProtocolError(event.reason, event.status))
        elif kind is StreamReset:
            self.fail(ClientDisconnected("the client reset the stream"))

    def fail(self, error: Exception) -> None:
        if not self.ended and self.error is None:
            self.error = error

    @property
    def settled(self) -> bool:
        """The body is complete or has failed: nothing more will arrive."""
        return self.ended or self.error is not None

    def take(self) -> bytes | None:
        """The next queued chunk, b"" at the end, None if the caller must wait."""
        if self.chunks:
            chunk = self.chunks.popleft()
            self.buffered -= len(chunk)
            return chunk
        if self.ended:
            return b""
        if self.error is not None:
            raise self.error
        return None


def deliver(inboxes: dict[int, BodyInbox], event: Event) -> None:
    """File a connection's event with its stream's inbox.

    An event without a stream (the client hung up, or broke the protocol)
    concerns every stream still waiting for body bytes.
    """
    stream_id = getattr(event, "stream_id", None)
    if stream_id is None:
        for inbox in inboxes.values():
            inbox.absorb(event)
    elif (inbox := inboxes.get(stream_id)) is not None:
        inbox.absorb(event)


def gather_body_first(request: Request, proto: ServerConnection, stream_id: int) -> bool:
    """Should (the first GATHERED_BODY_BYTES of) this request's body be read before a handler's thread runs?

    Yes unless its Content-Length says it is larger: then the handler decides
    whether it wants it. A client waiting for ``100 Continue`` before a body
    we gather is told to go ahead now (queued on ``proto``: the caller flushes).
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > GATHERED_BODY_BYTES:
        return False
    if proto.expects_continue(stream_id):
        proto.send_continue(stream_id)
    return True


def abandoned(proto: ServerConnection, stream_id: int) -> bool:
    """Has the client given up on this stream before its handler started? Then do not start it.

    An HTTP/2 client may open a stream and reset it at once, thousands of
    times a second (CVE-2023-44487, "rapid reset"): each reset frees its
    slot under the stream limit, while the request waits in the pool's
    queue. Skipping the handler of a stream already reset makes each such
    request cost a queue entry, not a handler's run. (One-at-a-time
    connections have nothing to skip: a client that closes is noticed when
    the answer is written.)
    """
    return proto.multiplexed and proto.stream_reset(stream_id)


def body_too_late(proto: ServerConnection) -> HTTPError:
    """The 408 for a request body that stopped arriving (raise it from the body read).

    One-at-a-time connections close after it: the rest of the body may still
    come, and nothing would tell it from the next request in time.
    """
    if not proto.multiplexed:
        proto.close_after_current()
    return HTTPError(408, "request body not received in time")


class ParkedResponses:
    """Responses parked behind a flow-control window the client keeps shut (the CVE-2019-9517 class).

    A handler's response may be whole in memory and handed to the protocol
    at once; if the client never opens its window, the bytes would sit in
    the connection for as long as the client keeps it busy with other
    frames. Bytes parked must leave within ``grace + size / rate`` seconds of
    being parked (more bytes parked later add their own time); past that the
    reader aborts the stream. Bytes leaving do not restart the clock, so a
    window opened a crack at a time does not either.
    """

    __slots__ = ("grace", "rate", "_due")

    def __init__(self, grace: float, rate: float) -> None:
        self.grace = grace
        self.rate = rate
        self._due: dict[int, tuple[float, int]] = {}  # stream -> (when its bytes must have left, bytes then)

    def overdue(self, proto: ServerConnection, now: float) -> list[int]:
        """The streams to abort now (call with the protocol's lock held, then abort and flush)."""
        parked = proto.waiting_for_window()
        if not parked and not self._due:
            return []
        due: dict[int, tuple[float, int]] = {}
        late = []
        for stream_id, queued in parked:
            previous = self._due.get(stream_id)
            if previous is None:
                when = now + self.grace + queued / self.rate
            else:
                when = previous[0] + max(0, queued - previous[1]) / self.rate
            due[stream_id] = (when, queued)
            if now >= when:
                late.append(stream_id)
        self._due = due
        return late

    def next_due(self) -> float | None:
        """When the first parked response runs out of time, if one is parked."""
        return min((when for when, _ in self._due.values()), default=None)


# -- the handler ------------------------------------------------------------------

def error_response(status: int, message: str = "", headers: dict[str, str] | None = None) -> Response:
    text = f"{status} {reason_phrase(status)}"
    if message:
        text += f": {message}"
    return Response(text + "\n", status=status, headers=headers)


#: What a handler may raise without it being its failure: the runtime's own
#: shutdown (KeyboardInterrupt in the main thread) and a generator being closed.
#: Event loops add their cancellation exception (see handler_failed's ``passes``).
PASSES_THROUGH: tuple[type[BaseException], ...] = (KeyboardInterrupt, GeneratorExit)


def call_handler(handler: Handler, request: Request) -> Response:
    """Run a blocking handler and always come back with a Response.

    ``HTTPError`` becomes its status; anything else a handler raises, even
    ``SystemExit``, a logged 500: one request must not stop the server.
    ``ClientDisconnected`` propagates: there is nobody left to answer.
    """
    try:
        response = handler(request)
    except BaseException as exc:
        return handler_failed(exc, request)
    if type(response) is Response:  # the usual answer, without a call to say so
        return response
    return check_response(response, request)


def handler_failed(exc: BaseException, request: Request,
                   passes: tuple[type[BaseException], ...] = PASSES_THROUGH) -> Response:
    """The answer to a handler's exception (re-raises ``ClientDisconnected`` and ``passes``)."""
    if isinstance(exc, HTTPError) and _valid_status(exc.status):
        try:
            return error_response(exc.status, str(exc.message), exc.headers)
        except (TypeError, ValueError) as bad:  # headers that are no headers
            logger.error("handler raised an HTTPError that cannot be sent: %s", bad)
            return error_response(500)
    if isinstance(exc, (ClientDisconnected, *passes)):
        raise exc
    logger.error("handler failed: %s %s", request.method, request.target, exc_info=exc)
    return error_response(500)


def _valid_status(status: object) -> bool:
    """A final status a response may carry: 1xx are the server's to send."""
    return type(status) is int and 200 <= status <= 599


def check_response(response: object, request: Request) -> Response:
    if isinstance(response, Response):
        return response
    logger.error(
        "handler returned %s for %s %s, expected a Response",
        type(response).__name__, request.method, request.target,
    )
    return error_response(500)


def close_body(body: Body) -> None:
    """A response body's ``close()`` (a WSGI iterable's, a file's); what it raises is logged.

    It is the handler's failure, after its response has gone or been cut
    off: raising it would end the connection before what is queued is flushed.
    """
    try:
        body.close()
    except Exception:
        logger.exception("closing the response body failed")


def start_response(proto: ServerConnection, stream_id: int, response: Response) -> Response:
    """Send a response's head; an invalid one is logged and replaced by a 500.

    Returns the response actually started, whose body the caller sends.
    """
    try:
        proto.send_response(stream_id, response)
    except ValueError as exc:
        logger.error("handler returned an invalid response: %s", exc)
        close_body(response.body)
        response = error_response(500)
        proto.send_response(stream_id, response)
    return response


# -- what an operator sees ----------------------------------------------------------

def trusted_proxies(config: Config) -> TrustedProxies | None:
    """The proxies whose forwarding headers rewrite ``request.connection``; None when none are trusted.

    A family applies it once per request, where the request first reaches
    it: ``request.connection = proxies.resolve(request.connection, request.headers)``.
    """
    return config.forwarded_allow_ips or None


#: Where access log lines go (``--access-log``): INFO, one line per response.
access_logger = logging.getLogger("astra.access")

#: Everything but printable ASCII, the quote and the backslash: escaped, so that
#: a client cannot end a field early or forge a line of its own.
_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _escape(text: str) -> str:
    return text if _UNSAFE.search(text) is None else _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class AccessLog:
    """One line per response in the combined log format, plus the time it took in microseconds::

        192.0.2.7 - - [30/Nov/2026:10:58:01 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" "curl/8.5.0" 532

    The client is ``request.connection``'s peer (after a trusted proxy has
    had its say; ``-`` on a Unix socket), the time is when the request
    arrived, the size is the response body's length when known (``-`` for a
    stream of unknown length). Request line, referrer and user agent are
    escaped (``\\xHH``). Lines go to the ``astra.access`` logger at INFO.

    What gets a line: every request answered, by its handler or by astra
    (408 for a body too slow, 503 when every worker is busy: on HTTP/2 that
    is the REFUSED_STREAM the client got), the handler's status when the
    client went away during the response; and a malformed HTTP/1.1 request
    the protocol answered itself (400, 413, 431, 501, 505), with ``"-"`` for
    its request line, since no request was made of it. A client that leaves
    before any answer exists, or never finishes a request head, has none.
    """

    __slots__ = ("_logger", "_stamp")

    def __init__(self, log: logging.Logger = access_logger) -> None:
        self._logger = log
        self._stamp = (-1, "")  # (second, its text), replaced as one: threads share it

    def responded(self, request: Request, response: Response, arrived: float | None) -> None:
        """``response`` was (or was being) sent for ``request``, which arrived at ``arrived`` (monotonic)."""
        size = response.body.length
        if request.method == "HEAD" or response.status in (204, 304):
            size = 0  # the protocol sends no body, whatever the handler gave
        self.answered(request, response.status, size, arrived)

    def refused(self, request: Request, arrived: float | None) -> None:
        """``request`` was turned away unprocessed, every worker busy (503; HTTP/2: REFUSED_STREAM)."""
        self.answered(request, 503, None, arrived)

    def answered(self, request: Request, status: int, size: int | None, arrived: float | None) -> None:
        """``request`` got ``status`` with a body of ``size`` bytes (None: not known)."""
        if self._logger.isEnabledFor(logging.INFO):
            headers = request.headers
            self._write(request.connection, _escape(f"{request.method} {request.target} {request.protocol}"),
                        status, "-" if size is None else str(size), _escape(headers.get("referer", "-")),
                        _escape(headers.get("user-agent", "-")), arrived)

    def unparsed(self, info: ConnectionInfo, status: int) -> None:
        """The protocol answered ``status`` to bytes that never made a request (a malformed head)."""
        if self._logger.isEnabledFor(logging.INFO):
            self._write(info, "-", status, "-", "-", "-", None)

    def _write(self, info: ConnectionInfo, line: str, status: int, size: str, referer: str, agent: str,
               arrived: float | None) -> None:
        now = time.monotonic()
        took = "-" if arrived is None else str(int((now - arrived) * 1_000_000))
        wall = time.time() - (now - arrived if arrived is not None else 0.0)
        host = _escape(info.peer[0]) if info.peer is not None else "-"  # from a header, if a proxy is trusted
        self._logger.info(f'{host} - - [{self._timestamp(int(wall))}] "{line}" {status} {size} '
                          f'"{referer}" "{agent}" {took}')

    def _timestamp(self, second: int) -> str:
        """``30/Nov/2026:10:58:01 +0000`` in local time, made once a second (``%b`` would follow the locale)."""
        cached, text = self._stamp
        if second != cached:
            t = time.localtime(second)
            text = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                    f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {time.strftime('%z', t)}")
            self._stamp = (second, text)
        return text


_ACCESS_LOG = AccessLog()


def access_log(config: Config) -> AccessLog | None:
    """The access log, or None when it is off (then nothing on the hot path but the check)."""
    return _ACCESS_LOG if config.access_log else None
