"""WSGI (PEP 3333) applications on astra: every runtime, HTTP/1.1 and HTTP/2, real clients.

The adapter is checked three ways: against PEP 3333 itself (the stdlib's
``wsgiref.validate`` wrapped around the applications, its complaints made
failures), against the cases PEP 3333 leaves to the server (lazy
``start_response``, ``write()``, ``exc_info``, ``close()`` exactly once,
bodies streamed both ways), and against real frameworks (Flask, Django).
Hostile and broken input is part of each: a client that vanishes mid
response, an application that breaks the rules.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import threading
import time
import tracemalloc
from collections import Counter
from wsgiref.validate import WSGIWarning, validator

import httpx
import pytest

from astra import ClientDisconnected
from astra.wsgi import WSGIAdapter

from . import wsgi_apps
from .conftest import PROTOCOLS_AND_TLS, connect, parse_responses, read_until_closed, wait_for
from .h2frames import FrameReader, data_frame, opening, request_frames
from .test_sendfile import UnreadableFile


@pytest.fixture(params=PROTOCOLS_AND_TLS)
def protocol(request):
    """This module's client tests run over TLS too (see conftest)."""
    return request.param


def test_validator_finds_nothing_wrong(serve, client, recwarn, caplog):
    recorder = wsgi_apps.Recorder(validator(wsgi_apps.validated_cases))
    handle = serve(WSGIAdapter(recorder))
    expected = {"/list": (200, b"listed"), "/lazy": (200, b"lazy"), "/write": (200, b"written"),
                "/file": (200, b"f" * 100_000), "/empty": (204, b""), "/recovered": (500, b"recovered")}
    for path, (status, body) in expected.items():
        reply = client.get(handle.url + path)
        assert (reply.status_code, reply.content) == (status, body), path
    lines = b"".join(b"line %d\n" % i for i in range(2000))
    reply = client.post(handle.url + "/upload", content=lines)
    assert reply.text == f"2000 lines {len(lines)} bytes"
    assert [r.getMessage() for r in caplog.records if r.name == "astra.wsgi"] == ["upload read"]  # wsgi.errors
    paths = [*expected, "/upload"]
    assert wait_for(lambda: all(recorder.closes[p] == 1 for p in paths)), recorder.closes
    assert recorder.errors == []
    assert not [w.message for w in recwarn if issubclass(w.category, WSGIWarning)]


def test_environ(serve, client, protocol):
    handle = serve(WSGIAdapter(wsgi_apps.environ_app, root_path="/app"))
    headers = [("Cookie", "a=1"), ("Cookie", "b=2"), ("X-Dup", "one"), ("X-Dup", "two"),
               ("X_Forwarded_For", "10.6.6.6"), ("User-Agent", "astra-tests")]
    reply = client.get(handle.url + "/app/caf%C3%A9/x%2Fy?a=1&b=%20&c", headers=headers)
    env = reply.json()
    port = str(handle.address[1])
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/caf\xc3\xa9/x/y"  # PEP 3333: the bytes, each one a character
    assert env["QUERY_STRING"] == "a=1&b=%20&c"
    assert env["SERVER_PROTOCOL"] == {"h1": "HTTP/1.1", "h2": "HTTP/2"}[protocol]
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", port)
    assert env["HTTP_HOST"] == f"127.0.0.1:{port}"  # on HTTP/2, from :authority
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_DUP"] == "one,two"
    assert env["HTTP_USER_AGENT"] == "astra-tests"
    assert not [key for key in env if "FORWARDED" in key]  # a name with "_" could pose as a proxy's
    assert not [key for key in env if key.startswith("HTTP_:") or key.startswith(":")]
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert env["wsgi.url_scheme"] == ("https" if protocol.tls else "http") and env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False and env["wsgi.input_terminated"] is True

    outside = client.post(handle.url + "/application?x", content=b"k=v", headers={"Content-Type": "text/x"}).json()
    assert (outside["SCRIPT_NAME"], outside["PATH_INFO"]) == ("/app", "/application")  # not under /app/
    assert (outside["CONTENT_TYPE"], outside["CONTENT_LENGTH"], outside["body"]) == ("text/x", "3", "k=v")

    if protocol == "h1":  # HTTP/1.0 without Host: the address the client reached
        with connect(handle) as sock:
            sock.sendall(b"GET /app/ HTTP/1.0\r\n\r\n")
            (_, body), = parse_responses(read_until_closed(sock))
        env = json.loads(body)
        assert (env["SERVER_NAME"], env["SERVER_PORT"], env["PATH_INFO"]) == ("127.0.0.1", port, "/")
        assert env["SERVER_PROTOCOL"] == "HTTP/1.0" and "HTTP_HOST" not in env


def test_streamed_upload_is_read_in_pieces_with_bounded_memory(serve, client):
    handle = serve(WSGIAdapter(wsgi_apps.upload_app))
    piece = bytes(range(256)) * 256  # 64 KiB
    total = 96 * len(piece)  # 6 MiB
    client.get(handle.url)  # connect (and warm up) before measuring

    def upload():
        for _ in range(96):
            yield piece

    tracemalloc.start()
    try:
        reply = client.post(handle.url + "/upload", content=upload())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.text == f"{total} {hashlib.sha256(piece * 96).hexdigest()}"
    assert peak < total // 2, f"peak {peak} bytes for a {total}-byte upload: buffered whole?"



def test_client_leaving_mid_upload_ends_the_request_quietly(serve, protocol, caplog, capfd):
    reading = threading.Event()
    seen = []

    def app(environ, start_response):
        reading.set()
        try:
            environ["wsgi.input"].read()
        except BaseException as exc:
            seen.append(exc)
            raise  # as an application that does not catch it would
        return wsgi_apps.text(start_response, b"read it all")

    handle = serve(WSGIAdapter(app), io_timeout=3)
    with caplog.at_level(logging.WARNING):
        with connect(handle, protocol) as sock:
            if protocol == "h1":
                sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000)
            else:
                fields = [(":method", "POST"), (":path", "/up"), (":scheme", "http"), (":authority", "x"),
                          ("content-length", "1000000")]
                sock.sendall(opening() + request_frames(1, fields, end_stream=False) + data_frame(1, b"a" * 16384))
            assert reading.wait(5)
        assert wait_for(lambda: seen, timeout=10), "the application never learnt that the client left"
        assert httpx.get(handle.url, verify=False).text == "read it all"
    assert isinstance(seen[0], ClientDisconnected), repr(seen[0])
    complaints = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not complaints, [r.getMessage() for r in complaints]
    assert "Traceback" not in capfd.readouterr().err


def _streams(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/lazy":  # start_response on the first next(), after empty chunks
        def lazy():
            yield b""
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b""
            yield b"first "
            yield b"second"
        return lazy()
    if path == "/write":  # write() before the iterable, and from within it
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"1")

        def rest():
            yield b"2"
            write(b"3")
            yield b"4"
        return rest()
    if path == "/ceiling":  # more than the declared Content-Length: cut at it
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter([b"abc", b"defgh", b"ijk"])
    if path == "/head":  # no body, a declared length: what HEAD gets
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1234")])
        return []
    if path == "/dry":  # a generator that yields nothing
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter(())
    if path == "/write-last":  # write() while the iterable finishes
        write = start_response("200 OK", [("Content-Type", "text/plain")])

        def last():
            yield b"a"
            write(b"b")
        return last()
    if path == "/reason":  # a reason phrase of its own
        start_response("299 Quite Fine", [("Content-Type", "text/plain")])
        return [b"ok"]
    raise AssertionError(path)


def test_generators_write_and_declared_length(serve, client):
    handle = serve(WSGIAdapter(_streams))
    assert client.get(handle.url + "/lazy").text == "first second"
    assert client.get(handle.url + "/write").text == "1234"
    reply = client.get(handle.url + "/ceiling")
    assert (reply.text, reply.headers["content-length"]) == ("abcde", "5")
    reply = client.head(handle.url + "/head")
    assert (reply.status_code, reply.content, reply.headers["content-length"]) == (200, b"", "1234")
    reply = client.get(handle.url + "/dry")
    assert (reply.status_code, reply.content) == (200, b"")
    assert client.get(handle.url + "/write-last").text == "ab"
    reply = client.get(handle.url + "/reason")
    assert (reply.status_code, reply.text) == (299, "ok")
    assert reply.reason_phrase == ("Quite Fine" if reply.http_version == "HTTP/1.1" else "")


def _exc_info_after_head(environ, start_response):
    if environ["PATH_INFO"] == "/":
        return wsgi_apps.text(start_response, b"fine")

    def body():
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise ValueError("failed after the head was sent")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never sent"
    return body()


def test_exc_info_after_the_head_cuts_the_response_off(serve, client, caplog):
    handle = serve(WSGIAdapter(_exc_info_after_head))
    with caplog.at_level(logging.ERROR, logger="astra"):
        with pytest.raises(httpx.HTTPError):
            client.get(handle.url + "/late")
    assert any("failed after the head was sent" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert client.get(handle.url).text == "fine"


def test_close_is_called_once_on_complete_and_failing_responses(serve, client, caplog):
    closed: Counter = Counter()

    def app(environ, start_response):
        key = environ["PATH_INFO"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        fail_after = {"/complete": None, "/fails-first": 0, "/fails-mid": 2}[key]
        return wsgi_apps.Closing(closed, key, [b"a", b"b", b"c"], fail_after)

    handle = serve(WSGIAdapter(app))
    with caplog.at_level(logging.ERROR, logger="astra"):
        assert client.get(handle.url + "/complete").text == "abc"
        assert client.get(handle.url + "/fails-first").status_code == 500
        with pytest.raises(httpx.HTTPError):
            client.get(handle.url + "/fails-mid")
    assert wait_for(lambda: len(closed) == 3)
    time.sleep(0.1)  # a second close() would come now
    assert closed == {"/complete": 1, "/fails-first": 1, "/fails-mid": 1}


def test_close_is_called_once_when_the_client_leaves_mid_response(serve, protocol):
    closed: Counter = Counter()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return wsgi_apps.Closing(closed, "big", [b"x" * 65536] * 1024)  # 64 MiB, never all sent

    handle = serve(WSGIAdapter(app), io_timeout=3)
    with connect(handle, protocol) as sock:
        if protocol == "h1":
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            seen = b""
            while b"\r\n\r\n" not in seen:
                seen += sock.recv(65536)
            assert seen.startswith(b"HTTP/1.1 200 ")
        else:
            sock.sendall(opening() + request_frames(1, [(":method", "GET"), (":path", "/big"),
                                                         (":scheme", "http"), (":authority", "x")]))
            reader = FrameReader()
            while 1 not in reader.status:
                reader.feed(sock.recv(65536))
            assert reader.status[1] == 200
    assert wait_for(lambda: closed["big"] == 1, timeout=10), "close() never called"
    time.sleep(0.1)
    assert closed["big"] == 1


def _mistakes(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        return wsgi_apps.text(start_response, b"still here")
    if path == "/raises":
        raise RuntimeError("the application failed before its response")
    if path == "/hop-by-hop":
        return wsgi_apps.text(start_response, b"x", extra=[("Connection", "close")])
    if path == "/no-reason":
        start_response("200", [("Content-Type", "text/plain")])
    elif path == "/split-header":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: b=c")])
    elif path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
    elif path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text, not bytes"]
    elif path == "/none":
        start_response("200 OK", [])
        return None
    elif path == "/never-started":
        return [b"no start_response"]
    elif path == "/write-flood":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(64):
            write(b"w" * 65536)
    return [b"unreachable"]


MISTAKES = ["/raises", "/hop-by-hop", "/no-reason", "/split-header", "/twice", "/str-body", "/none",
            "/never-started", "/write-flood"]


def test_a_failing_application_gets_500_and_the_server_goes_on(serve, client, caplog):
    handle = serve(WSGIAdapter(_mistakes, max_write_buffer=1 << 20))
    with caplog.at_level(logging.ERROR, logger="astra"):
        for path in MISTAKES:
            reply = client.get(handle.url + path)
            assert reply.status_code == 500, path
            assert "Set-Cookie" not in reply.headers and "b=c" not in reply.text
            assert client.get(handle.url).text == "still here"
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) >= len(MISTAKES)


def test_file_wrapper_is_sent_as_a_file(serve, client, protocol, tmp_path):
    """Over HTTP/1.1 by sendfile (the whole file refuses to be read through Python); a part of it,
    and any of it over HTTP/2, read in blocks."""
    data = bytes(range(256)) * 1000
    (tmp_path / "data.bin").write_bytes(data)
    opened = []

    def app(environ, start_response):
        whole = environ["PATH_INFO"] == "/whole" and protocol == "h1"
        f = UnreadableFile(tmp_path / "data.bin") if whole else open(tmp_path / "data.bin", "rb")
        opened.append(f)
        headers = [("Content-Type", "application/octet-stream")]
        if environ["PATH_INFO"] == "/part":  # a range of the file: stop at its declared length
            f.seek(100)
            headers.append(("Content-Length", "1000"))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 32768)

    handle = serve(WSGIAdapter(app))
    reply = client.get(handle.url + "/whole")
    assert reply.content == data and reply.headers["content-length"] == str(len(data))
    reply = client.get(handle.url + "/part")
    assert reply.content == data[100:1100] and reply.headers["content-length"] == "1000"
    assert wait_for(lambda: all(f.closed for f in opened)), "file_wrapper's file left open"


def test_flask(serve, client, caplog):
    handle = serve(WSGIAdapter(wsgi_apps.make_flask_app()))
    url = handle.url
    assert client.get(url + "/").text == "flask index"
    assert client.get(url + "/items/42?q=x%20y").json() == {"id": 42, "q": "x y"}
    assert client.post(url + "/form", data={"name": "Ada Lovelace"}).text == "hello Ada Lovelace"
    upload = bytes(range(256)) * 800
    reply = client.post(url + "/upload", files={"file": ("notes.bin", io.BytesIO(upload), "application/x-notes")})
    assert reply.json() == {"name": "notes.bin", "size": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
    reply = client.get(url + "/stream")
    assert reply.text == "".join(f"line {i}\n" for i in range(100))
    reply = client.get(url + "/cookie/set")
    assert reply.cookies["flavour"] == "oat"
    assert client.get(url + "/cookie/get", headers={"Cookie": "flavour=oat"}).text == "oat"
    assert client.get(url + "/missing").status_code == 404
    with caplog.at_level(logging.CRITICAL, logger="astra"):  # Flask logs its traceback to wsgi.errors
        assert client.get(url + "/boom").status_code == 500
    assert client.get(url + "/").text == "flask index"


def test_django(serve, client):
    handle = serve(WSGIAdapter(wsgi_apps.make_django_app()))
    url = handle.url
    reply = client.get(url + "/hello/")
    assert (reply.status_code, reply.text) == (200, "django GET /hello/")
    reply = client.post(url + "/form/", data={"name": "Grace", "tag": ["a", "b"]})
    assert reply.json() == {"name": "Grace", "tags": ["a", "b"], "host": f"127.0.0.1:{handle.address[1]}"}
    assert client.get(url + "/form/").status_code == 405
    assert client.get(url + "/nowhere/").status_code == 404
    assert client.get(url + "/hello").status_code in (301, 404)  # APPEND_SLASH's redirect
    assert json.loads(client.post(url + "/form/", data={"name": "é"}).text)["name"] == "é"


def test_first_chunk_with_the_whole_declared_length_ends_the_body_but_a_generator_runs_to_its_end(serve, client):
    """A closing iterator (Flask's) whose first block is the declared Content-Length is whole at
    once and closed; a generator still runs past its last yield, as its author expects."""
    finished, closed = [], []

    class Closing:  # werkzeug's ClosingIterator, in miniature: not a generator
        def __init__(self, blocks):
            self.blocks = iter(blocks)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self.blocks)

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        if environ["PATH_INFO"] == "/closing":
            return Closing([b"hello", b"never sent"])

        def generate():
            yield b"hello"
            finished.append(True)
        return generate()

    handle = serve(WSGIAdapter(app))
    assert client.get(handle.url + "/closing").content == b"hello"
    assert wait_for(lambda: closed == [True])
    assert client.get(handle.url + "/generator").content == b"hello"
    assert wait_for(lambda: finished == [True])
