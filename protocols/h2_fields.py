"""Between HTTP/2 header blocks and the handler's :class:`Request` / :class:`Response`.

HTTP/2 carries the request line in pseudo-header fields (``:method``,
``:path``, ``:scheme``, ``:authority``) and forbids the connection-specific
fields HTTP/1.1 uses for framing. These functions translate in both
directions, so that a handler sees the same request whichever protocol
carried it (``Host`` included, taken from ``:authority``) and its response
goes out as valid HTTP/2 whatever it set.

Nothing a client sends is trusted. :func:`request_from_fields` checks the
whole block itself, in the one pass that builds the request (h2's inbound
checks are off, see ``http2.py``), and raises :class:`RejectedRequest`,
which costs the stream, never the connection:

- **Malformed** (RFC 9113 8.1.1: the stream is reset with PROTOCOL_ERROR): a
  field name that is not a lower-case token, a value with a control byte or
  a space or tab at either end (8.2.1), a connection-specific field, or
  ``te`` other than ``trailers`` (8.2.2); a pseudo-header unknown, repeated
  or after a regular field, no ``:method``, ``:scheme`` or ``:path``
  (8.3.1); a ``:method`` that is not a token; a ``:path`` that is not ``/``
  and visible ASCII (``*`` for OPTIONS alone); an ``:authority`` or
  ``Host`` that is not ``host[:port]`` with a non-empty host (the check
  HTTP/1.1 makes, ``headers.VALID_HOST``), two ``Host`` fields, neither of
  them, or a ``Host`` naming another origin than ``:authority``.
- **Answered by the server**: ``CONNECT`` gets 405 with an empty Allow
  (``response.CONNECT_REFUSAL``, as on HTTP/1.1: an origin server is no
  tunnel), a ``:scheme`` other than ``http`` or ``https`` 400, a field
  section larger than ``max_header_bytes`` 431 (RFC 9113 10.5.1).
- **Not believed**: ``:scheme``. The connection's scheme is the
  transport's (:class:`ConnectionInfo`); a client claiming ``https`` on a
  cleartext connection is served as the ``http`` request it is. Refusing
  the mismatch would break TLS-terminating proxies that speak h2c to us with
  ``:scheme: https``; believing it would let any client claim a secure
  channel. (HTTP/1.1's absolute-form targets are treated the same way.)
"""

from __future__ import annotations

import re

from ._dates import http_date
from .headers import VALID_HOST, Headers, is_token
from .request import ConnectionInfo, Request
from .response import CONNECT_REFUSAL, Response, reason_phrase, response_length

__all__ = [
    "NO_BODY_STATUSES", "RejectedRequest", "error_fields", "request_from_fields",
    "response_fields", "trailers_problem",
]

SERVER_NAME = b"astra"
#: Statuses whose responses never carry a body (RFC 9110 6.4.1 and 15.3.5).
NO_BODY_STATUSES = frozenset({204, 304})
# Connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2); the
# framing ones are ours to decide.
_DROPPED_FIELDS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length",
})
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
# Names that mean more than a header to pass on: never remembered as ordinary.
_SPECIAL = _CONNECTION_SPECIFIC | {b"te", b"host", b"cookie", b"content-length"}
# RFC 9110 5.1 makes a name a token; RFC 9113 8.2.1 forbids upper case in it.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# RFC 9110 5.5, RFC 9113 8.2.1: visible bytes (obs-text too) with spaces and
# tabs inside only; no NUL, CR, LF or other control byte (http11.py refuses
# them as well).
_valid_value = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?").fullmatch
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
# origin-form: what HTTP/1.1 accepts as a request-target (h11: visible ASCII).
_valid_path = re.compile(rb"/[\x21-\x7e]*").fullmatch
_SCHEMES = frozenset({b"http", b"https"})
# CONNECT's answer, as HTTP/1.1 gives it (see response.CONNECT_REFUSAL for why).
_CONNECT_FIELDS = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in CONNECT_REFUSAL.headers)

# Valid names without a special meaning, decoded once: requests repeat a
# handful, so checking one is a dict lookup. Valid hosts are remembered
# alike. Both are bounded, in count and length: a client cycling through
# long names cannot grow them past about a megabyte.
_ordinary: dict[bytes, str] = {}
_good_hosts: set[bytes] = set()
_REMEMBERED = 4096
_REMEMBERED_LENGTH = 256
_KNOWN_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}


class RejectedRequest(Exception):
    """A request header block that no handler will see.

    ``status`` None: the request is malformed and its stream is reset with
    PROTOCOL_ERROR (RFC 9113 8.1.1). Otherwise the server answers ``status``
    itself, with ``fields`` added to its answer.
    """

    def __init__(self, reason: str, status: int | None = None, fields: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.fields = fields


def request_from_fields(
    fields: list[tuple[bytes, bytes]], info: ConnectionInfo, max_header_bytes: int,
) -> tuple[Request, int | None]:
    """The request a header block describes, and its declared Content-Length.

    Raises :class:`RejectedRequest` (see the module docstring). h2 has
    already checked Content-Length (digits, repeats agreeing), and holds
    the body to it.
    """
    method = path = scheme = authority = host = None
    headers: list[tuple[str, str]] = []
    crumbs: list[bytes] = []
    content_length = None
    regular = False
    size = 32 * len(fields)  # RFC 7541 4.1: each field costs 32 bytes beyond its name and value
    for name, value in fields:
        size += len(name) + len(value)
        key = _ordinary.get(name)
        if key is None:
            if name[:1] == b":":
                if regular:
                    raise RejectedRequest(f"pseudo-header {name!r} after a regular field")
                if name == b":method" and method is None:
                    method = value
                elif name == b":path" and path is None:
                    path = value
                elif name == b":scheme" and scheme is None:
                    scheme = value
                elif name == b":authority" and authority is None:
                    authority = value
                else:
                    raise RejectedRequest(f"unknown or repeated pseudo-header {name[:64]!r}")
                continue
            key = _first_seen(name, value)
            if not _valid_value(value):
                raise RejectedRequest(f"invalid value in {key}")
            if key == "cookie":
                crumbs.append(value)  # joined below (RFC 9113 8.2.3)
                regular = True
                continue
            if key == "content-length":
                content_length = int(value)
            elif key == "host":
                if host is not None:
                    raise RejectedRequest("more than one Host field")
                host = value
        elif not _valid_value(value):
            raise RejectedRequest(f"invalid value in {key}")
        regular = True
        headers.append((key, value.decode("latin-1")))
    if crumbs:
        headers.append(("cookie", b"; ".join(crumbs).decode("latin-1")))
    verb = _method(method)
    _check_target(verb, path, scheme, authority, host, headers)
    if size > max_header_bytes:
        raise RejectedRequest(f"header fields larger than {max_header_bytes} bytes", 431)
    return Request(verb, path.decode("latin-1"), Headers._trusted(headers), "2", info), content_length


def _check_target(verb: str, path: bytes | None, scheme: bytes | None, authority: bytes | None,
                  host: bytes | None, headers: list[tuple[str, str]]) -> None:
    """The pseudo-headers a request must carry, and their agreement with Host (RFC 9113 8.3.1, 8.5);
    a request with :authority and no Host gains one, so handlers read the host in one place."""
    if verb == "CONNECT":
        if path is not None or scheme is not None or authority is None:
            raise RejectedRequest("CONNECT carries :authority and neither :scheme nor :path (RFC 9113 8.5)")
        raise RejectedRequest(CONNECT_REFUSAL.reason, CONNECT_REFUSAL.status, _CONNECT_FIELDS)
    if path is None or scheme is None:
        raise RejectedRequest("no :path or no :scheme")
    if not _valid_path(path) and not (path == b"*" and verb == "OPTIONS"):
        raise RejectedRequest("invalid :path")
    if authority is not None:
        _check_host(authority, ":authority")
        if host is None:
            headers.insert(0, ("host", authority.decode("latin-1")))
        elif host != authority and not _same_origin(authority, host, scheme):
            raise RejectedRequest("Host and :authority disagree")
    elif host is not None:
        _check_host(host, "Host")
    else:
        raise RejectedRequest("no :authority and no Host")
    if scheme not in _SCHEMES:
        raise RejectedRequest("unsupported :scheme", 400)


def _first_seen(name: bytes, value: bytes) -> str:
    """The decoded name of a regular field not remembered as ordinary (raises if malformed)."""
    if not _FIELD_NAME.fullmatch(name):
        raise RejectedRequest(f"invalid field name {name[:64]!r}")
    if name in _CONNECTION_SPECIFIC:
        raise RejectedRequest(f"connection-specific field {name.decode()}")
    if name == b"te" and value.lower() != b"trailers":
        raise RejectedRequest("te other than trailers")
    key = name.decode("ascii")
    if name not in _SPECIAL and len(_ordinary) < _REMEMBERED and len(name) <= _REMEMBERED_LENGTH:
        _ordinary[name] = key
    return key


def _method(method: bytes | None) -> str:
    if method is None:
        raise RejectedRequest("no :method")
    verb = _KNOWN_METHODS.get(method)
    if verb is None:
        if not _METHOD.fullmatch(method):
            raise RejectedRequest("invalid :method")
        verb = method.decode("ascii")
    return verb


def _check_host(value: bytes, what: str) -> None:
    """``host[:port]``, the host not empty: an http(s) URI's may not be (RFC 9110 4.2.1)."""
    if value in _good_hosts:
        return
    if not value or value[:1] == b":" or not VALID_HOST.fullmatch(value):
        raise RejectedRequest(f"invalid {what}")
    if len(_good_hosts) < _REMEMBERED and len(value) <= _REMEMBERED_LENGTH:
        _good_hosts.add(value)


def _same_origin(authority: bytes, host: bytes, scheme: bytes) -> bool:
    """Do they name one origin, once normalized as RFC 3986 6.2.3 does (case, the scheme's default port)?"""
    _check_host(host, "Host")
    default = b":443" if scheme == b"https" else b":80"
    return _normal(authority, default) == _normal(host, default)


def _normal(host: bytes, default_port: bytes) -> bytes:
    return host.lower().removesuffix(default_port).removesuffix(b":")


def trailers_problem(fields: list[tuple[bytes, bytes]]) -> str | None:
    """Why a trailer block is malformed, or None.

    Trailers are dropped, as on HTTP/1.1, but a malformed block still costs
    its stream: no pseudo-header (RFC 9113 8.1), and the rules of any field.
    """
    try:
        for name, value in fields:
            if name[:1] == b":":
                return f"pseudo-header {name[:64]!r} in trailers"
            if name not in _ordinary:
                _first_seen(name, value)
            if not _valid_value(value):
                return "invalid value in trailers"
    except RejectedRequest as rejected:
        return rejected.reason
    return None


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


def error_fields(
    status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header block and body of the server's own plain-text answer (413 and the like)."""
    body = f"{status} {reason_phrase(status)}: {message}\n".encode()
    return [
        (b":status", str(status).encode("ascii")),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
        (b"date", http_date().encode("ascii")),
        (b"server", SERVER_NAME),
    ], body
