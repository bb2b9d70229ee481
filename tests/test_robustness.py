"""Bad input, failing handlers, slow and vanishing clients: on every runtime.

The rule: a bad request gets a clear 4xx and its connection is closed, a
failing handler gets a 500, and either way everyone else keeps being served
and nothing leaks.
"""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from astra import Response

from .conftest import connect, parse_responses, read_until_closed, wait_for
from .test_protocol_http11 import BAD_REQUESTS


def hello(request):
    return Response("Hello World!")


@pytest.mark.parametrize("name", ["garbage", "no host", "cl and te", "bare lf", "obs fold", "two hosts"])
def test_malformed_request_gets_4xx_and_close_and_server_goes_on(serve, name, client):
    data, status = BAD_REQUESTS[name]
    handle = serve(hello)
    with connect(handle) as sock:
        sock.sendall(data)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply
    assert b"connection: close" in reply
    assert client.get(handle.url).text == "Hello World!"


def test_oversized_headers_get_431(serve, client):
    handle = serve(hello, max_header_bytes=4096)
    with connect(handle) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert client.get(handle.url).status_code == 200


def test_oversized_body_gets_413(serve, client):
    handle = serve(lambda request: Response(request.read()), max_body_bytes=1000)
    assert client.post(handle.url, content=b"x" * 1000).status_code == 200
    with connect(handle) as sock:  # declared too large: refused before reading
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 413 ")
    with connect(handle) as sock:  # chunked: refused when it crosses the limit
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 413 ")
    assert client.get(handle.url).status_code == 200


def test_raising_handler_gets_500_and_is_logged(serve, caplog, client):
    def handler(request):
        if request.path == "/boom":
            raise RuntimeError("boom")
        return Response("fine")

    handle = serve(handler)
    with caplog.at_level(logging.ERROR, logger="astra"):
        assert client.get(handle.url + "/boom").status_code == 500
        assert client.get(handle.url + "/ok").text == "fine"  # same connection still usable
    assert any("boom" in (r.exc_text or "") or "RuntimeError" in (r.exc_text or "") for r in caplog.records)


def test_handler_returning_nonsense_gets_500(serve, client):
    handle = serve(lambda request: "not a response")
    assert client.get(handle.url).status_code == 500


def test_invalid_response_header_gets_500_not_a_split_response(serve, client):
    handle = serve(lambda request: Response("x", headers={"x-a": "b\r\nset-cookie: evil=1"}))
    response = client.get(handle.url)
    assert response.status_code == 500 and "set-cookie" not in response.headers


def test_body_iterator_failing_mid_stream_truncates_and_closes(serve, client):
    def handler(request):
        def parts():
            yield b"first part;"
            raise RuntimeError("generator broke")
        return Response(parts() if request.path == "/fail" else "fine")

    handle = serve(handler)
    with connect(handle) as sock:
        sock.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 ") and b"first part;" in data
    assert not data.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees the failure
    assert client.get(handle.url).status_code == 200


def test_client_vanishing_mid_request_costs_only_its_connection(serve, client):
    handle = serve(lambda request: Response(request.read()))
    for _ in range(20):
        sock = connect(handle)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
        sock.close()
    sock = connect(handle)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a head, then gone
    sock.close()
    assert client.post(handle.url, content=b"still here").text == "still here"
    client.close()  # its keep-alive connection would count too
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)


def test_client_vanishing_mid_response_costs_only_its_connection(serve, client):
    def handler(request):
        return Response(iter([b"x" * 65536] * 200))  # ~13 MB, far more than socket buffers

    handle = serve(handler)
    for _ in range(5):
        sock = connect(handle)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # reset
    assert client.get(handle.url, timeout=10).status_code == 200
    client.close()  # its keep-alive connection would count too
    assert wait_for(lambda: handle.stats()["connections_open"] == 0, timeout=10)


def test_slowloris_head_is_cut_off_after_header_timeout(serve, client):
    handle = serve(hello, header_timeout=0.5)
    slow = connect(handle)
    slow.sendall(b"GET / HTTP/1.1\r\n")
    started = time.monotonic()
    # Meanwhile others are served normally.
    assert client.get(handle.url).status_code == 200
    for _ in range(3):
        time.sleep(0.1)
        try:
            slow.sendall(b"X-A: b\r\n")  # trickling headers does not extend the deadline
        except OSError:
            break
    reply = read_until_closed(slow, timeout=5)
    elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 ") or reply == b""
    assert elapsed < 2.0, elapsed
    slow.close()


def test_silent_connection_is_closed_after_header_timeout(serve):
    handle = serve(hello, header_timeout=0.3)
    with connect(handle) as sock:
        started = time.monotonic()
        read_until_closed(sock, timeout=5)
        assert time.monotonic() - started < 2.0


def test_idle_keep_alive_connection_is_closed_after_its_timeout(serve):
    handle = serve(hello, keep_alive_timeout=0.3)
    with connect(handle) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        data = read_until_closed(sock, timeout=5)
        assert time.monotonic() - started < 2.0
    (head, body), = parse_responses(data)
    assert body == b"Hello World!"


def test_connections_past_the_cap_get_503(serve):
    handle = serve(hello, max_connections=2)
    held = [connect(handle) for _ in range(2)]
    for sock in held:  # make sure both are accepted and counted
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
    with connect(handle) as extra:
        extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_closed(extra)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in reply
    for sock in held:
        sock.close()
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)
    assert httpx.get(handle.url).status_code == 200


def test_overload_past_the_queue_gets_503_with_retry_after(serve, client):
    """A pool runtime answers at once when its queue is full, instead of hanging."""
    handle = serve(lambda request: (time.sleep(0.5), Response("slow"))[1], max_workers=1, max_queued_requests=1)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool: every connection has its own thread")
    socks = [connect(handle) for _ in range(3)]
    for sock in socks:
        # Connection: close, so that a runtime whose worker keeps its connection (pinned) frees it.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.05)  # one running, one queued, one refused
    replies = [read_until_closed(sock, timeout=5) if i == 2 else sock.recv(1000) for i, sock in enumerate(socks)]
    assert replies[0].endswith(b"slow") and replies[1].endswith(b"slow")
    assert replies[2].startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in replies[2]
    for sock in socks:
        sock.close()
    assert handle.stats()["requests_overloaded"] == 1
    assert client.get(handle.url).text == "slow"


def _concurrent_gets(handle, n: int, path: str) -> None:
    """``n`` requests at once, each on its own connection, all answered "ok"."""
    socks = [connect(handle) for _ in range(n)]
    for sock in socks:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    for sock in socks:
        assert read_until_closed(sock).endswith(b"ok")
        sock.close()


def test_pool_grows_on_demand_and_idle_workers_exit(serve):
    handle = serve(lambda request: (time.sleep(0.2), Response("ok"))[1], worker_keep_alive=0.3)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool")
    assert handle.stats()["workers_alive"] == 0  # starts empty
    _concurrent_gets(handle, 5, "/")
    assert handle.stats()["workers_peak"] == 5
    assert wait_for(lambda: handle.stats()["workers_alive"] == 0, timeout=5)


def test_idle_workers_exit_under_a_light_steady_load(serve, client):
    """After a burst, a trickle of requests is served by the worker that went idle last, so the
    rest of the burst's workers stay asleep long enough to exit (not one woken at random each time)."""
    handle = serve(lambda request: (time.sleep(0.2 if request.path == "/burst" else 0), Response("ok"))[1],
                   worker_keep_alive=0.5)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool")
    _concurrent_gets(handle, 6, "/burst")
    assert handle.stats()["workers_peak"] == 6
    until = time.monotonic() + 2.0
    while time.monotonic() < until:  # one request every 50 ms: ten times faster than keep_alive
        assert client.get(handle.url + "/").text == "ok"
        time.sleep(0.05)
    assert handle.stats()["workers_alive"] <= 2, handle.stats()


def test_stalled_half_request_lines_do_not_affect_others(serve, client):
    handle = serve(hello, header_timeout=0.5)
    stalled = [connect(handle) for _ in range(50)]
    for sock in stalled:
        sock.sendall(b"GET /half-a-req")
    for _ in range(20):
        assert client.get(handle.url).status_code == 200
    started = time.monotonic()
    for sock in stalled:
        assert read_until_closed(sock, timeout=5).startswith(b"HTTP/1.1 408 ")
        sock.close()
    assert time.monotonic() - started < 3.0
    client.close()  # its keep-alive connection would count too
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)


def test_a_client_that_never_reads_its_response_holds_no_worker(serve, client):
    """The slow-read attack: a response the client will not read must not pin the only worker."""
    big = b"x" * (8 * 1024 * 1024)
    handle = serve(lambda request: Response(big if request.path == "/big" else b"ok"), max_workers=1)
    if handle.runtime.pins_connections:
        pytest.skip("a pinned worker belongs to its connection (the seeds' design): test_pinned.py bounds it")
    stalled = connect(handle)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.5)  # the handler has answered; the bytes wait for a reader that never comes
    assert client.get(handle.url + "/small").text == "ok"
    stalled.close()


def test_clients_trickling_small_bodies_hold_no_worker(serve, client):
    """The slow-body attack: POSTs whose bodies never finish must not occupy the pool's only worker."""
    handle = serve(lambda request: Response(request.read() or b"ok"), max_workers=1)
    trickling = [connect(handle) for _ in range(5)]
    for sock in trickling:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart")
    time.sleep(0.3)
    assert client.get(handle.url + "/").text == "ok"
    assert client.post(handle.url + "/", content=b"whole").text == "whole"
    for sock in trickling:
        sock.close()
