"""ASGI apps on the event-loop runtimes (``astra.asgi``), over HTTP/1.1 and HTTP/2.

The apps (``asgi_apps.py``) are written against the spec; the clients are
httpx and raw sockets; Starlette and FastAPI run as themselves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import anyio
import httpx
import pytest

from astra import ASGIHandler
from astra.asgi import LifespanFailed, LifespanMode
from astra.registry import load_runtime

from . import asgi_apps
from .conftest import PROTOCOLS_AND_TLS, RUNTIMES_UNDER_TEST, connect, read_until_closed, wait_for


@pytest.fixture(params=PROTOCOLS_AND_TLS)
def protocol(request):
    """This module's client tests run over TLS too (see conftest)."""
    return request.param


EVENT_LOOP_RUNTIMES = [param for param in RUNTIMES_UNDER_TEST if load_runtime(param.values[0]).supports_async]
MiB = 1024 * 1024


@pytest.fixture(params=EVENT_LOOP_RUNTIMES)
def runtime(request) -> str:
    """Overrides conftest's: ASGI apps need an event loop."""
    return request.param


# The scope -------------------------------------------------------------------------------

def test_the_scope_describes_the_request(serve, client, protocol):
    handle = serve(ASGIHandler(asgi_apps.scope_echo, root_path="/api"))
    url = handle.url + "/a%20b/c%2Fd?x=1&y=%20"
    scope = client.get(url, headers={"X-Custom": "Value", "x-twice": "1"}).json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == ("1.1" if protocol == "h1" else "2")
    assert (scope["method"], scope["scheme"]) == ("GET", "https" if protocol.tls else "http")
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/a b/c/d"  # percent-decoded, the mount point in front
    assert scope["raw_path"] == "/api/a%20b/c%2Fd"  # as sent, without the query
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["server"] == list(handle.address)
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    headers = scope["headers"]
    assert ["x-custom", "Value"] in headers and ["x-twice", "1"] in headers  # names lower-case, values as sent
    assert ["host", f"127.0.0.1:{handle.address[1]}"] in headers  # on HTTP/2 from :authority
    assert scope["state"] == {"token": "from-lifespan"}
    under = client.get(handle.url + "/api/x%20y").json()  # a proxy that kept the prefix: passed as it is
    assert (under["path"], under["raw_path"]) == ("/api/x y", "/api/x%20y")
    # Each request's state is a copy: one request writing to it does not reach the next.
    assert client.get(handle.url + "/mutate").json()["state"] == {"token": "mutated"}
    assert client.get(handle.url + "/").json()["state"] == {"token": "from-lifespan"}


# Bodies both ways --------------------------------------------------------------------------

def test_bodies_stream_both_ways(serve, client):
    handle = serve(ASGIHandler(asgi_apps.body_and_stream))
    payload = os.urandom(5 * 100_000)

    def pieces():
        for i in range(5):
            yield payload[i * 100_000:(i + 1) * 100_000]

    # A streamed request body (chunked on HTTP/1.1), read through receive().
    response = client.post(handle.url + "/?3", content=pieces(), timeout=30)
    assert response.status_code == 201
    assert response.content == b"500000:" + payload[:16] + b";chunk-0;chunk-1;chunk-2"
    # A body of known length ends with its last bytes: one event, more_body False.
    response = client.post(handle.url + "/?0", content=b"x" * 100)
    assert (response.content, response.headers["x-events"]) == (b"100:" + b"x" * 16, "1")
    # No body at all: one empty event.
    response = client.get(handle.url + "/?2")
    assert (response.content, response.headers["x-events"]) == (b"0:;chunk-0;chunk-1", "1")
    # The body read after the response has started.
    assert client.post(handle.url + "/late-read", content=pieces(), timeout=30).content == b"length 500000"
    # An empty body to HEAD keeps the app's Content-Length; GET gets the body.
    head = client.head(handle.url + "/head")
    assert (head.headers["content-length"], head.content) == ("1234", b"")
    assert client.get(handle.url + "/head").content == b"h" * 1234


def test_a_client_that_does_not_read_holds_the_app_back(serve):
    """Backpressure: send() waits for a client that reads nothing; memory stays flat; its leaving ends the app."""
    app, record = asgi_apps.flood(total=64 * MiB)
    handle = serve(ASGIHandler(app))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connecting: a small window
    sock.connect(handle.address)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: record["sent"] > 0)
        last, steady_since = -1, time.monotonic()
        while time.monotonic() - steady_since < 0.6:  # until the app has been held back for a while
            if record["sent"] != last:
                last, steady_since = record["sent"], time.monotonic()
            time.sleep(0.1)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert record["outcome"] is None
    assert record["sent"] < 24 * MiB, record  # what the kernel buffers hold, and a chunk or two
    assert peak < 16 * MiB, peak
    sock.close()  # unread bytes: a reset
    assert wait_for(lambda: record["outcome"] is not None, timeout=10)
    assert record["outcome"] == "ClientGone"  # an OSError, as the spec asks


def test_the_app_hears_the_client_leave_mid_response(serve, client):
    app, record = asgi_apps.watcher()
    handle = serve(ASGIHandler(app))
    with client.stream("GET", handle.url) as response:
        assert next(response.iter_raw()).startswith(b"tick")
    client.close()  # HTTP/2 too: the whole connection goes
    assert wait_for(lambda: record["done"], timeout=10), record
    assert record["disconnect"] is True
    assert record["send_error"] == "ClientGone"


# Apps that fail, clients that misbehave ------------------------------------------------------

def test_failing_apps_cost_their_own_request(serve, client, protocol, caplog):
    handle = serve(ASGIHandler(asgi_apps.misbehaving))
    url = handle.url
    assert client.get(url + "/ok").text == "ok"
    for path in ("/raise-before-start", "/no-start", "/header-injection", "/status-not-int", "/body-before-start"):
        response = client.get(url + path)
        assert response.status_code == 500, path
        assert "x-injected" not in response.headers
    for path in ("/raise-mid-body", "/stop-mid-body", "/short-content-length"):
        with pytest.raises(httpx.HTTPError):  # cut off: a truncated message (HTTP/1.1), a reset stream (HTTP/2)
            client.get(url + path)
    assert client.get(url + "/raise-after-response").text == "complete"
    if protocol == "h1":  # (HTTP/2: httpx cannot take a response before it has sent the whole body)
        assert client.post(url + "/ok", content=b"unread" * 50_000).text == "ok"  # a body the app never read
    assert wait_for(lambda: "failed after its response" in caplog.text)
    assert "the app failed before its response" in caplog.text  # logged, with the app's traceback
    assert client.get(url + "/ok").text == "ok"


def test_bad_bodies_are_answered_by_the_server(serve, client):
    """A body too large gets astra's 413, whatever the app makes of the http.disconnect it hears."""
    app, record = asgi_apps.body_reader()
    handle = serve(ASGIHandler(app), max_body_bytes=1000)

    def too_much():  # no Content-Length: refused as it crosses the limit, while the app reads
        yield b"x" * 800
        yield b"x" * 800

    response = client.post(handle.url, content=too_much())
    assert response.status_code == 413
    assert wait_for(lambda: record["disconnected"] is True)
    assert client.post(handle.url, content=b"y" * 500).text == "read 500"


def test_a_client_gone_mid_body_is_a_disconnect(serve):
    app, record = asgi_apps.body_reader()
    handle = serve(ASGIHandler(app))
    with connect(handle) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
        assert wait_for(lambda: record["received"] or handle.stats()["connections_open"])
    assert wait_for(lambda: record["disconnected"] is not None)
    assert record["disconnected"] is True and record["received"] <= 1000
    with connect(handle) as sock:  # and the server is none the worse
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        assert read_until_closed(sock).endswith(b"read 3")


def test_a_stalled_body_gets_408(serve):
    app, record = asgi_apps.body_reader()
    handle = serve(ASGIHandler(app), io_timeout=0.5, min_receive_rate=1e9)
    with connect(handle) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"z" * 10)
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert wait_for(lambda: record["disconnected"] is True)


# Lifespan --------------------------------------------------------------------------------------

def test_lifespan_brackets_serving(serve):
    """Startup completes before start() returns; shutdown comes after the last request has finished."""
    app, events = asgi_apps.lifespan_recorder()
    handle = serve(ASGIHandler(app))
    assert events == ["startup"]
    assert httpx.get(handle.url + "/").text == "hello"  # the state startup set
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.setdefault("response", httpx.get(handle.url + "/slow")))
    thread.start()
    assert wait_for(lambda: "request /slow" in events)
    assert handle.shutdown(10)
    thread.join(5)
    assert slow["response"].text == "hello"
    assert events == ["startup", "request /", "request /slow", "slow done", "shutdown"]


# ServerHandle re-raises in its thread what it has already handed to start(): pytest would warn.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_failed_startup_stops_the_server_from_starting(serve):
    with pytest.raises(LifespanFailed, match="no database"):
        serve(ASGIHandler(asgi_apps.startup_fails))
    # An app that does not speak lifespan: served all the same, unless lifespan is required.
    handle = serve(ASGIHandler(asgi_apps.lifespan_unsupported))
    assert httpx.get(handle.url).text == "no lifespan here"
    with pytest.raises(LifespanFailed, match="unsupported scope"):
        serve(ASGIHandler(asgi_apps.lifespan_unsupported, lifespan=LifespanMode.ON))


def test_a_failed_startup_exits_the_cli_non_zero():
    result = subprocess.run(
        [sys.executable, "-m", "astra", "tests.asgi_apps:failing_startup", "--runtime", "asyncio",
         "--bind", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode != 0
    assert "no database" in result.stderr


def test_app_tasks_still_running_at_shutdown_are_cancelled(serve):
    """An app that never finishes (nor reads its disconnect) does not hold the server's shutdown."""
    app, record = asgi_apps.watcher()

    async def stuck(scope, receive, send):
        if scope["type"] == "lifespan":
            return await app(scope, receive, send)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        record["chunks"] = 1
        await anyio.sleep_forever()

    handle = serve(ASGIHandler(stuck, shutdown_timeout=0.2), shutdown_timeout=0.3)
    with connect(handle) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: record["chunks"] == 1)
        began = time.monotonic()
        assert handle.shutdown(10)
        assert time.monotonic() - began < 5


# Real frameworks ---------------------------------------------------------------------------------

def test_starlette(serve, client):
    pytest.importorskip("starlette")
    handle = serve(ASGIHandler(asgi_apps.starlette_app()))
    url = handle.url
    assert client.get(url + "/").text == "hello from lifespan"
    data = client.get(url + "/json?a=1", headers={"User-Agent": "test-agent"}).json()
    assert data == {"path": "/json", "query": {"a": "1"}, "agent": "test-agent"}
    assert client.get(url + "/stream").text == "0\n1\n2\n3\n4\n"
    response = client.post(url + "/echo", json={"k": [1, 2, 3]})
    assert response.json() == {"length": len(response.request.content), "json": {"k": [1, 2, 3]}}
    assert client.get(url + "/missing").status_code == 404
    assert client.post(url + "/json").status_code == 405


def test_fastapi(serve, client):
    pytest.importorskip("fastapi")
    handle = serve(ASGIHandler(asgi_apps.fastapi_app()))
    url = handle.url
    response = client.post(url + "/items/5", json={"name": "pen", "price": 2.5})
    assert response.status_code == 200
    assert response.json() == {"id": 5, "name": "pen", "total": 5.0}
    assert client.get(url + "/items/7").json() == {"id": 7}  # a plain def, on anyio's threads
    assert client.post(url + "/items/5", json={"name": "pen"}).status_code == 422
    assert client.get(url + "/items/seven").status_code == 422
