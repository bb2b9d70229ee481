"""The access log: one line per response, on every runtime and both protocols, and none a client can forge."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from astra import HTTPError, Response

from .conftest import connect, read_until_closed, wait_for

ROOT = Path(__file__).resolve().parent.parent

#: The combined log format plus microseconds; quoted fields hold printable ASCII with no bare quote or backslash.
QUOTED = r'(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4})*'
LINE = re.compile(
    rf'(?P<host>\S+) - - \[\d\d/[A-Z][a-z]{{2}}/\d{{4}}:\d\d:\d\d:\d\d [+-]\d{{4}}\] "(?P<request>{QUOTED})" '
    rf'(?P<status>\d{{3}}) (?P<size>\d+|-) "(?P<referer>{QUOTED})" "(?P<agent>{QUOTED})" (?P<micros>\d+|-)')


@pytest.fixture
def access_lines():
    """The lines logged to "astra.access" while the test runs, parsed (a line that does not parse fails)."""
    lines: list[re.Match] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            match = LINE.fullmatch(text)
            assert match is not None, f"not a combined log line: {text!r}"
            lines.append(match)

    log = logging.getLogger("astra.access")
    collect, level = Collect(), log.level
    log.addHandler(collect)
    log.setLevel(logging.INFO)
    yield lines
    log.removeHandler(collect)
    log.setLevel(level)


def by_target(lines: list[re.Match], count: int) -> dict[str, re.Match]:
    assert wait_for(lambda: len(lines) >= count), [m.group() for m in lines]  # logged once the response has gone
    return {m["request"].split(" ")[1]: m for m in lines}


def app(request):
    if request.path == "/stream":
        return Response(iter([b"a", b"b"]))
    if request.path == "/missing":
        raise HTTPError(404, "no such page")
    if request.path == "/boom":
        raise RuntimeError("a failing handler is logged too")
    request.read()
    return Response("Hello World!")


def test_a_line_per_response(serve, client, protocol, access_lines):
    handle = serve(app, access_log=True)
    quiet = serve(app)  # off by default
    client.get(quiet.url + "/quiet")
    client.get(handle.url + "/hello?x=1", headers={"referer": "http://example/", "user-agent": "probe/1"})
    client.get(handle.url + "/stream")
    client.get(handle.url + "/missing")
    client.get(handle.url + "/boom")
    client.head(handle.url + "/head")
    lines = by_target(access_lines, 5)
    version = {"h1": "HTTP/1.1", "h2": "HTTP/2"}[protocol]
    hello = lines["/hello?x=1"]
    assert hello["host"] == "127.0.0.1" and hello["request"] == f"GET /hello?x=1 {version}"
    assert (hello["status"], hello["size"]) == ("200", "12")
    assert (hello["referer"], hello["agent"]) == ("http://example/", "probe/1")
    assert int(hello["micros"]) >= 0
    assert (lines["/stream"]["status"], lines["/stream"]["size"]) == ("200", "-")  # a length nobody knew
    assert lines["/missing"]["status"] == "404" and lines["/boom"]["status"] == "500"
    assert (lines["/head"]["status"], lines["/head"]["size"]) == ("200", "0")
    assert "/quiet" not in lines and len(access_lines) == 5


def test_hostile_requests_cannot_forge_lines(serve, access_lines):
    """Quotes, backslashes and bytes past ASCII are escaped; a head the protocol refuses still gets its line."""
    handle = serve(app, access_log=True, io_timeout=0.3)
    with connect(handle) as sock:
        sock.sendall(b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\nUser-Agent: evil" 200 1 "-" "x\\\xe9\xff\r\n'
                     b'Referer: \x80"\r\nConnection: close\r\n\r\n')
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
    with connect(handle) as sock:  # a control byte: the protocol answers 400 itself, no request was made
        sock.sendall(b"GET /x\x01y HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400")
    with connect(handle) as sock:  # a body that stops coming: astra's own 408
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408")
    assert wait_for(lambda: len(access_lines) >= 3)
    lines = {m["status"]: m for m in access_lines}
    evil, unparsed, slow = lines["200"], lines["400"], lines["408"]
    assert evil["request"] == 'GET /a\\x22b\\x5cc HTTP/1.1'
    assert evil["agent"] == 'evil\\x22 200 1 \\x22-\\x22 \\x22x\\x5c\\xe9\\xff' and evil["referer"] == "\\x80\\x22"
    assert (unparsed["request"], unparsed["status"], unparsed["micros"]) == ("-", "400", "-")
    assert slow["request"] == "POST /slow HTTP/1.1"
    assert len(access_lines) == 3


def test_a_request_refused_for_overload_is_logged(serve, access_lines):
    started, release = threading.Event(), threading.Event()

    def busy(request):
        started.set()
        release.wait(5)
        return Response("late")

    handle = serve(busy, access_log=True, max_workers=1, max_queued_requests=1)
    if not handle.runtime.uses_worker_pool:
        pytest.skip("no worker pool: every connection has its own thread")
    socks = [connect(handle) for _ in range(3)]
    try:
        socks[0].sendall(b"GET /running HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert started.wait(5)
        socks[1].sendall(b"GET /queued HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert wait_for(lambda: handle.stats()["queue_depth"] == 1)
        socks[2].sendall(b"GET /refused HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(socks[2]).startswith(b"HTTP/1.1 503")
    finally:
        release.set()
        for sock in socks:
            sock.close()
    lines = by_target(access_lines, 3)
    assert [lines[target]["status"] for target in ("/refused", "/running", "/queued")] == ["503", "200", "200"]


def test_the_cli_prints_access_lines_at_the_default_log_level():
    server = subprocess.Popen(
        [sys.executable, "-m", "astra", "tests.apps:hello", "--bind", "127.0.0.1:0", "--access-log"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        url = server.stdout.readline().split()[-1]
        assert httpx.get(url + "/cli", headers={"user-agent": "cli-test"}).status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    line, = [line for line in err.splitlines() if "/cli" in line]
    assert LINE.fullmatch(line) and line.startswith("127.0.0.1 - - [") and line.endswith(tuple("0123456789"))
    assert '"GET /cli HTTP/1.1" 200 12 "-" "cli-test" ' in line
