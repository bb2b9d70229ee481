"""``async def`` handlers and the inline mode, on every runtime that has an event loop."""

from __future__ import annotations

import hashlib
import os
import time

import anyio
import pytest

from astra import HTTPError, Response
from astra.registry import load_runtime

from .conftest import RUNTIMES_UNDER_TEST, connect, read_until_closed


ASYNC_RUNTIMES = [param for param in RUNTIMES_UNDER_TEST if load_runtime(param.values[0]).supports_async]


@pytest.fixture(params=ASYNC_RUNTIMES)
def runtime(request) -> str:
    """Overrides conftest's: this module runs on the event-loop runtimes only."""
    return request.param


@pytest.fixture
def serve_async(serve):
    return serve


def test_async_handler_is_awaited(serve_async, client):
    async def handler(request):
        await anyio.sleep(0.01)  # anyio works on both asyncio and trio
        return Response(f"async {request.path}")

    handle = serve_async(handler)
    assert client.get(handle.url + "/x").text == "async /x"


def test_async_handler_awaits_its_body(serve_async, client):
    async def handler(request):
        digest = hashlib.sha256()
        async for chunk in request.body:
            digest.update(chunk)
        return Response(digest.hexdigest())

    handle = serve_async(handler)
    payload = os.urandom(3 * 1024 * 1024)
    assert client.post(handle.url, content=payload, timeout=30).text == hashlib.sha256(payload).hexdigest()


def test_async_handler_reads_whole_body(serve_async, client):
    async def handler(request):
        return Response(await request.aread())

    handle = serve_async(handler)
    assert client.post(handle.url, content=b"echo me").content == b"echo me"


def test_async_generator_response_is_streamed(serve_async, client):
    async def handler(request):
        async def parts():
            for i in range(3):
                await anyio.sleep(0)
                yield f"{i};"
        return Response(parts())

    handle = serve_async(handler)
    response = client.get(handle.url)
    assert "content-length" not in response.headers and response.text == "0;1;2;"


def test_async_handler_errors(serve_async, client):
    async def handler(request):
        if request.path == "/teapot":
            raise HTTPError(418, "short and stout")
        raise RuntimeError("async boom")

    handle = serve_async(handler)
    assert client.get(handle.url + "/teapot").status_code == 418
    assert client.get(handle.url + "/boom").status_code == 500


def test_many_async_sleepers_share_one_loop(serve_async):
    """200 requests each awaiting 0.3 s finish together: no thread per request."""
    async def handler(request):
        await anyio.sleep(0.3)
        return Response("ok")

    handle = serve_async(handler)
    socks = [connect(handle, timeout=10) for _ in range(200)]
    started = time.monotonic()
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert all(read_until_closed(sock, timeout=10).endswith(b"ok") for sock in socks)
    elapsed = time.monotonic() - started
    for sock in socks:
        sock.close()
    assert elapsed < 3.0, elapsed  # serially: 60 s
    assert handle.stats()["workers_peak"] == 0  # no handler needed a thread


def test_inline_blocking_handler_blocks_the_loop(serve_async):
    """The teaching example: one blocking call on the loop stalls every connection."""
    def handler(request):
        time.sleep(0.3)
        return Response("done")

    timings = {}
    for mode in ("thread", "inline"):
        handle = serve_async(handler, blocking_handlers=mode)
        socks = [connect(handle) for _ in range(4)]
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert all(read_until_closed(sock).endswith(b"done") for sock in socks)
        timings[mode] = time.monotonic() - started
        for sock in socks:
            sock.close()
    assert timings["inline"] >= 1.2  # four sleeps, one after another
    assert timings["thread"] < timings["inline"]


def test_inline_handler_still_gets_its_body(serve_async, client):
    handle = serve_async(lambda request: Response(request.read()), blocking_handlers="inline")
    assert client.post(handle.url, content=b"x" * 100_000).content == b"x" * 100_000
