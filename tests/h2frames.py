"""A client that writes HTTP/2 frames by hand (hyperframe, hpack), for the tests of hostile clients.

The builders return serialized bytes, ready for ``HTTP2Connection.receive_data``
or a socket; :class:`FrameReader` turns the server's bytes back into frames.
h2's own client side would refuse to write most of what these tests send.
"""

from __future__ import annotations

import base64

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from protocols import PREFACE

__all__ = [
    "GET", "POST", "FrameReader", "continuation_flood", "data_frame", "headers_frames", "opening", "ping",
    "request_frames", "serialized", "settings_header",
]

GET = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"example")]
POST = [(b":method", b"POST"), *GET[1:]]


def serialized(*frames: Frame) -> bytes:
    return b"".join(frame.serialize() for frame in frames)


def opening(settings: dict[int, int] | None = None, ack: bool = False) -> bytes:
    """What a client sends first: the preface, its SETTINGS and, with ``ack``, the ACK of the server's."""
    out = PREFACE + SettingsFrame(0, settings=settings or {}).serialize()
    return out + SettingsFrame(0, flags=["ACK"]).serialize() if ack else out


def headers_frames(stream_id: int, block: bytes, end_stream: bool = True, max_frame: int = 16384) -> bytes:
    """A header block as HEADERS plus as many CONTINUATION frames as it needs."""
    pieces = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    first = HeadersFrame(stream_id, data=pieces[0])
    if end_stream:
        first.flags.add("END_STREAM")
    frames = [first] + [ContinuationFrame(stream_id, data=piece) for piece in pieces[1:]]
    frames[-1].flags.add("END_HEADERS")
    return serialized(*frames)


def request_frames(stream_id: int, fields, end_stream: bool = True, encoder: Encoder | None = None) -> bytes:
    """A request's header block on ``stream_id``; a connection's later requests pass its ``encoder``."""
    return headers_frames(stream_id, (encoder or Encoder()).encode(fields), end_stream)


def data_frame(stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
    return DataFrame(stream_id, data=data, flags=["END_STREAM"] if end_stream else []).serialize()


def ping(flags=()) -> bytes:
    return PingFrame(0, opaque_data=b"12345678", flags=list(flags)).serialize()


def continuation_flood(frames: int, size: int = 16384, stream_id: int = 1) -> bytes:
    """A header block that never ends: HEADERS, then ``frames`` CONTINUATION frames, ``size`` bytes each."""
    head = HeadersFrame(stream_id, data=b"\x00" * size, flags=["END_STREAM"]).serialize()
    return head + ContinuationFrame(stream_id, data=b"\x00" * size).serialize() * frames


def settings_header(*pairs: tuple[int, int]) -> bytes:
    """An HTTP2-Settings value: SETTINGS entries, base64url without padding."""
    return base64.urlsafe_b64encode(b"".join(code.to_bytes(2, "big") + value.to_bytes(4, "big")
                                             for code, value in pairs)).rstrip(b"=")


class FrameReader:
    """Turns the server's bytes back into frames, decoding header blocks as they come."""

    def __init__(self) -> None:
        self.buffer = b""
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.frames: list[Frame] = []
        self.status: dict[int, int] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: GoAwayFrame | None = None

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        new = []
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            self._note(frame)
            new.append(frame)
        self.frames += new
        return new

    def _note(self, frame: Frame) -> None:
        sid = frame.stream_id
        if isinstance(frame, HeadersFrame):  # the server's blocks fit one frame
            fields = dict(self.decoder.decode(frame.data, raw=True))
            self.headers[sid] = fields
            self.status[sid] = int(fields[b":status"])
        elif isinstance(frame, DataFrame):
            self.bodies[sid] = self.bodies.get(sid, b"") + frame.data
        elif isinstance(frame, RstStreamFrame):
            self.resets[sid] = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        if "END_STREAM" in getattr(frame, "flags", ()):
            self.ended.add(sid)

    def count(self, kind: type) -> int:
        return sum(isinstance(f, kind) for f in self.frames)
