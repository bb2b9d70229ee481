"""HTTP/2 from a hostile client, over real sockets, on every runtime.

A raw socket writes hand-built frames (the builders of
:mod:`tests.h2frames`) and reads the server's frames back. Each test
checks the outcome the protocol layer promises (a reset stream, a 4xx, a
GOAWAY), that the other streams of the connection were served where RFC 9113
says they should be, and that a fresh client is served right after.
"""

from __future__ import annotations

import socket
import time

import h2.errors
import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, PingFrame

from astra import Response

from .conftest import connect, read_until_closed
from .h2client import H2Client
from .h2frames import (
    GET,
    POST,
    FrameReader,
    continuation_flood,
    data_frame,
    headers_frames,
    opening,
    ping,
    request_frames,
    settings_header,
)
from .test_protocol_h2_hostile import MALFORMED

E = h2.errors.ErrorCodes
FAST = dict(header_timeout=2.0, io_timeout=2.0, keep_alive_timeout=3.0)


class RawClient(FrameReader):
    """A socket that speaks HTTP/2 in hand-built frames and records what comes back."""

    def __init__(self, handle) -> None:
        super().__init__()
        self.sock = connect(handle, timeout=2.0)
        self.encoder = Encoder()
        self.closed = False
        self.send(opening())

    def send(self, data: bytes) -> bool:
        """Write ``data``; False once the server has hung up."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def request(self, stream_id: int, fields=GET, end_stream: bool = True) -> None:
        self.send(request_frames(stream_id, fields, end_stream, self.encoder))

    def read_until(self, done, timeout: float = 2.0) -> bool:
        """Read frames until ``done(self)`` holds, the server hangs up, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not done(self) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.feed(data)
        return done(self)

    def close(self) -> None:
        self.sock.close()


def app(request):
    if request.path == "/sleep":
        time.sleep(float(request.query_params["s"][0]))
    elif request.path == "/scheme":
        return Response(request.connection.scheme)
    elif request.method == "POST":
        return Response(request.read())
    return Response("ok " + request.path)


def recording(calls: list):
    def handler(request):
        calls.append(request.method)
        return app(request)
    return handler


def fresh_client_is_served(handle) -> None:
    client = H2Client(handle.address)
    stream = client.request("/fresh")
    client.read(lambda c: stream in c.ended, timeout=3)
    assert client.bodies[stream] == b"ok /fresh"
    client.close()


def sleeping(seconds: float):
    return [GET[0], (b":path", b"/sleep?s=%g" % seconds), *GET[2:]]


def after(path: bytes = b"/after"):
    return [GET[0], (b":path", path), *GET[2:]]


SOCKET_SHAPES = ["uppercase name", "non-ASCII :method", ":path without a slash", ":path with a space",
                 ":authority with userinfo", "connection", "pseudo-header after a regular field"]


@pytest.mark.parametrize("shape", SOCKET_SHAPES)
def test_a_malformed_request_resets_only_its_stream(serve, shape):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    client.request(1, sleeping(0.3))  # in flight while the bad one arrives
    client.request(3, MALFORMED[shape])
    client.request(5, after())
    assert client.read_until(lambda c: {1, 5} <= c.ended and 3 in c.resets)
    assert client.resets[3] == E.PROTOCOL_ERROR and 3 not in client.status
    assert client.status[1] == client.status[5] == 200 and client.bodies[5] == b"ok /after"
    assert client.goaway is None
    client.close()
    fresh_client_is_served(handle)


def test_connect_gets_405_and_no_handler_runs(serve):
    calls: list = []
    handle = serve(recording(calls), **FAST)
    client = RawClient(handle)
    client.request(1, [(b":method", b"CONNECT"), (b":authority", b"internal:22")], end_stream=False)
    client.send(data_frame(1, b"SSH-2.0-probe\r\n"))
    client.request(3, after())
    assert client.read_until(lambda c: {1, 3} <= c.ended)
    assert client.status[1] == 405 and client.headers[1][b"allow"] == b""
    assert client.status[3] == 200 and calls == ["GET"] and client.goaway is None
    client.close()
    fresh_client_is_served(handle)


def test_the_scheme_a_handler_sees_is_the_connections(serve):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    client.request(1, [GET[0], (b":path", b"/scheme"), (b":scheme", b"https"), GET[3]])
    assert client.read_until(lambda c: 1 in c.ended)
    assert client.bodies[1] == b"http"
    client.close()


def test_header_fields_past_the_limit_get_431_on_their_stream(serve):
    handle = serve(app, max_header_bytes=4096, **FAST)
    client = RawClient(handle)
    client.request(1, sleeping(0.2))
    client.send(headers_frames(3, client.encoder.encode(GET + [(b"x-big", b"a" * 6000)], huffman=False)))
    client.request(5, after())
    assert client.read_until(lambda c: {1, 3, 5} <= c.ended)
    assert client.status == {1: 200, 3: 431, 5: 200} and client.goaway is None
    client.close()
    fresh_client_is_served(handle)


def test_malformed_trailers_reset_only_their_stream(serve):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    client.request(1, POST, end_stream=False)
    client.send(data_frame(1, b"part"))
    client.send(headers_frames(1, client.encoder.encode([(b":path", b"/smuggled")])))
    client.request(3, after())
    assert client.read_until(lambda c: 3 in c.ended and 1 in c.resets)
    assert client.resets[1] == E.PROTOCOL_ERROR and client.status[3] == 200 and client.goaway is None
    client.close()
    fresh_client_is_served(handle)


def test_one_stream_past_the_limit_is_refused_and_the_others_finish(serve):
    handle = serve(app, max_concurrent_streams=2, **FAST)
    client = RawClient(handle)
    client.request(1, sleeping(0.4))
    client.request(3, sleeping(0.4))
    client.request(5, after())
    assert client.read_until(lambda c: {1, 3} <= c.ended and 5 in c.resets)
    assert client.resets[5] == E.REFUSED_STREAM
    assert client.status[1] == client.status[3] == 200 and client.goaway is None
    client.request(7, after())  # the slots are free again
    assert client.read_until(lambda c: 7 in c.ended) and client.status[7] == 200
    client.close()


def test_a_continuation_flood_is_cut_off_before_it_is_buffered(serve):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    client.request(1, sleeping(0.2))
    client.send(continuation_flood(0, stream_id=3))  # HEADERS, no END_HEADERS
    sent = 0
    for _ in range(64):  # up to 1 MiB, what h2 alone would hold
        if not client.send(ContinuationFrame(3, data=b"\x00" * 16384).serialize()):
            break
        sent += 1
        if client.read_until(lambda c: c.goaway is not None, timeout=0.05):
            break
    client.read_until(lambda c: c.goaway is not None, timeout=2)
    assert client.goaway is not None and client.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert sent <= 4  # refused at 32 KiB (twice max_header_bytes), not after 1 MiB
    assert client.read_until(lambda c: c.closed, timeout=3)
    client.close()
    fresh_client_is_served(handle)


def test_a_frame_announced_huge_is_refused_at_its_header(serve):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    started = time.monotonic()
    client.send(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"\x00" * 1000)  # DATA, 16 MiB - 1 announced
    assert client.read_until(lambda c: c.goaway is not None)
    assert client.goaway.error_code == E.FRAME_SIZE_ERROR and time.monotonic() - started < 1.5
    client.close()
    fresh_client_is_served(handle)


def test_a_ping_flood_from_a_client_that_never_reads_gets_goaway(serve):
    handle = serve(app, **FAST)
    client = RawClient(handle)
    for _ in range(15):  # 3000 PINGs, 51 KB, without reading a byte
        if not client.send(ping() * 200):
            break
    client.read_until(lambda c: c.goaway is not None, timeout=3)
    # What matters is that the replies are bounded. The server either reads the whole flood and
    # cuts it at the budget with GOAWAY, or its queued replies reach the output bound first and it
    # stops reading the client (to be dropped by the send deadline): which one comes first depends
    # on the kernel's socket buffers.
    if client.goaway is not None:
        assert client.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert client.count(PingFrame) <= 1000  # the replies stopped at the budget
    client.close()
    fresh_client_is_served(handle)


@pytest.mark.parametrize("setting", [(0x2, 2), (0x4, 2**31), (0x5, 100)])
def test_an_h2c_upgrade_with_out_of_range_settings_is_answered_over_http1(serve, setting):
    handle = serve(app, **FAST)
    with connect(handle) as sock:
        sock.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: " + settings_header(setting) + b"\r\n\r\n")
        reply = read_until_closed(sock, timeout=3)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok /up"), reply
    fresh_client_is_served(handle)
