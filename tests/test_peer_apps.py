"""The peers' workload apps answer as astra's handlers do, on every peer server."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from experiments import apps
from experiments.apps import peer_workloads as peer_apps
from protocols import Headers, Request

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("hello", "cpu", "sleep", "file")


def astra_answer(workload: str) -> tuple[bytes, str]:
    """(body, content type) of astra's blocking handler for ``workload``."""
    response = getattr(apps, workload)(Request("GET", "/", Headers()))
    return response.body.data, response.headers["content-type"]


# In-process: every workload, every form ---------------------------------------------

@pytest.mark.parametrize("workload", WORKLOADS)
def test_wsgi_app_matches_astra(workload):
    body, content_type = astra_answer(workload)
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    chunks = peer_apps.make_wsgi_app(workload)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, start_response)
    assert seen["status"] == "200 OK"
    assert b"".join(chunks) == body
    assert seen["headers"] == {"Content-Type": content_type, "Content-Length": str(len(body))}


@pytest.mark.parametrize("workload", WORKLOADS)
def test_asgi_app_matches_astra(workload):
    body, content_type = astra_answer(workload)
    app = peer_apps.make_asgi_app(workload)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(app(scope, receive, send))
    start, body_message = sent
    assert start["status"] == 200
    assert dict(start["headers"]) == {b"content-type": content_type.encode(),
                                      b"content-length": str(len(body)).encode()}
    assert body_message["body"] == body


def test_asgi_lifespan_is_answered():
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(incoming)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(peer_apps.make_asgi_app("hello")({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_unknown_workload_and_peer_are_refused():
    with pytest.raises(ValueError):
        peer_apps.make_wsgi_app("nope")
    with pytest.raises(ValueError):
        peer_apps.peer_argv("nope")
    with pytest.raises(ValueError):
        peer_apps.peer_available("nope")


def test_argv_keeps_placeholders():
    for peer in peer_apps.PEERS:
        argv = peer_apps.peer_argv(peer)
        assert argv[:2] == [sys.executable, "-m"]
        joined = " ".join(argv)
        assert "{host}" in joined and "{port}" in joined
        assert peer_apps.peer_available(peer) in (True, False)
    assert peer_apps.peer_available("stdlib")


# Out of process: each peer server, started as the harness starts it ------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("content-type")
    finally:
        conn.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM by PID, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve_and_get(argv: list[str], env: dict[str, str], timeout: float = 15.0):
    """Start ``argv`` ({host}/{port} filled in), wait for a 200 to a GET, return that response."""
    port = free_port()
    argv = [a.replace("{host}", "127.0.0.1").replace("{port}", str(port)) for a in argv]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"{argv} exited ({proc.returncode}):\n{log.read().decode(errors='replace')}")
                try:
                    answer = get(port)
                    if answer[0] == 200:
                        return answer
                except (OSError, http.client.HTTPException):
                    pass
                if time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{argv} not ready after {timeout} s:\n{log.read().decode(errors='replace')}")
                time.sleep(0.05)
        finally:
            stop(proc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("workload", ["hello", "cpu"])
@pytest.mark.parametrize("peer", peer_apps.PEERS)
def test_peer_serves_workload_as_astra_does(peer, workload):
    if not peer_apps.peer_available(peer):
        pytest.skip(f"{peer} is not installed")
    body, content_type = astra_answer(workload)
    status, got, got_type = serve_and_get(peer_apps.peer_argv(peer), {"ASTRA_WORKLOAD": workload})
    assert (status, got, got_type) == (200, body, content_type)


@pytest.mark.timeout(30)
def test_existing_stdlib_variant_still_serves_hello():
    status, got, _ = serve_and_get([sys.executable, "-m", "experiments.apps.peers", "stdlib", "{port}"], {})
    assert (status, got) == (200, b"Hello World!")


def test_peers_usage_errors():
    for args in (["stdlib-workload", "127.0.0.1"], ["nope", "1"]):
        done = subprocess.run([sys.executable, "-m", "experiments.apps.peers", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=15)
        assert done.returncode == 1 and "usage:" in done.stderr
