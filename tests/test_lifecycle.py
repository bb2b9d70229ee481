"""Starting, stopping and the command line, on every runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from astra import Response, Server

from .conftest import connect, parse_responses, read_until_closed, wait_for

ROOT = Path(__file__).resolve().parent.parent


def hello(request):
    return Response("Hello World!")


def test_port_zero_binds_a_free_port(serve):
    handle = serve(hello)
    assert handle.address[0] == "127.0.0.1" and handle.address[1] > 0
    assert handle.url == f"http://127.0.0.1:{handle.address[1]}"


def test_shutdown_finishes_in_flight_requests_and_closes_idle_ones(serve):
    started = threading.Event()

    def handler(request):
        if request.path == "/slow":
            started.set()
            time.sleep(0.5)
        return Response("done " + request.path)

    handle = serve(handler)
    idle = connect(handle)
    idle.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(1000).endswith(b"done /first")

    busy = connect(handle)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(5)
    begun = time.monotonic()
    assert handle.shutdown(5)
    assert time.monotonic() - begun < 3

    (head, body), = parse_responses(read_until_closed(busy))
    assert body == b"done /slow"
    assert (b"connection", b"close") in [(k.lower(), v) for k, v in head.headers]
    assert read_until_closed(idle) == b""  # closed without a word
    with pytest.raises(OSError):
        connect(handle, timeout=1)  # no longer listening


def test_shutdown_is_bounded_by_its_timeout(serve):
    release = threading.Event()

    def handler(request):
        release.wait(10)
        return Response("late")

    handle = serve(handler, shutdown_timeout=0.5)
    sock = connect(handle)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    begun = time.monotonic()
    handle.shutdown(5)
    assert time.monotonic() - begun < 3
    release.set()
    sock.close()


def test_async_handler_is_refused_by_thread_runtimes(runtime):
    async def handler(request):
        return Response("never")

    server = Server("127.0.0.1", 0, runtime=runtime)
    if server.runtime_class.supports_async:
        pytest.skip(f"{runtime} runs async handlers")
    with pytest.raises(TypeError, match="async def"):
        server.start(handler)


def test_unknown_option_and_runtime_are_clear_errors():
    with pytest.raises(TypeError, match="unknown server option"):
        Server.bind("127.0.0.1:0", max_conections=3)
    with pytest.raises(ValueError, match="unknown runtime"):
        Server.bind("127.0.0.1:0", runtime="fibers")


@contextmanager
def cli_server(runtime: str, handler: str, *extra: str):
    """``python -m astra`` in a subprocess; yields (process, url). Killed if still alive after."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "astra", handler, "--bind", "127.0.0.1:0", "--runtime", runtime, *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + proc.stderr.read()
        yield proc, line.split()[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_blocks_until_sigterm_then_exits_cleanly(runtime):
    """The command line: listen line, requests, SIGTERM, exit 0."""
    with cli_server(runtime, "tests.apps:hello") as (proc, url):
        with httpx.Client() as client:
            for _ in range(3):
                assert client.get(url).text == "Hello World!"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_cli_writes_stats_lines(runtime, tmp_path):
    stats_file = tmp_path / "stats.jsonl"
    with cli_server(runtime, "tests.apps:hello", "--stats-file", str(stats_file),
                    "--stats-interval", "0.2") as (proc, url):
        assert httpx.get(url).status_code == 200
        assert wait_for(lambda: stats_file.exists() and len(stats_file.read_text().splitlines()) >= 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    last = json.loads(stats_file.read_text().splitlines()[-1])
    assert last["connections_accepted"] >= 1 and "connections_open" in last and "threads" in last


def test_cli_survives_a_raising_handler(runtime):
    with cli_server(runtime, "tests.apps:boom") as (proc, url):
        for _ in range(3):
            assert httpx.get(url).status_code == 500
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "RuntimeError: boom" in proc.stderr.read()


def test_stats_count_connections(serve):
    handle = serve(hello)
    with connect(handle) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1000)
        assert handle.stats()["connections_open"] == 1
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)
