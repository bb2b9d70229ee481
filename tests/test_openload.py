"""experiments.load.openload: the open-loop generator against servers whose behaviour is known.

Raw servers on loopback (a thread each) answer in one fixed way per test:
correctly, with a stall, with chunked or close-delimited bodies, with
garbage, or not at all. The figures checked have wide margins (a 500 ms
freeze against millisecond answers): they test what the generator counts,
not how fast anything is.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from experiments.load.tools import Target
from experiments.load.openload import binary, run_openload

ROOT = Path(__file__).resolve().parent.parent
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

pytestmark = pytest.mark.timeout(120)


@contextmanager
def raw_server(answer):
    """A thread per connection; ``answer(request_bytes, sock)`` replies (or not) to each request."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    stop = threading.Event()

    def serve(sock: socket.socket) -> None:
        buffered = b""
        with sock:
            while not stop.is_set():
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
                while b"\r\n\r\n" in buffered:
                    head, _, buffered = buffered.partition(b"\r\n\r\n")
                    if answer(head, sock) is False:
                        return

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Target("127.0.0.1", listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_it_builds():
    assert binary().exists()


def test_a_correct_server_answers_every_request_on_schedule():
    with raw_server(lambda head, sock: sock.sendall(OK)) as target:
        out = run_openload([target], conns=10, rate=500, duration=2, warmup=0.5, timeout=2)
    assert out["connect_errors"] == out["broken"] == out["malformed"] == out["censored"] == 0
    assert 900 <= out["answered"] <= 1100  # 500/s for 2 s
    assert out["latency_ms"]["p50"] < 50
    assert out["generator"]["cpu_share_max"] < 0.5


def test_a_stall_shows_in_the_tail():
    """The server freezes 600 ms once in the measured window: every request due meanwhile waits."""
    started = time.monotonic()
    frozen = threading.Event()

    lock = threading.Lock()

    def answer_with_global_stall(head: bytes, sock: socket.socket) -> None:
        with lock:
            if time.monotonic() - started > 1.5 and not frozen.is_set():
                frozen.set()
                time.sleep(0.6)  # the whole server stops answering
            sock.sendall(OK)

    with raw_server(answer_with_global_stall) as target:
        out = run_openload([target], conns=20, rate=400, duration=3, warmup=0.5, timeout=3)
    lat = out["latency_ms"]
    # About 240 requests are due during the freeze, 1,200 in the window: p90 and beyond see it.
    assert lat["p99"] >= 400 and lat["p50"] < 100, lat
    assert out["censored"] == 0 and out["answered"] >= 1100


def test_a_played_round_trip_adds_to_latency_and_limits_each_connection():
    """-L 20: every request takes at least 20 ms, and a connection carries at most one per round trip."""
    with raw_server(lambda head, sock: sock.sendall(OK)) as target:
        light = run_openload([target], conns=5, rate=100, duration=2, warmup=0.5, timeout=2, rtt_ms=20)
        heavy = run_openload([target], conns=5, rate=600, duration=2, warmup=0.5, timeout=2, rtt_ms=20)
    assert light["rtt_ms"] == 20 and 20 <= light["latency_ms"]["p50"] < 40, light["latency_ms"]
    assert 180 <= light["answered"] <= 220
    # 5 connections, 20 ms each way round: 250 requests/s at most, whatever the server could do.
    assert heavy["throughput_rps"] <= 260 and heavy["latency_ms"]["p99"] > 200


def test_chunked_interim_and_close_delimited_responses_are_read():
    responses = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    ]
    count = iter(range(10**9))

    def answer(head: bytes, sock: socket.socket):
        n = next(count)
        if n % 3 == 2:  # no framing: the body ends with the connection
            sock.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
            return False
        sock.sendall(responses[n % 3])

    with raw_server(answer) as target:
        out = run_openload([target], conns=4, rate=100, duration=2, warmup=0.2, timeout=2)
    assert out["malformed"] == out["broken"] == 0, out
    assert out["answered"] >= 180 and out["reconnects"] >= 50


def test_garbage_is_counted_and_kept_as_a_lower_bound():
    with raw_server(lambda head, sock: sock.sendall(b"HTTP/1.1 2xx nonsense\r\n\r\n")) as target:
        out = run_openload([target], conns=2, rate=50, duration=1, warmup=0.2, timeout=1)
    assert out["malformed"] >= 40 and out["answered"] == 0
    assert out["censored"] >= 40 and out["latency_ms"]["p50"] is not None


def test_a_server_that_never_answers_times_out_and_the_run_ends():
    with raw_server(lambda head, sock: None) as target:
        began = time.monotonic()
        out = run_openload([target], conns=5, rate=20, duration=1, warmup=0, timeout=0.5)
    assert time.monotonic() - began < 10
    assert out["timeouts"] >= 5 and out["answered"] == 0 and out["censored"] >= 15


def test_nobody_listening_ends_with_connect_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        out = run_openload([Target("127.0.0.1", port)], conns=3, rate=10, duration=0.5, warmup=0, timeout=0.5)
    assert out["connect_errors"] >= 3 and out["answered"] == 0


def test_two_processes_are_pooled_and_share_one_schedule():
    with raw_server(lambda head, sock: sock.sendall(OK)) as a, raw_server(lambda head, sock: sock.sendall(OK)) as b:
        out = run_openload([a, b], conns=8, rate=400, duration=2, warmup=0.3, timeout=2)
    assert out["processes"] == 2 and len(out["per_process"]) == 2
    assert out["measured"] == sum(p["measured"] for p in out["per_process"])
    assert 700 <= out["answered"] <= 900
    assert all(p["late_start_ms"] == 0 for p in out["per_process"])


def test_the_stall_server_and_the_validation_command_run():
    out = subprocess.run([sys.executable, "-m", "experiments.load.openload.validate", "--periods", "1", "--every", "2",
                          "--stall", "0.5", "--rate", "300", "--conns", "10", "--saturation-s", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert '"what": "stall server' in out.stdout, out.stderr[-2000:]
    checks = json.loads(out.stdout)
    # 0.5 s frozen every 2 s: p99 about 480 ms, whatever the machine does; throughput is counted inside the window.
    assert checks[0]["openload"]["latency_ms"]["p99"] >= 300, checks[0]
    assert 0 < checks[1]["openload"]["throughput_rps"] <= 1.2 * checks[1]["rate"], checks[1]
