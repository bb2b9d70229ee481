"""Between HTTP/2 header blocks and the handler's :class:`Request` / :class:`Response`.

HTTP/2 carries the request line in pseudo-header fields (``:method``,
``:path``, ``:scheme``, ``:authority``) and forbids the connection-specific
fields HTTP/1.1 uses for framing. These functions translate in both
directions, so that a handler sees the same request whichever protocol
carried it (``Host`` included, taken from ``:authority``) and its response
goes out as valid HTTP/2 whatever it set.
"""

from __future__ import annotations

from ._dates import http_date
from .headers import Headers, is_token
from .request import ConnectionInfo, Request
from .response import Response, reason_phrase, response_length

__all__ = ["NO_BODY_STATUSES", "error_fields", "request_from_fields", "response_fields"]

SERVER_NAME = b"astra"
#: Statuses whose responses never carry a body (RFC 9110 6.4.1 and 15.3.5).
NO_BODY_STATUSES = frozenset({204, 304})
# Connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2); the
# framing ones are ours to decide.
_DROPPED_FIELDS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length",
})


def request_from_fields(fields: list[tuple[bytes, bytes]], info: ConnectionInfo) -> tuple[Request, int | None]:
    """The request a header block describes, and its declared Content-Length.

    h2 has already checked the block (pseudo-fields present once and first,
    names lower-case, no connection-specific fields).
    """
    method = path = authority = b""
    scheme = info.scheme
    headers: list[tuple[str, str]] = []
    content_length = None
    for name, value in fields:
        if name[0] == 58:  # ":"
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value.decode("latin-1")
            continue
        if name == b"content-length":
            content_length = int(value)
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    if authority and not any(n == "host" for n, _ in headers):
        headers.insert(0, ("host", authority.decode("latin-1")))
    if scheme != info.scheme:
        info = ConnectionInfo(info.peer, info.local, scheme)
    request = Request(method.decode("ascii"), path.decode("latin-1"), Headers._trusted(headers), "2", info)
    return request, content_length


def response_fields(response: Response, head_only: bool) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """The header block for ``response``, and the body length it declares (None: unknown).

    Raises ValueError for a status that is not a final one, a field name
    that is not a token, or a value with CR, LF or NUL.
    """
    status = response.status
    if not 200 <= status <= 999:
        raise ValueError(f"invalid status code {status!r} for a final response")
    fields = [(b":status", str(status).encode("ascii"))]
    has_server = False
    for name, value in response.headers:
        if name in _DROPPED_FIELDS:
            continue
        if not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("header value contains CR, LF or NUL")
        has_server = has_server or name == "server"
        fields.append((name.encode("ascii"), value.encode("latin-1")))
    length = response_length(response, response.headers.get("content-length"))
    if length is not None and status not in NO_BODY_STATUSES:
        fields.append((b"content-length", str(length).encode("ascii")))
    fields.append((b"date", http_date().encode("ascii")))
    if not has_server:
        fields.append((b"server", SERVER_NAME))
    return fields, None if head_only or status in NO_BODY_STATUSES else length


def error_fields(status: int, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header block and body of the server's own plain-text answer (413 and the like)."""
    body = f"{status} {reason_phrase(status)}: {message}\n".encode()
    return [
        (b":status", str(status).encode("ascii")),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"date", http_date().encode("ascii")),
        (b"server", SERVER_NAME),
    ], body
