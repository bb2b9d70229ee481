"""Clients that read too slowly or not at all, on every runtime.

The rules: what the server holds for one connection is bounded (one
response's worth of output, not one per pipelined request), and a client
that reads so slowly that a response would take forever is cut off: sending
n bytes may take ``io_timeout + n / min_send_rate`` seconds, no more.
Everyone else keeps being served meanwhile.
"""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from astra import Response

from .conftest import connect

MIB = 1024 * 1024


def big_or_hello(big: bytes):
    def handler(request):
        if request.path == "/big":
            return Response(big)
        return Response("Hello World!")
    return handler


def _hello_ok(handle) -> bool:
    with connect(handle, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"Hello World!")


def _small_receive_buffer_connection(handle) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10)
    sock.connect(handle.address)
    return sock


def test_pipelined_slow_reader_holds_one_response_not_all(serve):
    """200 pipelined requests for 1 MiB each, then nothing read: the server must not queue 200 MiB."""
    handle = serve(big_or_hello(b"x" * MIB), io_timeout=3)
    process = psutil.Process()
    before = process.memory_info().rss
    sock = _small_receive_buffer_connection(handle)
    try:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
        time.sleep(1.5)  # long enough for an unbounded server to answer every request into a buffer
        grown = process.memory_info().rss - before
        assert _hello_ok(handle)
    finally:
        sock.close()
    assert grown < 40 * MIB, f"RSS grew by {grown / MIB:.0f} MiB for one connection that does not read"


def test_reader_that_trickles_is_cut_off_at_the_rate_deadline(serve):
    """32 MiB at a 16 MiB/s floor with io_timeout 1 s may take ~3 s. A client reading ~1.6 MB/s
    (never silent for io_timeout) would need 20 s: it gets a part, then the connection ends.
    (Loopback's kernel buffers hold a few MiB, which the client still drains after the cut.)"""
    size = 32 * MIB
    handle = serve(big_or_hello(b"x" * size), io_timeout=1, min_send_rate=16 * MIB)
    sock = _small_receive_buffer_connection(handle)
    received = 0
    started = time.monotonic()
    try:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        while time.monotonic() - started < 20:
            try:
                chunk = sock.recv(16384)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += len(chunk)
            time.sleep(0.01)  # ~1.6 MB/s at most
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert received < size / 2, f"the trickling reader got {received / MIB:.1f} MiB"
    assert elapsed < 12, f"cut off only after {elapsed:.1f} s"
    assert _hello_ok(handle)


def test_fast_reader_of_a_large_response_is_not_cut_off(serve):
    """The rate floor must not hurt a client that reads at a normal speed."""
    size = 8 * MIB
    handle = serve(big_or_hello(b"x" * size), io_timeout=1, min_send_rate=1 * MIB)
    with connect(handle, timeout=10) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    assert received > size


# Slow uploads: no worker is held hostage, and a body's total time is bounded --------

def echo_or_hello(request):
    if request.method == "POST":
        return Response(request.read())
    return Response("Hello World!")


def _trickle(sock: socket.socket, pieces: list[bytes], gap: float, stop: float) -> bytes:
    """Send ``pieces`` ``gap`` seconds apart until ``stop`` (monotonic); return what the server said."""
    sock.settimeout(gap)
    reply = b""
    for piece in pieces:
        if time.monotonic() > stop:
            break
        try:
            sock.sendall(piece)
        except OSError:
            break
        try:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        except (TimeoutError, socket.timeout):
            pass
        except OSError:
            break
    return reply


HOSTAGE_SHAPES = {
    "chunked trickle": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\na\r\n"),
    "small body trickle": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"a"),
    "100-continue, no body": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
                              b""),
}


@pytest.mark.parametrize("shape", list(HOSTAGE_SHAPES))
def test_slow_uploads_hold_no_worker_and_end_in_408(serve, shape):
    """Four trickling clients against two workers: others are served at once; each trickler gets a
    408 once its body is overdue (io_timeout + size / min_receive_rate), though it never goes silent."""
    import threading

    head, piece = HOSTAGE_SHAPES[shape]
    handle = serve(echo_or_hello, max_workers=2, io_timeout=1.5, min_receive_rate=1024)
    replies: list[bytes] = []
    sockets = [connect(handle) for _ in range(4)]
    started = time.monotonic()

    def attack(sock: socket.socket) -> None:
        sock.sendall(head)
        replies.append(_trickle(sock, [piece] * 100, 0.25, started + 8))

    attackers = [threading.Thread(target=attack, args=(sock,)) for sock in sockets]
    for thread in attackers:
        thread.start()
    time.sleep(0.5)
    served = time.monotonic()
    assert _hello_ok(handle)
    assert time.monotonic() - served < 1.0, "a normal client waited behind the tricklers"
    for thread in attackers:
        thread.join(10)
    for sock in sockets:
        sock.close()
    elapsed = time.monotonic() - started
    assert len(replies) == 4 and all(b"408" in reply.split(b"\r\n", 1)[0] or b" 408 " in reply for reply in replies), replies
    assert elapsed < 8
    assert _hello_ok(handle)
