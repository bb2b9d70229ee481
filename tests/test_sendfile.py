"""Files sent with ``sendfile``: on every runtime over HTTP/1.1, and read and framed over HTTP/2.

A file body on HTTP/1.1 under Content-Length framing goes from the page
cache to the socket in the kernel (the protocol's ``raw_body``, each
transport's ``send_file``). These tests prove it happens with a file that
refuses to be read from Python, and then try what can go wrong: a large
file, an offset, HEAD, a client that stops reading, a file cut short while
it is being sent, keep-alive and pipelining after a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time

import httpx
import pytest

from astra import Response

from .conftest import connect, parse_responses, read_until_closed

pytestmark = pytest.mark.timeout(60)


class UnreadableFile(io.FileIO):
    """A real file that fails if Python reads it: only ``sendfile`` can send it."""

    def read(self, size=-1):
        raise AssertionError("the file was read through Python")

    readinto = readall = read


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(8 * 1024 * 1024 + 123))
    return path


def test_a_file_goes_out_by_sendfile_on_http11(serve, big_file):
    handle = serve(lambda request: Response(UnreadableFile(big_file)))
    with httpx.Client(timeout=30) as client:
        for _ in range(2):  # and the connection is kept alive after it
            response = client.get(handle.url)
            assert response.status_code == 200
            assert response.headers["content-length"] == str(big_file.stat().st_size)
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(big_file.read_bytes()).digest()


def test_a_file_is_read_and_framed_on_http2(serve, big_file):
    handle = serve(lambda request: Response(open(big_file, "rb")))
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        response = client.get(handle.url)
    assert response.http_version == "HTTP/2"
    assert response.content == big_file.read_bytes()


def test_a_file_is_sent_from_its_position(serve, tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"skip-me|" + b"the rest" * 1000)

    def handler(request):
        f = open(path, "rb")
        f.read(8)
        return Response(f)

    handle = serve(handler)
    response = httpx.get(handle.url, timeout=10)
    assert response.headers["content-length"] == str(8 * 1000)
    assert response.content == b"the rest" * 1000


def test_head_of_a_file_sends_no_body_and_keeps_the_connection(serve, big_file):
    handle = serve(lambda request: Response(open(big_file, "rb")))
    with connect(handle) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_closed(sock, timeout=20)
    (head, body), (get, got) = parse_responses(data, ["HEAD", "GET"])
    assert body == b"" and dict(head.headers)[b"content-length"] == str(big_file.stat().st_size).encode()
    assert got == big_file.read_bytes()


def test_pipelined_request_after_a_file_is_answered_in_order(serve, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"F" * 300_000)

    def handler(request):
        if request.path == "/file":
            return Response(UnreadableFile(path))
        return Response("after")

    handle = serve(handler)
    with connect(handle) as sock:
        sock.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_closed(sock, timeout=20)
    (first, body), (second, text) = parse_responses(data, ["GET", "GET"])
    assert body == b"F" * 300_000 and text == b"after"


def test_a_client_that_stops_reading_a_file_is_cut_off_and_others_are_served(serve, tmp_path):
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: no disk, but far more than the socket buffers hold
    handle = serve(lambda request: Response(open(path, "rb")) if request.path == "/huge" else Response("ok"),
                   io_timeout=0.5, min_send_rate=1024 * 1024)
    stalled = connect(handle, timeout=10)
    stalled.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert httpx.get(handle.url + "/ok", timeout=10).text == "ok"  # served meanwhile
        time.sleep(2.5)  # well past io_timeout without progress
        # Drain what the kernels hold: the server must have given up and closed.
        received = len(read_until_closed(stalled, timeout=20))
        assert received < 256 * 1024 * 1024
    finally:
        stalled.close()
    assert httpx.get(handle.url + "/ok", timeout=10).text == "ok"


def test_a_file_cut_short_while_sent_ends_the_connection_not_the_server(serve, tmp_path):
    path = tmp_path / "shrinks.bin"
    size = 64 * 1024 * 1024  # more than the kernel buffers between us hold
    with open(path, "wb") as f:
        f.truncate(size)
    handle = serve(lambda request: Response(open(path, "rb")) if request.path == "/f" else Response("ok"))
    with connect(handle, timeout=10) as sock:
        sock.sendall(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(1024)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)  # the buffers fill; the server waits for room
        os.truncate(path, 0)  # the rest of the file is gone mid-response
        received = len(first) + len(read_until_closed(sock, timeout=30))
    assert received < size  # cut off: the client can tell the body is short
    assert httpx.get(handle.url + "/ok", timeout=10).text == "ok"
