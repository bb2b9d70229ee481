"""Which protocol a new connection starts with.

On a cleartext port a client may speak HTTP/1.1, open with HTTP/2's preface
(prior knowledge) or ask to upgrade with ``Upgrade: h2c``. With ``"auto"`` a
connection starts as HTTP/1.1 and watches for the other two (see
:class:`~.events.ProtocolSwitched`); ``"1"`` and ``"2"`` restrict a server to
one protocol.
"""

from __future__ import annotations

from .http2 import HTTP2Connection
from .http11 import HTTP11Connection
from .limits import Limits
from .request import ConnectionInfo

__all__ = ["HTTP_VERSIONS", "server_connection"]

HTTP_VERSIONS = ("auto", "1", "2")


def server_connection(
    info: ConnectionInfo, limits: Limits | None = None, http: str = "auto",
) -> HTTP11Connection | HTTP2Connection:
    if http == "2":
        return HTTP2Connection(info, limits)
    if http not in HTTP_VERSIONS:
        raise ValueError(f"http must be one of {HTTP_VERSIONS}, not {http!r}")
    return HTTP11Connection(info, limits, h2=http == "auto")
