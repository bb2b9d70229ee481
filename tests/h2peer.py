"""An HTTP2Connection driven by a client that writes hand-built frames, and h2 as it ships.

Shared by the sans-IO tests of hostile HTTP/2 clients (``test_protocol_h2_hostile``,
``test_protocol_h2_floods``).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.settings
from hpack import Encoder

from protocols import ConnectionInfo, HTTP2Connection, Limits, ProtocolFailed, RequestReceived, Response

from .h2frames import GET, FrameReader, headers_frames, opening

__all__ = ["E", "INFO", "Peer", "assert_stream_error", "bare_h2"]

E = h2.errors.ErrorCodes
INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))


class Peer(FrameReader):
    """An HTTP2Connection and a client that speaks to it in hand-built frames."""

    def __init__(self, limits: Limits | None = None, info: ConnectionInfo = INFO) -> None:
        super().__init__()
        self.server = HTTP2Connection(info, limits)
        self.encoder = Encoder()
        self.events: list = []
        self.output = 0  # bytes the server has produced
        self.send(opening(ack=True))

    def send(self, data: bytes) -> list:
        self.server.receive_data(data)
        events = self.server.events()
        self.events += events
        self.flush()
        return events

    def flush(self) -> None:
        out = self.server.data_to_send()
        self.output += len(out)
        self.feed(out)

    def block(self, fields, huffman: bool = True) -> bytes:
        return self.encoder.encode(fields, huffman=huffman)

    def request(self, stream_id: int, fields=GET, end_stream: bool = True) -> list:
        return self.send(headers_frames(stream_id, self.block(fields), end_stream))

    def answer(self, stream_id: int, body: bytes = b"ok") -> None:
        self.server.send_response(stream_id, Response(body))
        self.server.send_data(stream_id, body)
        self.server.end_stream(stream_id)
        self.flush()

    def started(self) -> dict[int, RequestReceived]:
        return {e.stream_id: e for e in self.events if isinstance(e, RequestReceived)}

    def failed(self) -> bool:
        return any(isinstance(e, ProtocolFailed) for e in self.events)


def bare_h2(settings: dict | None = None) -> h2.connection.H2Connection:
    """h2's server side as h2 ships it, past the preface and SETTINGS."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    if settings:
        conn.local_settings = h2.settings.Settings(client=False, initial_values=settings)
    conn.initiate_connection()
    conn.receive_data(opening())
    conn.data_to_send()
    return conn


def assert_stream_error(peer: Peer, bad: int, code: int = E.PROTOCOL_ERROR) -> None:
    assert peer.resets.get(bad) == code, (peer.resets, peer.status)
    assert bad not in peer.started() and bad not in peer.status
    assert peer.goaway is None and not peer.failed()
