"""Unix domain sockets: ``--bind unix:PATH``, as nginx on the same machine connects, on every runtime."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from astra import Response, Server

from .conftest import read_until_closed, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sock_dir():
    """A short directory: a socket's path must fit in 107 bytes, and pytest's tmp_path may not."""
    path = tempfile.mkdtemp(prefix="astra-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve_unix(runtime, sock_dir):
    """serve_unix(handler, *more_addresses, **options) -> a running ServerHandle on ``sock_dir``/s.sock."""
    handles = []

    def start(handler, *more, **options):
        options.setdefault("shutdown_timeout", 3.0)
        for name, value in runtime.options.items():
            options.setdefault(name, value)
        handle = Server.bind(f"unix:{sock_dir}/s.sock", *more, runtime=runtime, **options).start(handler)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        assert handle.shutdown(10), "server did not shut down"


def uds_client(path: str, protocol: str) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=path, http1=protocol == "h1", http2=protocol == "h2")
    return httpx.Client(transport=transport, timeout=10)


def describe(request):
    info = request.connection
    return Response(f"{info.peer}|{info.local}|{info.scheme}|{request.protocol}|{len(request.read())}")


def test_serving_over_a_unix_socket(serve_unix, protocol, sock_dir):
    path = f"{sock_dir}/s.sock"
    handle = serve_unix(describe, "127.0.0.1:0", forwarded_allow_ips="unix")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 and stat.S_ISSOCK(os.stat(path).st_mode)
    assert str(handle.address) == f"unix:{path}" and handle.urls[0] == f"unix:{path}"
    version = {"h1": "HTTP/1.1", "h2": "HTTP/2"}[protocol]
    with uds_client(path, protocol) as client:
        for _ in range(3):  # keep-alive, and a body
            response = client.post("http://astra/", content=b"x" * 100_000)
            assert response.text == f"None|None|http|{version}|100000"
        # Behind nginx on a socket, "unix" trusts the proxy's word for the client.
        proxied = client.get("http://astra/", headers={"x-forwarded-for": "192.0.2.9", "x-forwarded-proto": "https"})
        assert proxied.text == f"('192.0.2.9', 0)|None|https|{version}|0"
    with httpx.Client(http1=protocol == "h1", http2=protocol == "h2") as tcp:  # the TCP address, same server
        peer, _, scheme, _, _ = tcp.get(handle.urls[1], headers={"x-forwarded-for": "192.0.2.9"}).text.split("|")
        assert peer.startswith("('127.0.0.1', ") and scheme == "http"  # "unix" trusts no TCP peer
    assert handle.shutdown(10)
    assert not os.path.exists(path)  # removed at shutdown


def test_clients_that_misbehave_over_a_unix_socket(serve_unix, sock_dir):
    path = f"{sock_dir}/s.sock"
    handle = serve_unix(describe, unix_socket_mode=0o600, header_timeout=0.5)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    gone_mid_head, broken, gone_mid_body = (b"GET / HTTP/1.1\r\nHo", b"\x00\x01garbage\r\n\r\n",
                                            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab")
    for request in (gone_mid_head, broken, gone_mid_body):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(request)
    with socket.socket(socket.AF_UNIX) as sock:  # too slow: 408, as over TCP
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408")
    with uds_client(path, "h1") as client:
        assert client.get("http://astra/").status_code == 200
    assert wait_for(lambda: handle.stats()["connections_open"] == 0)


def test_a_stale_socket_is_replaced_and_anything_else_refused(runtime, sock_dir):
    path = f"{sock_dir}/s.sock"
    left_over = socket.socket(socket.AF_UNIX)
    left_over.bind(path)  # a server that died without removing its socket file
    left_over.close()
    with Server.bind(f"unix:{path}", runtime=runtime, **runtime.options).start(describe):
        with uds_client(path, "h1") as client:
            assert client.get("http://astra/").status_code == 200
        # A live server's socket is not taken over.
        with pytest.raises(OSError, match="another server is listening"):
            Server.bind(f"unix:{path}", runtime=runtime).start(describe)
    assert not os.path.exists(path)

    regular = Path(sock_dir, "data.txt")
    regular.write_text("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        Server.bind(f"unix:{regular}", runtime=runtime).start(describe)
    assert regular.read_text() == "precious"  # never deleted

    too_long = f"{sock_dir}/{'x' * 120}.sock"
    with pytest.raises(ValueError, match="too long"):
        Server.bind(f"unix:{too_long}", runtime=runtime)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_cli_workers_share_one_socket_behind_a_proxy(sock_dir):
    """nginx's set-up: two workers on one socket, the proxy trusted, an access log; curl as the proxy."""
    path = f"{sock_dir}/s.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "astra", "tests.apps:hello", "--bind", f"unix:{path}", "--workers", "2",
         "--runtime", "hybrid", "--forwarded-allow-ips", "unix", "--access-log", "--unix-socket-mode", "660"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout.readline().strip() == f"listening on unix:{path}"
        assert server.stdout.readline().strip() == f"listening on unix:{path}"  # the second worker, same socket
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        for flag in ("--http1.1", "--http2-prior-knowledge"):
            out = subprocess.run(["curl", "-s", flag, "--unix-socket", path, "-H", "X-Forwarded-For: 192.0.2.44",
                                  "http://astra/curl"], capture_output=True, text=True, timeout=10)
            assert out.stdout == "Hello World!"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    assert server.returncode == 0
    lines = [line for line in err.splitlines() if "/curl" in line]
    assert len(lines) == 2 and all(line.startswith("192.0.2.44 - - [") for line in lines)
    assert not os.path.exists(path)  # the parent removed it once both workers had stopped
