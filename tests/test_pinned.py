"""The seeds' design (``pinned``): a worker keeps its connection; newcomers queue for a worker.

The behavioural suite runs on ``pinned`` like on every runtime; these tests
check what is particular to it: the dispatch model, and the protections
added to it (a slow head costs no worker; past the queue, 503).
"""

from __future__ import annotations

import socket
import threading
import time

from astra import Response, Server

from .conftest import connect, parse_responses, read_until_closed, wait_for

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def start(handler, **options):
    options.setdefault("shutdown_timeout", 3.0)
    return Server("127.0.0.1", 0, runtime="pinned", **options).start(handler)


def read_response(sock) -> bytes:
    """One keep-alive response with a Content-Length body."""
    sock.settimeout(10)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_connection_keeps_its_worker_between_requests():
    threads = []

    def handler(request):
        threads.append(threading.get_ident())
        return Response("ok")

    with start(handler) as handle, connect(handle) as sock:
        for _ in range(3):
            sock.sendall(GET)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
    assert len(set(threads)) == 1  # the same worker, blocking on the socket in between


def test_a_newcomer_waits_for_the_worker_an_idle_connection_holds():
    with start(lambda request: Response("ok"), max_workers=1, keep_alive_timeout=1.0) as handle:
        with connect(handle) as first, connect(handle) as second:
            first.sendall(GET)
            assert read_response(first).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            second.sendall(GET)  # the only worker blocks on `first` until it idles out
            assert read_response(second).startswith(b"HTTP/1.1 200")
            waited = time.monotonic() - started
            assert read_until_closed(first) == b""  # closed by the idle timeout
    assert waited >= 0.7, f"answered after {waited:.2f} s: the idle connection did not hold its worker"


def test_past_the_queue_a_newcomer_gets_503():
    release = threading.Event()

    def handler(request):
        release.wait(10)
        return Response("ok")

    with start(handler, max_workers=1, max_queued_requests=1) as handle:
        try:
            with connect(handle) as busy, connect(handle) as queued, connect(handle) as refused:
                busy.sendall(GET)
                assert wait_for(lambda: handle.stats()["workers_alive"] == 1)
                queued.sendall(GET)
                assert wait_for(lambda: handle.stats()["queue_depth"] == 1)
                refused.sendall(GET)
                (head, _), = parse_responses(read_until_closed(refused))
                assert head.status_code == 503
                assert handle.stats()["requests_overloaded"] == 1
        finally:
            release.set()


def test_a_slow_head_costs_no_worker():
    with start(lambda request: Response("ok"), max_workers=1, header_timeout=5.0) as handle:
        with connect(handle) as slow, connect(handle) as visitor:
            slow.sendall(b"GET / HTTP/1.1\r\nHo")  # and nothing more for now
            time.sleep(0.3)
            visitor.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            (head, body), = parse_responses(read_until_closed(visitor))
            assert head.status_code == 200 and body == b"ok"
            # The visitor's worker lets go just after the client sees the close; the slow one never had one.
            assert wait_for(lambda: handle.stats()["connections_pinned"] == 0)
            assert handle.stats()["connections_open"] == 1  # the slow one, still with the reactor


def test_a_head_that_never_completes_gets_408_from_the_reactor():
    with start(lambda request: Response("ok"), header_timeout=0.5) as handle:
        with connect(handle) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHo")
            (head, _), = parse_responses(read_until_closed(slow))
            assert head.status_code == 408
            assert handle.stats()["workers_started"] == 0


def test_a_client_that_never_reads_holds_its_worker_only_until_io_timeout():
    """The slow-read attack takes a pinned worker (the seeds' design), but not for longer than io_timeout."""
    big = b"x" * (8 * 1024 * 1024)
    with start(lambda request: Response(big if request.path == "/big" else b"ok"), max_workers=1,
               io_timeout=1.0) as handle:
        with connect(handle) as stalled, connect(handle) as visitor:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            visitor.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            (head, body), = parse_responses(read_until_closed(visitor, timeout=10))
            waited = time.monotonic() - started
    assert head.status_code == 200 and body == b"ok"
    assert 0.3 <= waited < 5, f"the visitor waited {waited:.2f} s"


def test_a_trickled_small_first_body_costs_no_worker():
    """The reactor gathers a new connection's small body before a worker is involved."""
    with start(lambda request: Response(request.read() or b"ok"), max_workers=1) as handle:
        trickling = [connect(handle) for _ in range(3)]
        for sock in trickling:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart")
        time.sleep(0.3)
        with connect(handle) as visitor:
            visitor.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwhole")
            (head, body), = parse_responses(read_until_closed(visitor))
        assert head.status_code == 200 and body == b"whole"
        for sock in trickling:
            sock.close()
