"""Many threads, many connections, handlers that block, spin, stream and fail: no crash, no hang,
no lost or doubled request, on every runtime.

Written for the free-threaded build (``make test-freethreaded``), where the
GIL no longer makes a runtime's shared state safe by accident; it runs on
the standard build too. Counting is the check: every request a client sent
and saw answered is counted once by the handler, under its own lock, and a
stream abandoned mid-way is closed exactly once. ``ASTRA_STRESS=N``
multiplies the load.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter

import httpx
import pytest

from astra import Body, Response

SCALE = int(os.environ.get("ASTRA_STRESS", "1"))
CLIENTS = 12 * SCALE
REQUESTS = 25 * SCALE

pytestmark = pytest.mark.timeout(120)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


def make_handler(tally: Tally):
    def handler(request):
        kind = request.path.strip("/")
        tally.add(kind)
        if kind == "block":
            time.sleep(0.002)
            return Response("blocked")
        if kind == "spin":
            total = sum(i * i for i in range(3_000))
            return Response(str(total))
        if kind == "stream":
            def parts():
                try:
                    for i in range(50):
                        yield b"x" * 1024
                        time.sleep(0.001)
                finally:
                    tally.add("stream-closed")
            return Response(Body(parts()))
        if kind == "fail":
            raise RuntimeError("a failing handler")
        return Response(request.read() or b"ok")
    return handler


SPIN = str(sum(i * i for i in range(3_000)))


def client(url: str, seed: int, seen: Counter, lock: threading.Lock, errors: list) -> None:
    kinds = ["block", "spin", "stream", "fail", "echo"]
    mine: Counter[str] = Counter()
    try:
        with httpx.Client(timeout=30, http2=seed % 2 == 1, http1=seed % 2 == 0) as session:
            for i in range(REQUESTS):
                kind = kinds[(seed + i) % len(kinds)]
                if kind == "echo":
                    reply = session.post(f"{url}/echo", content=b"e" * (seed + i))
                    assert reply.content == b"e" * (seed + i) or (seed + i == 0 and reply.content == b"ok")
                else:
                    reply = session.get(f"{url}/{kind}")
                expected = {"block": (200, b"blocked"), "spin": (200, SPIN.encode()),
                            "stream": (200, b"x" * 50 * 1024), "fail": (500, None)}.get(kind)
                if expected is not None:
                    assert reply.status_code == expected[0], (kind, reply.status_code)
                    if expected[1] is not None:
                        assert reply.content == expected[1], kind
                mine[kind] += 1
    except Exception as exc:  # reported by the test, with the others
        errors.append(exc)
    with lock:
        seen.update(mine)


def leaver(address, stop: threading.Event) -> int:
    """Asks for streams and leaves mid-way, over and over: each one must still be closed."""
    left = 0
    while not stop.is_set():
        with connect_to(address) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(4096)
        left += 1
    return left


def connect_to(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # leave with a reset
    return sock


def test_many_clients_and_kinds_of_handler_every_request_counted_once(serve, caplog):
    tally = Tally()
    handle = serve(make_handler(tally), max_workers=64)
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list = []
    stop = threading.Event()
    left = []
    leaving = threading.Thread(target=lambda: left.append(leaver(handle.address, stop)))
    leaving.start()
    threads = [threading.Thread(target=client, args=(handle.url, n, seen, lock, errors)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    stop.set()
    leaving.join(30)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads), "a client hung"
    # Every answered request was counted once (the leaver's streams are counted, never compared).
    for kind in ("block", "spin", "fail", "echo"):
        assert tally.counts[kind] == seen[kind], (kind, tally.counts[kind], seen[kind])
    streams_started = tally.counts["stream"]
    assert streams_started >= seen["stream"] + left[0] - 1  # the leaver's last may not have arrived
    # Every stream's generator was closed, the abandoned ones too (allow the last few a moment).
    deadline = time.monotonic() + 15
    while tally.counts["stream-closed"] < tally.counts["stream"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tally.counts["stream-closed"] == tally.counts["stream"]
    assert httpx.get(handle.url + "/echo", timeout=10).status_code == 200  # and it still serves
