"""Serializing HTTP/1.1 responses: status line, header fields, chunked framing.

h11 parses requests for us, but its writer validates every header through
regular expressions and walks its state machine for each event: about 39 us
per small response on the project's reference machine, more than parsing the
request costs. A response head is simple enough to write directly, provided
the one real danger is guarded: a header name or value smuggling in CR, LF or
NUL would let a handler (or whoever controls its inputs) split the response.
"""

from __future__ import annotations

import time

from ._dates import http_date
from .headers import is_token
from .response import reason_phrase

__all__ = ["status_line", "encode_head", "encode_response_head", "chunk", "error_response_bytes", "LAST_CHUNK",
           "CONTINUE", "SERVER_NAME"]

SERVER_NAME = "astra"

_STATUS_LINES: dict[int, str] = {}


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int, reason: str | None = None) -> str:
    """``HTTP/1.1 200 OK`` and its CRLF; ``reason`` instead of the standard phrase if given
    (checked for CR and LF with the rest of the head, see encode_head)."""
    if reason is not None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status!r}")
        return f"HTTP/1.1 {status} {reason}\r\n"
    try:
        return _STATUS_LINES[status]  # a subscript, not .get(): see encode_response_head
    except KeyError:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status!r}")
        line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
        return line


def encode_head(status: int, headers: list[tuple[str, str]], reason: str | None = None) -> bytes:
    """Status line plus header fields plus the blank line, as bytes.

    Raises ValueError for a header name that is not a token or a value that
    contains CR, LF or NUL.
    """
    for name, _ in headers:
        if not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
    text = status_line(status, reason) + "".join([f"{n}: {v}\r\n" for n, v in headers]) + "\r\n"
    # One CRLF per field plus the status line and the blank line: any other
    # CR or LF came from a value and would split the response.
    if text.count("\n") != len(headers) + 2 or text.count("\r") != len(headers) + 2 or "\0" in text:
        raise ValueError("header value contains CR, LF or NUL")
    return text.encode("latin-1")


#: Encoded heads by (status, fields), Date and Server excepted: a handler
#: tends to answer with the same few heads, and encoding and checking one
#: costs more than looking it up. Bounded: emptied when full, so a handler
#: whose heads never repeat (a fresh cookie each time) only pays a lookup.
_HEADS: dict[tuple, bytes] = {}
_HEADS_MAX = 512
#: (second, (Date line alone, Date and Server lines)), replaced as one tuple (see _dates).
_date_tails: tuple[int, tuple[bytes, bytes]] = (-1, (b"", b""))


def encode_response_head(status: int, fields: list[tuple[str, str]], framing: bytes, add_server: bool,
                         reason: str | None = None) -> bytes:
    """A response head: ``fields`` (checked and encoded as :func:`encode_head` does), then
    ``framing`` (the server's own field lines, encoded), Date, and Server if ``add_server``.

    Raises ValueError as :func:`encode_head` does; such a head is never remembered.
    """
    key = (status, *fields) if reason is None else (status, ("", reason), *fields)
    # Every worker thread reads this dict. On CPython 3.13 without the GIL, dict.get()
    # locks the dict (a critical section) and the workers queue on it; a subscript
    # reads it without a lock. With the GIL the two cost the same on a hit.
    try:
        head = _HEADS[key]
    except KeyError:
        head = encode_head(status, fields, reason)[:-2]  # its blank line comes after Date
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[key] = head
    return head + framing + _date_tail(add_server)


def _date_tail(add_server: bool) -> bytes:
    """The Date field (and Server), and the blank line: made once a second."""
    global _date_tails
    now = int(time.time())
    second, tails = _date_tails
    if now != second:
        date = f"date: {http_date()}\r\n"
        tails = ((date + "\r\n").encode("ascii"), f"{date}server: {SERVER_NAME}\r\n\r\n".encode("ascii"))
        _date_tails = (now, tails)
    return tails[add_server]


def error_response_bytes(
    status: int, message: str, headers: list[tuple[str, str]] = (), *, head_only: bool = False,
) -> bytes:
    """A complete ``Connection: close`` plain-text answer of the server's own.

    For a request that could not be parsed (or was refused), or for a runtime
    turning a connection away before any parsing. ``head_only`` leaves the
    body out (the answer to a HEAD request) but keeps its length.
    """
    body = f"{status} {reason_phrase(status)}: {message}\n".encode("utf-8", "replace")
    head = encode_head(status, [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        ("date", http_date()),
        ("server", SERVER_NAME),
        *headers,
    ])
    return head if head_only else head + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)
