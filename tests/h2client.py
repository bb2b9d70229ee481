"""A small HTTP/2 client for tests that need to see frames: h2's client side on a real socket."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events


class H2Client:
    """One prior-knowledge HTTP/2 connection; responses collected per stream.

    Received DATA is acknowledged as it is read unless ``auto_ack`` is off,
    so flow control behaves as in a real client that consumes its responses.
    """

    def __init__(self, address, settings: dict | None = None, auto_ack: bool = True) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if settings:
            self.conn.local_settings.update(settings)
            self.conn.local_settings.acknowledge()
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.events: list = []
        self.status: dict[int, int] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: dict[int, float] = {}  # stream id -> monotonic time its response ended
        self.resets: dict[int, int] = {}  # stream id -> error code
        self.goaway = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", body: bytes | None = None, headers=()) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", b"http"),
                  (b":authority", b"test"), *headers]
        self.conn.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def read(self, until, timeout: float = 10.0) -> None:
        """Process frames until ``until(self)`` is true (or the connection closes)."""
        deadline = time.monotonic() + timeout
        while not until(self):
            if self.closed:
                return
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("the condition was not met in time")
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                continue
            if not data:
                self.closed = True
                return
            for event in self.conn.receive_data(data):
                self._record(event)
            try:
                self.flush()
            except OSError:
                self.closed = True

    def _record(self, event) -> None:
        self.events.append(event)
        if isinstance(event, h2.events.ResponseReceived):
            self.status[event.stream_id] = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended[event.stream_id] = time.monotonic()
        elif isinstance(event, h2.events.StreamReset):
            self.resets[event.stream_id] = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def close(self) -> None:
        self.sock.close()
