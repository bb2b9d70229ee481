"""A shared worker pool that hostile clients cannot take for themselves.

Two ways a few clients used to hold every worker of a pool runtime while
everyone else got 503s: trickling large uploads (each handler waits for
bytes that come at a crawl), and the HTTP/2 rapid reset (each stream opened
and reset at once still ran its handler). A pool now gives handlers that
wait on a client's body a share of its workers, and skips the handlers of
streams reset before they started.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hpack import Encoder
from hyperframe.frame import HeadersFrame, RstStreamFrame, SettingsFrame

from astra import Response

from .conftest import connect

MIB = 1024 * 1024


def test_clients_trickling_large_uploads_take_only_a_share_of_the_pool(serve, client):
    """Six uploads declared 1 MiB, sent a few bytes at a time, against 4 workers: at most half of
    the pool waits on them, and the others keep serving everyone else."""
    def handler(request):
        if request.path == "/upload":
            return Response(f"{len(request.read())} bytes")
        return Response("ok")

    handle = serve(handler, max_workers=4)
    uploads = _trickled_uploads(handle, 6, "/upload")
    try:
        time.sleep(0.3)
        for _ in range(10):
            assert client.get(handle.url + "/").text == "ok"
        stats = handle.stats()
        assert stats["waiting_on_clients"] == 2, stats
        assert stats["held_for_clients"] == 4, stats
    finally:
        for sock in uploads:
            sock.close()


def test_an_upload_held_back_is_served_once_a_share_frees(serve):
    """Three whole uploads behind one share (max_workers=2): each waits its turn and is answered."""
    handle = serve(lambda request: Response(f"{len(request.read())} bytes"), max_workers=2, max_queue_wait=5)
    if not handle.runtime.uses_worker_pool or handle.runtime.pins_connections:
        pytest.skip("no shared pool of request workers")
    body = b"y" * (200 * 1024)
    socks = [connect(handle, timeout=10) for _ in range(3)]
    for sock in socks:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    replies = []

    def upload(sock):
        sock.sendall(body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        replies.append(data)

    threads = [threading.Thread(target=upload, args=(sock,)) for sock in socks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    for sock in socks:
        sock.close()
    assert sorted(reply.split(b"\r\n")[0] for reply in replies) == [b"HTTP/1.1 200 OK"] * 3
    assert all(reply.endswith(b"%d bytes" % len(body)) for reply in replies)


def test_h2_streams_reset_before_their_handler_starts_never_run_it(serve, client):
    """Rapid reset (CVE-2023-44487): 300 streams opened and reset at once, each asking for a
    handler that blocks 100 ms, on 2 workers. The handlers of streams already reset when a worker
    comes free are skipped, so the pool is free again in a moment, not after 15 s of sleeping."""
    ran = []

    def handler(request):
        if request.path == "/sleep":
            ran.append(1)
            time.sleep(0.1)
        return Response("ok")

    handle = serve(handler, max_workers=2, max_queue_wait=30)
    encoder = Encoder()
    frames = [SettingsFrame(0)]
    for stream_id in range(1, 600, 2):
        headers = HeadersFrame(stream_id, encoder.encode(
            [(":method", "GET"), (":path", "/sleep"), (":scheme", "http"), (":authority", "x")]))
        headers.flags.add("END_HEADERS")
        headers.flags.add("END_STREAM")
        frames += [headers, RstStreamFrame(stream_id, error_code=8)]
    sock = connect(handle)
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"".join(frame.serialize() for frame in frames))
        time.sleep(0.5)
        assert client.get(handle.url + "/").text == "ok"
    finally:
        _close(sock)
    assert len(ran) < 30, f"{len(ran)} of 300 reset streams still ran their handler"


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def test_uploads_whose_connection_ended_while_held_back_do_not_stall_the_server(serve, client):
    """Trickled uploads on 2 workers (one share) with a 1 s body deadline: the uploads held back
    start only after their connections have timed out and closed. Their handlers' body reads
    must fail at once (on an event loop such a read used to spin on the closed socket, holding
    the loop for good), and everyone else must still be served."""
    handle = serve(lambda request: Response(f"{len(request.read())} bytes"), max_workers=2, io_timeout=1,
                   max_queue_wait=10)
    uploads = _trickled_uploads(handle, 4, "/")
    try:
        time.sleep(3.5)  # every deadline has passed; the held-back handlers have started and failed
        assert client.get(handle.url + "/").text == "0 bytes"
        deadline = time.monotonic() + 10
        while handle.stats()["waiting_on_clients"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert handle.stats()["waiting_on_clients"] == 0, handle.stats()
    finally:
        for sock in uploads:
            _close(sock)


def _trickled_uploads(handle, n: int, path: str) -> list[socket.socket]:
    """``n`` connections, each having declared a 1 MiB upload to ``path`` and sent 4 bytes of it
    (skips the test on runtimes without a shared pool of request workers)."""
    if not handle.runtime.uses_worker_pool or handle.runtime.pins_connections:
        pytest.skip("no shared pool of request workers")
    uploads = [connect(handle) for _ in range(n)]
    for sock in uploads:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\npart" % (path.encode(), MIB))
    return uploads
