"""Exceptions that cross the line between the protocol layer and the handler.

A handler may raise :class:`HTTPError` to answer with a status of its choice;
the runtime turns it into a response without logging a traceback. Everything
else a handler raises becomes a 500.
"""

from __future__ import annotations

__all__ = ["HTTPError", "BodyTooLarge", "ClientDisconnected", "ProtocolError"]


class HTTPError(Exception):
    """Answer the current request with ``status`` and a short plain-text body."""

    def __init__(self, status: int, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class BodyTooLarge(HTTPError):
    """The request body is larger than the server's ``max_body_bytes``."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")
        self.limit = limit


class ClientDisconnected(Exception):
    """The client went away (or the connection broke) while its request was in flight.

    Raised from request body reads; a handler need not catch it. The runtime
    drops the connection quietly: there is nobody left to answer.
    """


class ProtocolError(HTTPError):
    """The peer broke the protocol; ``status`` is the 4xx/5xx to answer with.

    Raised from a request body read when the client's framing turns out to be
    malformed; as an :class:`HTTPError` it answers the request (if the answer
    has not started) without a traceback in the log.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(status, message)
