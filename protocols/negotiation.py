"""Which protocol a connection speaks, decided in one place.

On a cleartext port a client may speak HTTP/1.1, open with HTTP/2's preface
(prior knowledge, RFC 9113 3.3) or ask to upgrade with ``Upgrade: h2c``
(RFC 7540 3.2). :func:`server_connection` makes the connection object a
runtime starts with:

- ``"2"``: an :class:`~.http2.HTTP2Connection`, from the first byte.
- ``"1"``: an :class:`~.http11.HTTP11Connection` that never switches.
- ``"auto"``: an :class:`OpeningConnection`, which reads just enough of the
  first bytes to tell the preface from an HTTP/1.1 request and then hands
  over to the right connection; the HTTP/1.1 one is given :func:`upgrade_to_h2c`
  as its upgrade hook, for the second way in.

Every change of connection object reaches the runtime as a
:class:`~.events.ProtocolSwitched` event, the last of its batch. An
``"auto"`` connection therefore always begins with one (as soon as the first
bytes tell which protocol it is), and an ``h2c`` upgrade makes a second.
Paying for the opening object once per connection keeps the per-request
path of HTTP/1.1 free of any delegation.

Over TLS the protocol is the one agreed by ALPN during the handshake
(RFC 9113 3.2), never guessed from the bytes and never upgraded to: a
:class:`SecureOpening` waits for the first plaintext (which only exists
once the handshake is done), then switches to HTTP/2 if ``h2`` was agreed,
else to HTTP/1.1 without the ``h2c`` hook, handing the successor the
connection's TLS details.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from .events import ConnectionClosed, Event, ProtocolSwitched
from .headers import Headers
from .http2 import PREFACE, HTTP2Connection
from .http11 import HTTP11Connection
from .limits import Limits
from .request import ConnectionInfo, Request

if TYPE_CHECKING:
    from .contract import ServerConnection
    from .response import Response
    from .tls import TLSSession

__all__ = ["HTTP_VERSIONS", "OpeningConnection", "SecureOpening", "h2c_settings", "server_connection",
           "upgrade_to_h2c"]

HTTP_VERSIONS = ("auto", "1", "2")

SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


def server_connection(info: ConnectionInfo, limits: Limits | None = None, http: str = "auto",
                      tls: TLSSession | None = None) -> ServerConnection:
    """The connection a runtime starts a new client connection with (see the module docstring).

    ``tls``: the connection's TLS session, if it has one (its transport's).
    """
    if http not in HTTP_VERSIONS:
        raise ValueError(f"http must be one of {HTTP_VERSIONS}, not {http!r}")
    if tls is not None:
        return SecureOpening(info, limits, http, tls)
    if http == "auto":
        return OpeningConnection(info, limits)
    if http == "1":
        return HTTP11Connection(info, limits)
    if http == "2":
        return HTTP2Connection(info, limits)
    raise ValueError(f"http must be one of {HTTP_VERSIONS}, not {http!r}")


class OpeningConnection:
    """The start of an ``"auto"`` connection, until its first bytes tell the protocol.

    Bytes are buffered while they could still be HTTP/2's 24-byte preface;
    one that cannot (for an HTTP/1.1 request, the first) decides. Then
    :meth:`events` returns a single :class:`~.events.ProtocolSwitched` to an
    :class:`~.http2.HTTP2Connection` or :class:`~.http11.HTTP11Connection`
    that has been given every byte (and the EOF) received so far. A client
    that closes before sending anything gets :class:`~.events.ConnectionClosed`
    instead; one that closes mid-preface is HTTP/1.1's to answer.

    Until then there is no stream: the output methods have nothing to act on
    and do nothing, :meth:`stream_reset` says every stream is gone.
    ``protocol`` is HTTP/1.1's, the protocol of a client that sends nothing else.
    """

    protocol = "HTTP/1.1"
    multiplexed = False

    def __init__(self, info: ConnectionInfo, limits: Limits | None = None) -> None:
        self.info = info
        self.limits = limits or Limits()
        self._buffer = b""
        self._eof = False
        self._closing = False
        self._done = False  # switched, or reported ConnectionClosed: nothing more to say

    def receive_data(self, data: bytes) -> None:
        if self._done or self._eof:
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def events(self) -> list[Event]:
        if self._done:
            return []
        buffered = self._buffer
        maybe_preface = buffered[:len(PREFACE)] == PREFACE[:len(buffered)]
        if maybe_preface and len(buffered) < len(PREFACE):
            if not self._eof:
                return []  # too few bytes to tell yet
            if not buffered:
                self._done = True
                return [ConnectionClosed()]
        if maybe_preface and len(buffered) >= len(PREFACE):
            return self._hand_over(HTTP2Connection(self.info, self.limits, received=buffered))
        h2c = partial(upgrade_to_h2c, self.info, self.limits)
        successor = HTTP11Connection(self.info, self.limits, upgrade=h2c)
        successor.receive_data(buffered)
        return self._hand_over(successor)

    def _hand_over(self, successor: ServerConnection) -> list[Event]:
        """The switch, once the successor has every byte read so far: the EOF and a close go too."""
        self._done = True
        if self._eof:
            successor.receive_data(b"")
        if self._closing:
            successor.close_after_current()
        self._buffer = b""
        return [ProtocolSwitched(successor)]

    # -- the rest of the contract: no stream exists yet ------------------------

    def consumed(self, stream_id: int, size: int) -> None:
        pass

    def expects_continue(self, stream_id: int) -> bool:
        return False

    def send_continue(self, stream_id: int) -> None:
        pass

    def send_response(self, stream_id: int, response: Response) -> None:
        pass

    def send_data(self, stream_id: int, data: bytes) -> None:
        pass

    def raw_body(self, stream_id: int, size: int) -> bool:
        return False

    def end_stream(self, stream_id: int) -> None:
        pass

    def abort_stream(self, stream_id: int) -> None:
        pass

    def refuse_stream(self, stream_id: int) -> None:
        pass

    def pending(self, stream_id: int) -> int:
        return 0

    def waiting_for_window(self) -> list[tuple[int, int]]:
        return []

    def stream_reset(self, stream_id: int) -> bool:
        return True

    def close_after_current(self) -> None:
        """Nothing is in progress, so the connection may close at once (and so may its successor)."""
        self._closing = True

    def release(self) -> None:
        """See the contract: nothing is queued here but the bytes read so far."""
        self._buffer = b""
        self._closing = True

    def data_to_send(self) -> bytes:
        return b""

    @property
    def should_close(self) -> bool:
        return self._closing or (self._eof and not self._buffer)


class SecureOpening(OpeningConnection):
    """The start of a TLS connection: its protocol is known once there is plaintext to read.

    Plaintext exists only after the handshake, and by then ALPN has
    settled the protocol: ``h2`` -> HTTP/2, anything else (``http/1.1``,
    or no ALPN at all: curl 7 with ``--http1.1``, old clients) -> HTTP/1.1.
    ``http`` "1" or "2" serves that protocol whatever was agreed (the
    server offered only that one). The successor's ``info`` says
    ``https`` and carries the handshake's details.
    """

    def __init__(self, info: ConnectionInfo, limits: Limits | None, http: str, tls: TLSSession) -> None:
        super().__init__(replace(info, scheme="https"), limits)
        self._http = http
        self._tls = tls

    def events(self) -> list[Event]:
        if self._done or not (self._buffer or self._eof):
            return []
        if not self._buffer:
            self._done = True
            return [ConnectionClosed()]  # the client left, or its handshake failed
        info = replace(self.info, tls=self._tls.details())
        buffered, self._buffer = self._buffer, b""
        if self._http == "2" or (self._http == "auto" and self._tls.alpn == "h2"):
            return self._hand_over(HTTP2Connection(info, self.limits, received=buffered))
        successor = HTTP11Connection(info, self.limits)
        successor.receive_data(buffered)
        return self._hand_over(successor)


def upgrade_to_h2c(
    info: ConnectionInfo, limits: Limits | None, request: Request, received: bytes, eof: bool, output: bytes,
) -> HTTP2Connection | None:
    """HTTP/1.1's upgrade hook for ``h2c``: the HTTP/2 connection that takes over, or None.

    The ``101`` is queued after ``output``; the request becomes stream 1,
    whose response goes out over HTTP/2; ``received`` (the client's preface,
    perhaps already) is read as HTTP/2. Settings that h2 refuses (a value
    out of its range: ENABLE_PUSH 2, a window past 2^31 - 1, 100-byte frames) decline
    the upgrade like a malformed header does, and the request is answered
    over HTTP/1.1.
    """
    settings = h2c_settings(request.headers)
    if settings is None:
        return None
    try:
        successor = HTTP2Connection(
            info, limits, upgrade=(request, settings), received=received, output=output + SWITCHING_TO_H2C,
        )
    except ValueError:
        return None
    if eof:
        successor.receive_data(b"")
    return successor


def h2c_settings(headers: Headers) -> bytes | None:
    """The client's HTTP2-Settings, if these request headers ask for ``h2c`` properly.

    That is ``Upgrade: h2c``, ``Connection`` naming ``Upgrade`` and
    ``HTTP2-Settings``, and exactly one ``HTTP2-Settings`` field holding
    base64url SETTINGS entries (6 bytes each). Returns them re-encoded with
    padding, as h2 decodes them; anything else is not an upgrade request,
    and is answered over HTTP/1.1 as if it had not asked (RFC 9110 7.8 lets
    a server ignore Upgrade).
    """
    upgrade = _tokens(headers.get_all("upgrade"))
    connection = _tokens(headers.get_all("connection"))
    settings = headers.get_all("http2-settings")
    if "h2c" not in upgrade or not {"upgrade", "http2-settings"} <= connection or len(settings) != 1:
        return None
    value = settings[0].encode("latin-1")
    try:
        decoded = base64.b64decode(value + b"=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(decoded) % 6:
        return None
    return base64.urlsafe_b64encode(decoded)


def _tokens(values: list[str]) -> set[str]:
    """The comma-separated tokens of a list-valued field, lower-cased."""
    return {token.strip().lower() for value in values for token in value.split(",")}
