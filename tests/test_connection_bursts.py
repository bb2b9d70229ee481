"""Bursts of connections and connections that never speak, on the event-loop runtimes.

Their server keeps an accepted socket in a waiting room (``runtimes/_async/waiting.py``)
until its first byte: no transport, task or protocol state. These tests hold
it to what that promises: a burst is served in full, a silent connection
costs next to nothing and still meets its head deadline (counted from the
connect), the connection cap counts it, and a shutdown closes it without a word.
"""

from __future__ import annotations

import asyncio
import importlib.util
import selectors
import socket
import time
import tracemalloc

import pytest

from astra import Response, Server
from astra.cli import build_parser
from astra.registry import load_runtime
from runtimes.common import Loop
from runtimes._gil import gil_enabled

from .apps import hello
from .conftest import RUNTIMES_UNDER_TEST, connect, read_until_closed, wait_for

EVENT_LOOP_RUNTIMES = [param for param in RUNTIMES_UNDER_TEST if load_runtime(param.values[0]).supports_async]
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
RESPONSE_END = b"Hello World!"


@pytest.fixture(params=EVENT_LOOP_RUNTIMES)
def runtime(request) -> str:
    """Overrides conftest's: the waiting room is the event-loop runtimes'."""
    return request.param


def burst(address: tuple[str, int], count: int, timeout: float = 30.0) -> int:
    """Open ``count`` connections at once, one request on each; how many got their whole response."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE)
        received[sock] = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while answered < count and time.monotonic() < deadline:
            for key, events in selector.select(timeout=1.0):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    sock.send(REQUEST)  # a short request fits the empty send buffer
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(65536)
                received[sock] += data
                if received[sock].endswith(RESPONSE_END) or not data:
                    answered += received[sock].endswith(RESPONSE_END)
                    selector.unregister(sock)
    finally:
        for sock in received:
            sock.close()
        selector.close()
    return answered


def test_a_burst_of_connections_is_served_in_full(serve):
    handle = serve(hello, max_connections=5_000, backlog=4096)
    assert burst(handle.address, 2_000) == 2_000
    assert wait_for(lambda: handle.stats()["connections_open"] == 0, timeout=10)


def test_a_silent_connection_costs_little(serve):
    """No transport, task or protocol state until the first byte: about 0.2 KiB of Python objects.

    A served connection costs some 8 KiB; the bound leaves room for noise.
    """
    handle = serve(hello)
    count = 500
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        silent = [connect(handle) for _ in range(count)]
        assert wait_for(lambda: handle.stats()["connections_open"] == count)
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    for sock in silent:  # and they are still served when they speak
        sock.sendall(REQUEST)
    for sock in silent:
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.close()
    assert per_connection < 2048, per_connection  # includes this test's own socket objects


def test_the_head_deadline_runs_from_the_connect(serve):
    """Waiting silent in the waiting room counts: a head begun late has only what is left."""
    handle = serve(hello, header_timeout=1.0)
    with connect(handle) as sock:
        connected = time.monotonic()
        time.sleep(0.7)
        sock.sendall(b"GET / HTTP/1.1\r\n")  # half a head, and no more
        reply = read_until_closed(sock, timeout=5)
        elapsed = time.monotonic() - connected
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 1.6, elapsed  # 1.0 s from the connect (plus the sweeper's tick), not from the first byte


def test_a_silent_connection_gets_408_at_its_deadline(serve):
    handle = serve(hello, header_timeout=0.3)
    with connect(handle) as sock:
        started = time.monotonic()
        reply = read_until_closed(sock, timeout=5)
        assert time.monotonic() - started < 2.0
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)


def test_silent_connections_count_against_the_cap(serve):
    handle = serve(hello, max_connections=2)
    silent = [connect(handle) for _ in range(2)]
    assert wait_for(lambda: handle.stats()["connections_open"] == 2)
    with connect(handle) as third:
        assert read_until_closed(third).startswith(b"HTTP/1.1 503 ")
    for sock in silent:
        sock.close()


def test_shutdown_closes_silent_connections_without_a_word(runtime):
    handle = Server("127.0.0.1", 0, runtime=runtime, **runtime.options).start(hello)
    silent = [connect(handle) for _ in range(50)]
    assert wait_for(lambda: handle.stats()["connections_open"] == 50)
    started = time.monotonic()
    assert handle.shutdown(10)
    assert time.monotonic() - started < 2.0
    for sock in silent:
        assert read_until_closed(sock) == b""
        sock.close()


# The asyncio runtime's loop -------------------------------------------------------------

async def loop_module(request):
    return Response(type(asyncio.get_running_loop()).__module__)


@pytest.mark.parametrize("loop", [Loop.ASYNCIO, Loop.UVLOOP, Loop.AUTO])
def test_the_asyncio_runtime_serves_on_the_loop_chosen(loop):
    uvloop_installed = importlib.util.find_spec("uvloop") is not None
    if loop is Loop.UVLOOP and not uvloop_installed:
        pytest.skip("uvloop is not installed")
    handle = Server("127.0.0.1", 0, runtime="asyncio", loop=loop.value).start(loop_module)
    try:
        with connect(handle) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = read_until_closed(sock)
    finally:
        assert handle.shutdown(10)
    # auto: uvloop when installed, but asyncio's own loop where the GIL is off (see AsyncioRuntime.loop)
    on_uvloop = loop is Loop.UVLOOP or (loop is Loop.AUTO and uvloop_installed and gil_enabled())
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"uvloop") if on_uvloop else reply.endswith(b"asyncio.unix_events")


def test_the_loop_option_is_typed():
    assert build_parser().parse_args(["m:h", "--loop", "uvloop"]).loop is Loop.UVLOOP
    assert Server("127.0.0.1", 0, runtime="asyncio", loop="asyncio").config.loop is Loop.ASYNCIO
    with pytest.raises(ValueError):
        Server("127.0.0.1", 0, runtime="asyncio", loop="tokio")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["m:h", "--loop", "tokio"])
