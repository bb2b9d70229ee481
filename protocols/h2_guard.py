"""Before h2 sees a byte: frame headers read for sizes, and the idle-frame budget.

h2 waits for a frame to be complete before it checks its length against
SETTINGS_MAX_FRAME_SIZE (so a client announcing 16 MiB gets 16 MiB held),
and joins a header block's CONTINUATION frames in memory, up to 64 of them,
before it decodes any (about 1 MiB at 16 KiB frames, the CVE-2024-27316
class). :class:`FrameGuard` reads only the 9-byte frame headers: enough to
refuse both before the bytes are held, and to count the frames that carry no
request and no body byte (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA
or CONTINUATION, DATA nobody reads). Each of those may queue a reply that a
client which never reads lets pile up (CVE-2019-9512, -9514, -9515, -9518),
so :class:`~.http2.HTTP2Connection` gives the client a budget of them:
:data:`IDLE_FRAME_BURST` at most, :data:`REQUEST_CREDIT` more per request
it opens, one back per body frame a handler is given.
"""

from __future__ import annotations

import struct

import h2.errors

__all__ = ["IDLE_FRAME_BURST", "PREFACE", "REQUEST_CREDIT", "TOO_IDLE", "FrameGuard", "Refused"]

#: What a client sends first when it speaks HTTP/2 with prior knowledge.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Idle frames (see the module docstring) a client may send in a burst.
IDLE_FRAME_BURST = 1000
#: Idle frames each request opened earns.
REQUEST_CREDIT = 100
TOO_IDLE = "too many frames without a request or body"

_Codes = h2.errors.ErrorCodes
# Frame types (RFC 9113 6) and flags the guard reads.
_DATA, _HEADERS, _PUSH_PROMISE, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x5, 0x7, 0x8, 0x9
_END_STREAM = 0x1
_FRAME_HEAD = struct.Struct(">BHBB")  # length (high byte, low 16 bits), type, flags; the stream id is not needed


class Refused(Exception):
    """The frame at ``offset`` of the data scanned will not be buffered: a connection error."""

    def __init__(self, offset: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.code = code
        self.reason = reason


class FrameGuard:
    """Reads frame headers on the bytes received, before h2 buffers them (see the module docstring)."""

    __slots__ = ("_skip", "_partial", "_block", "_max_frame", "_max_block")

    def __init__(self, max_frame: int, max_block: int) -> None:
        self._skip = len(PREFACE)  # payload bytes still to pass over; h2 checks the preface
        self._partial = b""  # a frame header cut by the end of a read
        self._block = 0  # bytes of the header block in progress
        self._max_frame = max_frame
        self._max_block = max_block

    def scan(self, data: bytes, budget: int) -> int:
        """How many idle frames begin in ``data``; raises :class:`Refused` at one not to buffer.

        A DATA frame with payload is charged too, until a handler is given
        its bytes (HTTP2Connection then gives the unit back): h2 answers DATA
        for a closed stream with RST_STREAM by itself. The frame at which
        the idle ones outrun ``budget``, plus what the requests before it
        may earn, is refused here, so that a flood read in one piece does
        not queue a piece's worth of replies first.
        """
        carried = len(self._partial)
        if carried:
            data = self._partial + data  # rare: reads rarely end inside a frame header
            self._partial = b""
        pos = self._skip
        end = len(data)
        idle = payloads = 0
        head = _FRAME_HEAD.unpack_from
        while pos + 9 <= end:
            high, low, kind, flags = head(data, pos)
            length = high << 16 | low
            if length > self._max_frame:
                raise Refused(pos - carried, _Codes.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
            if kind == _DATA and (length or flags & _END_STREAM):  # body bytes, or the end of a body
                if length:
                    payloads += 1
            elif kind == _HEADERS:
                self._block = length
                if length > self._max_block:
                    raise Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, "header block too large")
                budget += REQUEST_CREDIT  # if it turns out to be a request
            elif kind == _CONTINUATION and length:
                self._block += length
                if self._block > self._max_block:
                    raise Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, "header block too large")
            elif kind == _PUSH_PROMISE:  # RFC 9113 8.4: only servers push
                raise Refused(pos - carried, _Codes.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            elif kind != _WINDOW_UPDATE and kind != _GOAWAY:
                idle += 1
                if idle > budget:
                    raise Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, TOO_IDLE)
            pos += 9 + length
        if pos >= end:
            self._skip = pos - end
        else:
            self._skip = 0
            self._partial = bytes(data[pos:])
        return idle + payloads
