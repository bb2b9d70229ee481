"""The sans-IO protocol layer: bytes in, events out; responses in, bytes out.

Nothing here opens a socket, starts a thread or touches an event loop. This
package is also where the request/response vocabulary handlers see is
defined (:class:`Request`, :class:`Response`, ...); ``astra`` re-exports it.
"""

from .contract import ServerConnection
from .errors import BodyTooLarge, ClientDisconnected, HTTPError, ProtocolError
from .events import (
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    Event,
    ProtocolFailed,
    ProtocolSwitched,
    RequestReceived,
    StreamReset,
)
from .h1_parser import H11Parser, RequestParser
from .h1_wire import error_response_bytes
from .headers import Headers
from .http2 import PREFACE, HTTP2Connection
from .http11 import HTTP11Connection
from .limits import Limits
from .negotiation import HTTP_VERSIONS, OpeningConnection, server_connection
from .request import BodySource, ConnectionInfo, Request, RequestBody
from .response import Body, Response, ResponseBuilder, reason_phrase

__all__ = [
    "Body", "BodyEnded", "BodyReceived", "BodySource", "BodyTooLarge",
    "ClientDisconnected", "ConnectionClosed", "ConnectionInfo", "Event", "H11Parser",
    "HTTP11Connection", "HTTP2Connection", "HTTPError", "HTTP_VERSIONS", "Headers",
    "Limits", "OpeningConnection", "PREFACE", "ProtocolError", "ProtocolFailed", "ProtocolSwitched",
    "Request", "RequestBody", "RequestParser", "RequestReceived", "Response", "ResponseBuilder",
    "ServerConnection", "StreamReset", "error_response_bytes", "reason_phrase", "server_connection",
]
