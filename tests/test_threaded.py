"""The thread-per-connection runtime with hundreds of threads at once.

Its two costs under the GIL, and what the runtime does about them: an accept
loop that lets go of the GIL waits behind every busy thread to get it back
(so it accepts without letting go: ``accept_descriptors``), and every thread
waiting for the GIL wakes once per switch interval (so the interval grows
with the threads: ``runtimes/_gil.py``). The tests hold it to the outcome:
a burst is served in full, the interval comes back when the crowd leaves,
a configured interval is left alone, and a shutdown that meets connections
still starting waits for them.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from astra import Response
from runtimes._gil import gil_enabled
from runtimes._listeners import accept_descriptors

from .conftest import RuntimeUnderTest, connect, read_until_closed, wait_for
from .test_connection_bursts import burst

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def runtime() -> RuntimeUnderTest:
    """Overrides conftest's: these are the threaded runtime's own."""
    return RuntimeUnderTest("threaded")


def hello(request):
    return Response("Hello World!")


def test_the_whole_backlog_is_accepted_in_one_call_as_usable_descriptors():
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(50)]
    try:
        time.sleep(0.1)  # every handshake completes into the backlog
        fds = list(accept_descriptors(listener))
        assert len(fds) == 50
        servers = [socket.socket(listener.family, socket.SOCK_STREAM, listener.proto, fileno=fd) for fd in fds]
        for sock in servers:
            assert sock.get_inheritable() is False  # close-on-exec, as socket.accept gives
            sock.sendall(b"hi")
            sock.close()
        assert all(c.recv(2) == b"hi" for c in clients)
        assert list(accept_descriptors(listener)) == []  # an empty backlog ends the batch
    finally:
        for c in clients:
            c.close()
        listener.close()


def test_a_burst_of_connections_each_on_its_thread_is_served_in_full(serve):
    handle = serve(hello, max_connections=2_000, backlog=4096)
    assert burst(handle.address, 600) == 600
    assert wait_for(lambda: handle.stats()["connections_open"] == 0, timeout=10)


@pytest.mark.skipif(not gil_enabled(), reason="no GIL: the switch interval governs nothing, and is left alone")
def test_the_switch_interval_grows_with_the_threads_and_comes_back(serve):
    before = sys.getswitchinterval()
    handle = serve(hello)
    idle = [connect(handle) for _ in range(400)]
    try:
        assert wait_for(lambda: handle.stats()["connections_open"] == 400)
        assert sys.getswitchinterval() >= 400 * 50e-6 / 2  # fitted within 2x of 50 us a thread
        handle.shutdown(10)
    finally:
        for sock in idle:
            sock.close()
    assert sys.getswitchinterval() == before


def test_a_configured_switch_interval_is_left_alone(serve):
    before = sys.getswitchinterval()
    try:
        handle = serve(hello, switch_interval=0.002)
        idle = [connect(handle) for _ in range(300)]
        try:
            assert wait_for(lambda: handle.stats()["connections_open"] == 300)
            assert sys.getswitchinterval() == 0.002
        finally:
            for sock in idle:
                sock.close()
    finally:
        sys.setswitchinterval(before)


def test_a_shutdown_meeting_connections_still_starting_answers_or_closes_each(serve):
    """Connections pour in as the shutdown begins: each gets its response or a clean close, none hangs."""
    handle = serve(hello, max_connections=2_000, shutdown_timeout=5.0)
    socks: list[socket.socket] = []

    def pour() -> None:
        for _ in range(300):
            try:
                sock = socket.create_connection(handle.address, timeout=5)
            except OSError:
                return  # the listener closed
            sock.sendall(REQUEST)
            socks.append(sock)

    pourer = threading.Thread(target=pour)
    pourer.start()
    assert wait_for(lambda: len(socks) >= 100)
    started = time.monotonic()
    handle.shutdown(10)
    assert time.monotonic() - started < 5.0  # no connection held the shutdown to its timeout
    pourer.join()
    try:
        for sock in socks:
            data = read_until_closed(sock, timeout=5.0)
            assert data == b"" or data.startswith(b"HTTP/1.1 200") and data.endswith(b"Hello World!")
    finally:
        for sock in socks:
            sock.close()
