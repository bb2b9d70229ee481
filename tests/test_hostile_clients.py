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
from .h2frames import opening, ping, request_frames, serialized

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


# Overload is shed by how long the queue makes requests wait, not by its length -------

def _burst(handle, count: int) -> list[bytes]:
    """``count`` connections each send one request at once; the status lines they get."""
    import threading

    socks = [connect(handle, timeout=15) for _ in range(count)]
    lines: list[bytes] = []

    def one(sock: socket.socket) -> None:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data and (chunk := sock.recv(4096)):
                data += chunk
            lines.append(data.split(b"\r\n", 1)[0])
        except OSError as exc:
            lines.append(repr(exc).encode())
        finally:
            sock.close()

    threads = [threading.Thread(target=one, args=(sock,)) for sock in socks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return lines


def test_a_burst_of_quick_requests_queues_instead_of_being_refused(serve):
    """300 requests at once to 2 workers: each takes ~1 ms, so the queue drains in well under
    max_queue_wait and nobody gets a 503 (a cap by length at 100 would refuse two thirds)."""
    handle = serve(lambda request: (time.sleep(0.001), Response("ok"))[1], max_workers=2)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool: every connection has its own thread")
    lines = _burst(handle, 300)
    assert len(lines) == 300
    assert all(line.startswith(b"HTTP/1.1 200") for line in lines), [l for l in lines if b" 200" not in l][:5]


def test_a_pool_truly_behind_sheds_by_delay(serve):
    """Handlers take 0.3 s on 2 workers: 20 requests at once need 3 s, and they all queue (nobody
    has waited yet). Requests arriving 0.8 s later, behind ones queued for longer than
    max_queue_wait (0.5 s), get 503 + Retry-After at once; the queued ones are still served."""
    import threading

    handle = serve(lambda request: (time.sleep(0.3), Response("ok"))[1], max_workers=2, max_queue_wait=0.5)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool: every connection has its own thread")
    first: list[bytes] = []
    early = threading.Thread(target=lambda: first.extend(_burst(handle, 20)))
    early.start()
    time.sleep(0.8)
    asked = time.monotonic()
    late = _burst(handle, 10)
    answered = time.monotonic() - asked
    early.join(30)
    assert all(line.startswith(b"HTTP/1.1 200") for line in first), first
    assert all(line.startswith(b"HTTP/1.1 503") for line in late), late
    assert answered < 1.0, f"the refusals took {answered:.2f} s"
    assert handle.stats()["queue_shed"] == 10


# HTTP/2: a window opened a crack at a time does not hold a stream (or its worker) forever ---

def test_h2_window_opened_a_crack_at_a_time_resets_the_stream(serve):
    """A streamed 2 MiB response to a client whose windows open one byte at a time, with PINGs to
    look busy: the stream is reset once io_timeout + size / min_send_rate has passed, and the one
    worker it held serves others again."""
    from hyperframe.frame import PingFrame, SettingsFrame, WindowUpdateFrame

    def handler(request):
        if request.path == "/stream":
            return Response(b"x" * 16384 for _ in range(128))
        return Response("Hello World!")

    handle = serve(handler, max_workers=1, io_timeout=1, min_send_rate=1024 * 1024)
    sock = connect(handle, timeout=0.2)
    sock.sendall(opening({SettingsFrame.INITIAL_WINDOW_SIZE: 1})
                 + request_frames(1, [(":method", "GET"), (":path", "/stream"), (":scheme", "http"),
                                     (":authority", "x")]))
    started = time.monotonic()
    received = b""
    reset = False
    while time.monotonic() - started < 10 and not reset:
        try:
            sock.sendall(serialized(WindowUpdateFrame(1, window_increment=1), WindowUpdateFrame(0, window_increment=1),
                                    PingFrame(0, opaque_data=b"12345678")))
            received += sock.recv(65536)
        except (TimeoutError, socket.timeout):
            pass
        except OSError:
            reset = True  # the whole connection went: also a way to stop
        # RST_STREAM (type 3) on stream 1, or GOAWAY (type 7)
        reset = reset or b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" in received or b"\x07\x00\x00\x00\x00\x00" in received
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    sock.close()
    assert reset, "the stream was never reset"
    assert elapsed < 6, f"reset only after {elapsed:.1f} s"
    assert _hello_ok(handle)


def test_h2_response_parked_behind_a_shut_window_is_reset(serve):
    """A whole-in-memory response behind a window the client never opens (while it keeps the
    connection busy with PINGs, CVE-2019-9517): the stream is reset after io_timeout + size /
    min_send_rate, rather than its bytes sitting in the server for as long as the client likes."""
    from hyperframe.frame import SettingsFrame

    handle = serve(big_or_hello(b"x" * 65536), io_timeout=1, min_send_rate=1024 * 1024)
    sock = connect(handle, timeout=0.2)
    sock.sendall(opening({SettingsFrame.INITIAL_WINDOW_SIZE: 0})
                 + request_frames(1, [(":method", "GET"), (":path", "/big"), (":scheme", "http"),
                                     (":authority", "x")]))
    started = time.monotonic()
    received = b""
    while time.monotonic() - started < 8:
        try:
            sock.sendall(ping())
            received += sock.recv(65536)
        except (TimeoutError, socket.timeout):
            pass
        except OSError:
            break
        if b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" in received:  # RST_STREAM on stream 1
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    sock.close()
    assert b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" in received, "the parked response was never reset"
    assert elapsed < 5, f"reset only after {elapsed:.1f} s"
    assert _hello_ok(handle)


def test_responses_queued_for_a_client_that_leaves_are_freed_at_once(serve):
    """Twenty 1 MiB responses parked behind a shut HTTP/2 window, then the client closes: the
    server lets go of them when the connection closes, without waiting for the cycle collector
    (with it switched off here, a connection's reference cycles would keep them for good), and
    no idle worker thread keeps the last job it ran (a pool thread's first job used to live as
    long as the thread, in its Thread's arguments)."""
    import gc
    import tracemalloc

    from hyperframe.frame import SettingsFrame

    handle = serve(lambda request: Response(b"x" * MIB))
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sock = connect(handle)
        sock.sendall(opening({SettingsFrame.INITIAL_WINDOW_SIZE: 0})
                     + b"".join(request_frames(i, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                                   (":authority", "x")]) for i in range(1, 41, 2)))
        deadline = time.monotonic() + 10
        while tracemalloc.get_traced_memory()[0] - before < 20 * MIB and time.monotonic() < deadline:
            time.sleep(0.05)
        held = tracemalloc.get_traced_memory()[0] - before
        sock.close()
        deadline = time.monotonic() + 10  # the connection closes, its streams' threads (or tasks) finish
        while (left := _large_blocks(tracemalloc.take_snapshot())) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held >= 20 * MIB, f"only {held / MIB:.1f} MiB were ever queued"
    assert not left, f"{len(left)} responses of 1 MiB still held after the client left"


def _large_blocks(snapshot) -> list:
    """Memory blocks of 1 MiB or more allocated since tracing began (the responses, here)."""
    return [trace for trace in snapshot.traces if trace.size >= MIB]
