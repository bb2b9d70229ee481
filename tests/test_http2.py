"""HTTP/2 on every runtime: negotiation, concurrent streams, flow control, resets, GOAWAY.

The httpx-based tests elsewhere already run over HTTP/2; these look at what
only HTTP/2 has, with real clients (curl, h2load) and with h2's client side on
a raw socket where a test must see individual frames.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import h2.errors
import h2.settings
import httpx
import pytest

from astra import Response

from .h2client import H2Client

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")


def app(request):
    """Routes the tests below use."""
    if request.path == "/sleep":
        time.sleep(float(request.query_params["s"][0]))
    elif request.path == "/protocol":
        return Response(request.protocol)
    elif request.path == "/big":
        return Response(iter([b"x" * 65536] * 32))  # 2 MiB, streamed
    elif request.path == "/fail-mid-body":
        def parts():
            yield b"first part"
            raise RuntimeError("the body broke half-way")
        return Response(parts())
    elif request.method == "POST":
        return Response(request.read())
    return Response("ok " + request.path)


def curl(*args: str) -> str:
    done = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_curl
def test_curl_prior_knowledge_and_upgrade_and_plain_http1(serve):
    handle = serve(app)
    url = handle.url + "/protocol"
    assert curl("--http2-prior-knowledge", url) == "HTTP/2"
    assert curl("--http2", url) == "HTTP/2"  # Upgrade: h2c, 101, then stream 1
    assert curl("--http1.1", url) == "HTTP/1.1"
    # A request with a body does not upgrade; it is answered over HTTP/1.1.
    assert curl("--http2", "--data-binary", "posted", handle.url + "/") == "posted"


@needs_h2load
def test_h2load_many_streams_no_failures(serve):
    handle = serve(app)
    done = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", handle.url + "/"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in done.stdout, done.stdout


def test_sleeping_stream_does_not_delay_its_sibling(serve):
    handle = serve(app)
    client = H2Client(handle.address)
    slow = client.request("/sleep?s=1.5")
    fast = client.request("/fast")
    sent = time.monotonic()
    client.read(lambda c: fast in c.ended)
    assert client.bodies[fast] == b"ok /fast"
    assert slow not in client.ended, "the fast stream waited for the slow one"
    assert client.ended[fast] - sent < 1.0
    client.read(lambda c: slow in c.ended)
    assert client.status[slow] == 200
    client.close()


def test_many_concurrent_streams_on_one_connection_run_in_parallel(serve):
    handle = serve(app)
    client = H2Client(handle.address)
    started = time.monotonic()
    streams = [client.request("/sleep?s=0.5") for _ in range(20)]
    client.read(lambda c: all(s in c.ended for s in streams), timeout=20)
    assert all(client.status[s] == 200 for s in streams)
    assert time.monotonic() - started < 4.0, "20 sleeping streams ran one after another"
    client.close()


def test_handler_failure_mid_body_resets_only_its_stream(serve, caplog):
    handle = serve(app)
    client = H2Client(handle.address)
    broken = client.request("/fail-mid-body")
    client.read(lambda c: broken in c.resets)
    assert client.resets[broken] == h2.errors.ErrorCodes.INTERNAL_ERROR
    sibling = client.request("/after")
    client.read(lambda c: sibling in c.ended)
    assert client.bodies[sibling] == b"ok /after" and client.goaway is None
    client.close()


def test_a_handler_exception_before_the_response_is_a_500(serve):
    def handler(request):
        raise RuntimeError("boom")

    handle = serve(handler)
    client = H2Client(handle.address)
    stream = client.request("/")
    client.read(lambda c: stream in c.ended)
    assert client.status[stream] == 500
    client.close()


def test_a_small_client_window_streams_a_large_response(serve):
    """The server waits on WINDOW_UPDATEs instead of overrunning the client's window."""
    handle = serve(app)
    client = H2Client(handle.address, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    stream = client.request("/big")
    client.read(lambda c: stream in c.ended, timeout=30)
    assert client.bodies[stream] == b"x" * (65536 * 32)
    client.close()


def test_a_client_that_does_not_read_stalls_only_its_stream(serve):
    handle = serve(app)
    stalled = H2Client(handle.address, auto_ack=False)
    stream = stalled.request("/big")
    stalled.read(lambda c: len(c.bodies.get(stream, b"")) >= 65535)
    # Its window is shut; other clients are served meanwhile.
    with httpx.Client(http1=False, http2=True) as other:
        assert other.get(handle.url + "/other").text == "ok /other"
    assert len(stalled.bodies[stream]) == 65535
    stalled.close()


def test_upload_larger_than_the_windows_is_echoed(serve):
    handle = serve(app)
    payload = bytes(range(256)) * 12_000  # ~3 MiB: past the stream and connection windows
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        assert client.post(handle.url + "/", content=payload).content == payload


def _start_trickling_post(client: H2Client, declared: int = 1000) -> int:
    """A POST stream with a small declared body of which only a few bytes are sent."""
    stream = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream, [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"),
                                      (b":authority", b"test"), (b"content-length", str(declared).encode())])
    client.conn.send_data(stream, b"part")
    client.flush()
    return stream


def test_streams_trickling_small_bodies_hold_no_worker(serve):
    """The slow-body attack over HTTP/2: small bodies that never finish must not occupy the only worker."""
    handle = serve(app, max_workers=1)
    if handle.runtime.pins_connections:
        pytest.skip("a pinned worker belongs to its connection: the trickling one holds the only worker")
    trickling = H2Client(handle.address)
    for _ in range(5):
        _start_trickling_post(trickling)
    time.sleep(0.3)
    other = H2Client(handle.address)
    whole = other.request("/", method="POST", body=b"whole", headers=[(b"content-length", b"5")])
    plain = other.request("/plain")
    other.read(lambda c: whole in c.ended and plain in c.ended, timeout=5)
    assert other.bodies[whole] == b"whole" and other.bodies[plain] == b"ok /plain"
    other.close()
    trickling.close()


def test_a_small_body_that_stops_arriving_gets_408_on_its_stream_only(serve):
    handle = serve(app, io_timeout=1.0)
    client = H2Client(handle.address)
    stalled = _start_trickling_post(client)
    client.read(lambda c: stalled in c.ended or stalled in c.resets, timeout=6)
    assert client.status.get(stalled) == 408
    sibling = client.request("/after")
    client.read(lambda c: sibling in c.ended)
    assert client.bodies[sibling] == b"ok /after" and client.goaway is None
    client.close()


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp (nghttp2-client) is not installed")
def test_graceful_shutdown_sends_goaway_and_finishes_accepted_streams(serve):
    """nghttp, not h2's client: h2 closes its state machine on GOAWAY and then
    rejects the in-flight stream's response (encode/httpcore#46)."""
    handle = serve(app)
    client = subprocess.Popen(["nghttp", "-v", handle.url + "/sleep?s=1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_stream_start(handle)
        assert handle.shutdown(10)
        output, _ = client.communicate(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
    assert "recv GOAWAY frame" in output and "error_code=NO_ERROR" in output, output
    assert ":status: 200" in output, output
    goaway_at = output.index("recv GOAWAY frame")
    assert output.index(":status: 200") > goaway_at, "the stream was answered before the GOAWAY"


def wait_for_stream_start(handle, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.stats().get("connections_open"):
            time.sleep(0.3)  # the request is in, its handler sleeping
            return True
        time.sleep(0.02)
    return False


def test_rapid_reset_gets_goaway_enhance_your_calm(serve):
    handle = serve(app, max_client_resets=50)
    client = H2Client(handle.address)
    try:
        for _ in range(200):
            stream = client.request("/sleep?s=0.05")
            client.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            client.flush()
    except OSError:
        pass  # the server has hung up: it said why first
    client.read(lambda c: c.goaway is not None or c.closed, timeout=10)
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    client.close()
    with httpx.Client(http1=False, http2=True) as other:  # everyone else is still served
        assert other.get(handle.url + "/").status_code == 200


def test_ping_is_answered(serve):
    handle = serve(app)
    client = H2Client(handle.address)
    client.conn.ping(b"12345678")
    client.flush()
    client.read(lambda c: any(type(e).__name__ == "PingAckReceived" for e in c.events))
    client.close()


def test_settings_carry_the_configured_limits(serve):
    handle = serve(app, max_concurrent_streams=7, stream_window=100_000)
    client = H2Client(handle.address)
    client.read(lambda c: any(type(e).__name__ == "RemoteSettingsChanged" for e in c.events))
    remote = client.conn.remote_settings
    assert remote.max_concurrent_streams == 7
    assert remote.initial_window_size == 100_000
    client.close()


def test_http1_only_and_http2_only(serve):
    only1 = serve(app, http="1")
    assert httpx.get(only1.url + "/protocol").text == "HTTP/1.1"
    client = H2Client(only1.address)
    client.read(lambda c: c.closed, timeout=10)  # the preface is not an HTTP/1.1 request
    assert not client.status
    client.close()

    only2 = serve(app, http="2")
    with httpx.Client(http1=False, http2=True) as h2c:
        assert h2c.get(only2.url + "/protocol").text == "HTTP/2"
    with pytest.raises(httpx.HTTPError):
        httpx.get(only2.url + "/protocol")
