"""astra: a blocking HTTP server for Python, on pluggable runtimes.

Handlers are plain functions, ``handler(request) -> Response``, free to block:
on astra's thread runtimes a blocking call yields to the operating system's
scheduler, not to an event loop.
"""

from protocols import (
    Body,
    BodyTooLarge,
    ClientDisconnected,
    ConnectionInfo,
    Headers,
    HTTPError,
    Request,
    RequestBody,
    Response,
    ResponseBuilder,
)
from protocols.request import TLSInfo
from protocols.tls import ClientCertificates, TLSSettings

from .asgi import ASGIHandler
from .registry import available_runtimes
from .server import Server, ServerHandle
from .wsgi import WSGIAdapter

__all__ = [
    "ASGIHandler", "Body", "BodyTooLarge", "ClientDisconnected", "ConnectionInfo", "HTTPError",
    "Headers", "Request", "RequestBody", "Response", "ResponseBuilder", "Server",
    "ServerHandle", "TLSInfo", "TLSSettings", "ClientCertificates", "WSGIAdapter", "available_runtimes",
]
