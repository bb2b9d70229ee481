"""Misbehaving handlers and vanishing clients: on every runtime, over both protocols.

A handler's mistake costs its own request (a 500, or a reset once the
response has started), never the server, the connection's other streams, or
a socket. A client that goes away costs its connection and leaves no
traceback in the log: it is not a server error.
"""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest

from astra import HTTPError, Response

from .conftest import connect, read_until_closed, wait_for
from .h2frames import opening, request_frames


def hello(request):
    return Response("Hello World!")


def raising(exc: BaseException):
    def handler(request):
        if request.path == "/":
            return Response("Hello World!")
        raise exc
    return handler


@pytest.mark.parametrize("status", [599, 299, 451])
def test_http_error_with_any_final_status_is_answered(serve, client, status):
    handle = serve(raising(HTTPError(status, "as asked")))
    reply = client.get(handle.url + "/fail")
    assert reply.status_code == status
    assert "as asked" in reply.text
    assert client.get(handle.url).text == "Hello World!"


@pytest.mark.parametrize("status", [99, 100, 600, 1000, "404"])
def test_http_error_with_an_impossible_status_is_a_500(serve, client, status, caplog):
    handle = serve(raising(HTTPError(status, "nonsense")))
    with caplog.at_level(logging.ERROR, logger="astra"):
        assert client.get(handle.url + "/fail").status_code == 500
    assert client.get(handle.url).text == "Hello World!"


@pytest.mark.parametrize("exc", [SystemExit(3), BaseException("odd")], ids=["SystemExit", "BaseException"])
def test_handler_raising_base_exception_gets_500_and_server_goes_on(serve, client, exc, caplog):
    handle = serve(raising(exc))
    with caplog.at_level(logging.ERROR, logger="astra"):
        assert client.get(handle.url + "/fail").status_code == 500
        assert client.get(handle.url + "/fail").status_code == 500
    assert client.get(handle.url).text == "Hello World!"
    assert any("handler failed" in r.getMessage() for r in caplog.records)


def test_async_handler_raising_system_exit_gets_500(runtime, serve, client):
    if runtime not in ("asyncio", "trio"):
        pytest.skip("async handlers run on the event-loop runtimes")

    async def handler(request):
        if request.path == "/":
            return Response("Hello World!")
        raise SystemExit(1)

    handle = serve(handler)
    assert client.get(handle.url + "/fail").status_code == 500
    assert client.get(handle.url).text == "Hello World!"


def test_int_chunk_aborts_the_response_instead_of_sending_zero_bytes(serve, client):
    def handler(request):
        if request.path == "/":
            return Response("Hello World!")
        return Response(iter([b"first ", 1000, b"never"]))

    handle = serve(handler)
    with pytest.raises(httpx.HTTPError):
        client.get(handle.url + "/int").read()
    assert client.get(handle.url).text == "Hello World!"


class ClosesBadly:
    """A streamed body whose close() raises, once all of it has been sent."""

    def __init__(self, closed: list[str]) -> None:
        self.closed = closed

    def __iter__(self):
        yield b"all "
        yield b"of it"

    def close(self) -> None:
        import threading

        self.closed.append(threading.current_thread().name)
        raise RuntimeError("close() failed")


def test_a_body_whose_close_raises_is_still_sent_whole_and_the_connection_goes_on(serve, client, caplog):
    closed: list[str] = []
    handle = serve(lambda request: Response(ClosesBadly(closed)) if request.path == "/bad" else Response("ok"))
    with caplog.at_level(logging.ERROR, logger="astra"):
        assert client.get(handle.url + "/bad").text == "all of it"
        assert client.get(handle.url).text == "ok"  # the same connection, still serving
        # close() runs after the last byte is flushed, on the stream's thread: the client may
        # see the whole response a moment before the failure is logged.
        assert wait_for(lambda: "closing the response body failed" in caplog.text)
    assert len(closed) == 1


def test_int_chunk_never_reaches_the_wire_http1(serve):
    handle = serve(lambda request: Response(iter([b"first ", 1000, b"never"])))
    with connect(handle) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_closed(sock)
    assert b"first " in reply
    assert b"\0" not in reply and b"never" not in reply
    assert not reply.endswith(b"0\r\n\r\n")  # no last chunk: the client sees the response is cut short


@pytest.mark.parametrize("declared", ["-5", "1e3", " 12", "0x10", "٣"])
def test_invalid_declared_content_length_on_a_stream_is_a_500(serve, client, declared):
    def handler(request):
        if request.path == "/":
            return Response("Hello World!")
        return Response(iter([b"abc"]), headers={"content-length": declared})

    handle = serve(handler)
    reply = client.get(handle.url + "/bad")
    assert reply.status_code == 500
    assert client.get(handle.url).text == "Hello World!"


def test_stalled_body_gets_408_and_the_connection_closes(serve):
    handle = serve(lambda request: Response(request.read()), io_timeout=0.5)
    with connect(handle) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        reply = read_until_closed(sock, timeout=5)  # returns only once the server closes
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert time.monotonic() - started < 4


def _h2_request(path: str, end_stream: bool = True) -> bytes:
    """A preface, empty SETTINGS and one GET (or POST with more to come) as raw frames."""
    method = "GET" if end_stream else "POST"
    fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")]
    return opening() + request_frames(1, fields, end_stream)


VANISHING = {
    "h1 upload cut": b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000,
    "h1 chunked cut": b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    "h1 stream unread": b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    "h1 pipelined": b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "h2 stream unread": "h2:/stream",
    "h2 upload cut": "h2-upload:/upload",
}


@pytest.mark.parametrize("shape", list(VANISHING))
def test_clients_vanishing_leave_no_traceback(serve, shape, caplog, capfd):
    def handler(request):
        if request.path == "/upload":
            return Response(request.read())
        if request.path == "/stream":
            return Response(b"x" * 65536 for _ in range(64))
        return Response("Hello World!")

    data = VANISHING[shape]
    if isinstance(data, str):
        kind, path = data.split(":")
        data = _h2_request(path, end_stream=kind == "h2")
    handle = serve(handler, io_timeout=2)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sock = connect(handle)
            sock.sendall(data)
            time.sleep(0.1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # a reset, the rudest way to leave
        time.sleep(0.5)
        assert httpx.get(handle.url).text == "Hello World!"
    complaints = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not complaints, [r.getMessage() for r in complaints]
    assert "Traceback" not in capfd.readouterr().err
