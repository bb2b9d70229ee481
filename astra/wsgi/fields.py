"""Checking what an application hands to ``start_response``: its status line and its header list.

PEP 3333 asks the server to refuse what it cannot send faithfully, at the
call that passes it, so that the error's traceback points into the
application. The protocol layer checks heads again before they reach the
wire; these checks are the WSGI contract's, and they run in the
application's own call, where the mistake is.

Applications answer with a handful of statuses and header names, so both
are remembered once checked (up to a bound), and a response's head costs a
few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.headers import is_token
from protocols.response import reason_phrase

__all__ = ["HOP_BY_HOP", "WSGIError", "header_fields", "status_code"]


class WSGIError(Exception):
    """The application broke a rule of PEP 3333 (astra answers 500, or cuts the response off)."""


#: Fields that describe one connection, not the response: the server owns
#: them, and PEP 3333 forbids an application to send them.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_REMEMBERED = 1024
_statuses: dict[str, tuple[int, str | None]] = {}
_names: dict[str, str] = {}  # a name as the application spells it -> lower case, checked


def status_code(status: object) -> tuple[int, str | None]:
    """The code of a WSGI status line and its reason phrase: ``"200 OK"`` -> (200, None).

    The phrase is None when it is the standard one, so that the common
    response keeps the protocol's cached status line; another phrase
    (``"299 Custom"``) goes out as given on HTTP/1.1 (HTTP/2 has none).
    """
    known = _statuses.get(status) if type(status) is str else None
    if known is not None:
        return known
    if type(status) is not str:
        raise TypeError(f"status must be a str, not {type(status).__name__}")
    digits = status[:3]
    if len(status) < 4 or status[3] != " " or not (digits.isascii() and digits.isdigit()):
        raise WSGIError(f"status must be three digits, a space and a reason phrase, not {status!r}")
    if not _printable(status):
        raise WSGIError(f"status contains control characters: {status!r}")
    code = int(digits)
    if code < 200:
        raise WSGIError(f"status {code}: informational responses are the server's to send, not a WSGI response")
    phrase = status[4:]
    known = (code, None if phrase == reason_phrase(code) else phrase)
    if len(_statuses) < _REMEMBERED:
        _statuses[status] = known
    return known


def header_fields(headers: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], int | None]:
    """Check an application's header list: ``(fields with lower-case names, declared Content-Length)``."""
    fields = []
    declared = None
    for name, value in headers:
        lower = _names.get(name) if type(name) is str else None
        if lower is None:
            lower = _checked_name(name)
        if type(value) is not str:
            raise TypeError(f"the value of header {name!r} must be a str, not {type(value).__name__}")
        if "\n" in value or "\r" in value or "\0" in value:
            raise WSGIError(f"the value of header {name!r} contains CR, LF or NUL")
        if not value.isascii():
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise WSGIError(f"the value of header {name!r} is not latin-1 (PEP 3333 strings)") from None
        if lower == "content-length":
            declared = _content_length(value)
        fields.append((lower, value))
    return fields, declared


def _checked_name(name: object) -> str:
    if type(name) is not str:
        raise TypeError(f"a header name must be a str, not {type(name).__name__}")
    if not is_token(name):
        raise WSGIError(f"invalid header name {name!r}")
    lower = name.lower()
    if lower in HOP_BY_HOP:
        raise WSGIError(f"{name!r} is a hop-by-hop header: the server sets it, a WSGI application may not")
    if len(_names) < _REMEMBERED:
        _names[name] = lower
    return lower


def _content_length(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise WSGIError(f"invalid Content-Length {value!r}")
    return int(value)


def _printable(text: str) -> bool:
    return text.isprintable() or not any(ord(c) < 32 or ord(c) == 127 for c in text)
