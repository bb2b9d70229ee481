"""Request bodies, decoded strictly: Content-Length and chunked framing (RFC 9112 6.3, 7.1).

Why not h11's decoder: h11 reads chunked framing leniently. A last chunk or
a trailer section ended by a bare LF is accepted, and the bytes after it are
parsed as the next request; behind a proxy that reads the same bytes
differently, that is request smuggling. It also accepts control bytes in
chunk extensions and obsolete line folding in trailers, and chunk extensions
count against no limit, so a client can send megabytes of framing around a
one-byte body (the class of Node's CVE-2024-22019 and Go's CVE-2023-39326).

So h11 parses request heads only (see :mod:`.h1_parser`), and the body is
decoded here, by one of two small decoders with the same interface:

- :meth:`~BodyDecoder.receive_data` takes bytes (``b""`` once the client has
  closed its side);
- :meth:`~BodyDecoder.read` returns the body bytes decodable so far (all of
  them, coalesced: a client sending one-byte chunks costs one event per read,
  not one per chunk), ``None`` when more bytes are needed, or ``b""`` once
  the body is complete; it raises :class:`FramingError` on invalid framing;
- :meth:`~BodyDecoder.leftover` returns the bytes after the body (the next
  request's) and whether the client has closed; :meth:`~BodyDecoder.buffered`
  the bytes not decoded yet.

Data that precedes bad framing is handed out before the error is raised,
as it would have been had the bad bytes arrived in a later read: what a
handler sees does not depend on how the client's bytes were cut into reads.

The chunked rules (anything else is a 400, and the connection closes):

- ``chunk-size`` is 1 to 16 hexadecimal digits and nothing else (no sign,
  no ``0x``, no whitespace); 16 digits is already more than any body a limit
  lets through, and it keeps ``int()`` away from unbounded input.
- Chunk extensions are ``;name[=value]`` with a token name and a token or
  quoted-string value; no control bytes anywhere, and no whitespace.
  RFC 9112 lets a recipient accept whitespace around ``;`` and ``=`` (BWS,
  which senders must not generate), but llhttp (Node's parser) refuses it,
  so no client that works with Node sends it, and every way of reading
  whitespace in framing is one more way for two parsers to disagree.
- Every line ends with CRLF: a bare LF or a bare CR is an error, never a line
  ending. Chunk data is followed by exactly CRLF.
- After the last chunk (size 0), trailer fields are ``token ":" value`` lines
  without control bytes; a line starting with whitespace (obsolete line
  folding) is an error. Trailers are checked and dropped: nothing downstream
  reads them, and a dropped field cannot override a header.
- Chunk extensions and the trailer section together may not exceed the
  *framing budget* (the connection's ``max_header_bytes``): past it, 400 for
  extensions and 431 for trailers. The size digits and CRLFs do not count:
  they are bounded per chunk and a long streamed upload needs many chunks,
  while extensions and trailers are the part a client can grow at will.

Body bytes themselves are counted against ``max_body_bytes`` by the connection.
"""

from __future__ import annotations

import re
from typing import NoReturn, Optional, Protocol

from .errors import ProtocolError

__all__ = ["BodyDecoder", "ChunkedDecoder", "FramingError", "LengthDecoder", "MAX_CHUNK_SIZE_DIGITS"]

#: Longest chunk-size accepted, in hexadecimal digits.
MAX_CHUNK_SIZE_DIGITS = 16

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# qdtext and quoted-pair (RFC 9110 5.6.4): HTAB, SP, visible ASCII and
# obs-text; the backslash and the double quote only where the grammar puts them.
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSION = rb";" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
# Each repetition starts with ";", which no token contains, so matching
# stays linear in the line's length.
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)((?:" + _EXTENSION + rb")*)")
_FIELD_LINE = re.compile(_TOKEN + rb":[\t \x21-\x7e\x80-\xff]*")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class FramingError(ProtocolError):
    """The body's framing is invalid (or too large); ``status`` is the answer (400, 431)."""


class BodyDecoder(Protocol):
    """What :mod:`.h1_parser` needs from a body decoder (see the module docstring)."""

    #: Has any byte arrived since the head? (A client that sent one is no
    #: longer waiting for ``100 Continue``.)
    received: bool

    def receive_data(self, data: bytes) -> None: ...

    def read(self) -> Optional[bytes]: ...

    def buffered(self) -> bytes: ...

    def leftover(self) -> tuple[bytes, bool]: ...


def _closed_early() -> FramingError:
    return FramingError("client closed the connection before the end of the request body")


class LengthDecoder:
    """A body of ``length`` bytes, as Content-Length declares.

    Bytes are passed through without copying when a read holds no more than
    the body still owes, which is every read of an upload but the last.
    """

    __slots__ = ("_remaining", "_pending", "_closed", "received")

    def __init__(self, length: int, received: bytes, closed: bool) -> None:
        self._remaining = length
        self._pending = received
        self._closed = closed
        self.received = bool(received)

    def receive_data(self, data: bytes) -> None:
        if data:
            self.received = True
            self._pending = self._pending + data if self._pending else data
        else:
            self._closed = True

    def read(self) -> Optional[bytes]:
        remaining = self._remaining
        if not remaining:
            return b""
        pending = self._pending
        if not pending:
            if self._closed:
                raise _closed_early()
            return None
        if len(pending) <= remaining:
            self._remaining = remaining - len(pending)
            self._pending = b""
            return pending
        self._remaining = 0
        self._pending = pending[remaining:]
        return pending[:remaining]

    def buffered(self) -> bytes:
        return self._pending

    def leftover(self) -> tuple[bytes, bool]:
        return self._pending, self._closed


# The chunked decoder's states.
_SIZE, _DATA, _DATA_END, _TRAILERS, _DONE = range(5)


class ChunkedDecoder:
    """A chunked body (RFC 9112 7.1), read by the rules in the module docstring.

    ``budget`` is the framing budget: bytes of chunk extensions and trailer
    fields allowed in this body.
    """

    __slots__ = ("_buf", "_closed", "_state", "_remaining", "_budget", "_error", "received")

    def __init__(self, budget: int, received: bytes, closed: bool) -> None:
        # A bytearray: deleting a consumed prefix is cheap, and a request's
        # framing and data arrive interleaved in it.
        self._buf = bytearray(received)
        self._closed = closed
        self._state = _SIZE
        self._remaining = 0  # data bytes still owed by the current chunk
        self._budget = budget
        self._error: FramingError | None = None  # found after data that was still handed out
        self.received = bool(received)

    def receive_data(self, data: bytes) -> None:
        if data:
            self.received = True
            self._buf += data
        else:
            self._closed = True

    def buffered(self) -> bytes:
        return bytes(self._buf)

    def leftover(self) -> tuple[bytes, bool]:
        return bytes(self._buf), self._closed

    def read(self) -> Optional[bytes]:
        if self._error is not None:
            raise self._error
        pieces: list[bytes] = []
        try:
            self._decode(pieces)
        except FramingError as exc:
            if not pieces:
                raise
            self._error = exc  # the data before it goes out first (see the module docstring)
        if pieces:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if self._state == _DONE:
            return b""
        if self._closed:
            raise _closed_early()
        return None

    def _decode(self, pieces: list[bytes]) -> None:
        """Decode what the buffer holds, appending data to ``pieces``, up to the end of the body."""
        buf = self._buf
        while True:
            state = self._state
            if state == _DATA:
                if not buf:
                    break
                take = min(self._remaining, len(buf))
                pieces.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if len(buf) < 2:
                    if buf and buf[0] != 13:  # anything but the CR of a CRLF
                        raise FramingError("chunk data not followed by CRLF")
                    break
                if buf[0] != 13 or buf[1] != 10:
                    raise FramingError("chunk data not followed by CRLF")
                del buf[:2]
                self._state = _SIZE
            elif state == _SIZE:
                line = self._line(buf, trailer=False)
                if line is None:
                    break
                self._start_chunk(line)
            elif state == _TRAILERS:
                line = self._line(buf, trailer=True)
                if line is None:
                    break
                if not line:
                    self._state = _DONE
                else:
                    self._check_trailer(line)
            else:  # _DONE
                break

    def _line(self, buf: bytearray, *, trailer: bool) -> Optional[bytes]:
        """The next line without its CRLF (consumed from ``buf``), or None until it is complete.

        A line may be no longer than what is left of the budget, complete or
        not: otherwise a client could make us buffer an endless line.
        """
        end = buf.find(b"\n")
        if end < 0:
            if b"\r" in buf[:-1]:  # a CR followed by anything but LF
                raise FramingError("bare CR in chunked framing")
            if not trailer and buf and buf[0] not in _HEX_DIGITS:
                raise FramingError("invalid chunk size")  # no need to wait for the rest of this line
            if len(buf) > self._line_limit(trailer):
                self._over_budget(trailer)
            return None
        if end == 0 or buf[end - 1] != 13:
            raise FramingError("bare LF in chunked framing")
        if end - 1 > self._line_limit(trailer):
            self._over_budget(trailer)
        line = bytes(buf[: end - 1])
        del buf[: end + 1]
        return line

    def _line_limit(self, trailer: bool) -> int:
        # A size line may also carry up to 16 digits and its CRLF, which are free.
        return self._budget + (0 if trailer else MAX_CHUNK_SIZE_DIGITS + 2)

    def _over_budget(self, trailer: bool) -> NoReturn:
        if trailer:
            raise FramingError("request trailer section too large", 431)
        raise FramingError("too many chunk extension bytes")

    def _start_chunk(self, line: bytes) -> None:
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise FramingError("invalid chunk size line")
        digits, extensions = match.groups()
        if len(digits) > MAX_CHUNK_SIZE_DIGITS:
            raise FramingError("chunk size too long")
        if extensions:
            self._budget -= len(extensions)
            if self._budget < 0:
                self._over_budget(trailer=False)
        size = int(digits, 16)
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._state = _TRAILERS

    def _check_trailer(self, line: bytes) -> None:
        first = line[0]
        if first == 32 or first == 9:
            raise FramingError("obsolete line folding in request trailers")
        if _FIELD_LINE.fullmatch(line) is None:
            raise FramingError("invalid request trailer field")
        self._budget -= len(line) + 2
        if self._budget < 0:
            self._over_budget(trailer=True)
