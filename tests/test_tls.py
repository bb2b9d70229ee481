"""HTTPS on every runtime: ALPN, client certificates, and the defences TLS needs.

Real clients only (curl, h2load, httpx, openssl s_client, Python's ``ssl``),
against certificates made for this test run (``certificates``, trustme).
The behavioural suites of ``test_serving``, ``test_wsgi`` and ``test_asgi``
also run whole over TLS (their ``-tls`` cases); this module is about what
only TLS has: the handshake, what it settles, and how it fails.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from astra import ASGIHandler, ClientCertificates, Response, WSGIAdapter
from astra.registry import load_runtime

from .conftest import read_until_closed, wait_for

MIB = 1024 * 1024


def whoami(request):
    tls = request.connection.tls
    return Response(json.dumps({
        "version": request.http_version, "scheme": request.connection.scheme,
        "tls": tls and tls.version, "cipher": tls and tls.cipher, "alpn": tls and tls.alpn,
        "sni": tls and tls.server_name,
        "client": tls and tls.client_certificate and dict(x[0] for x in tls.client_certificate["subject"]),
    }), content_type="application/json")


def whoami_wsgi(environ, start_response):
    body = json.dumps({"version": environ["SERVER_PROTOCOL"], "scheme": environ["wsgi.url_scheme"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def whoami_asgi(scope, receive, send):
    body = json.dumps({"version": scope["http_version"], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


INTERFACES = {"native": whoami, "wsgi": WSGIAdapter(whoami_wsgi), "asgi": ASGIHandler(whoami_asgi)}


def _serve_tls(serve, certificates, handler=whoami, **options):
    return serve(handler, tls=certificates.settings(**{k: options.pop(k) for k in list(options)
                                                         if k in ("ca_certs", "client_certificates",
                                                                  "max_handshakes")}), **options)


def _tls_client(handle, certificates, *, alpn=("http/1.1",), certificate=False, context=None):
    """A client TLS socket, handshake done (SNI "localhost")."""
    context = context or certificates.client_context(certificate=certificate, alpn=list(alpn))
    sock = socket.create_connection(handle.address, timeout=5)
    return context.wrap_socket(sock, server_hostname="localhost")


def _get(sock: ssl.SSLSocket, path: str = "/", close: bool = True) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{'Connection: close' if close else ''}\r\n\r\n".encode())
    return read_until_closed(sock) if close else sock.recv(65536)


def _hello_ok(handle, certificates) -> bool:
    with _tls_client(handle, certificates) as sock:
        return _get(sock).startswith(b"HTTP/1.1 200 ")


def _curl(handle, certificates, *args: str) -> subprocess.CompletedProcess:
    port = handle.address[1]
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", certificates.ca,
                           "--resolve", f"localhost:{port}:127.0.0.1", *args, f"https://localhost:{port}/"],
                          capture_output=True, text=True, timeout=20)


def _no_complaints(caplog, capfd) -> None:
    complaints = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not complaints, complaints
    assert "Traceback" not in capfd.readouterr().err


# ALPN: HTTP/2 as browsers reach it ---------------------------------------------------------

@pytest.mark.parametrize("interface", INTERFACES)
def test_curl_reaches_http2_and_http11_by_alpn(serve, runtime, certificates, interface):
    if interface == "asgi" and not load_runtime(runtime).supports_async:
        pytest.skip("ASGI applications run on the event-loop runtimes")
    handle = _serve_tls(serve, certificates, INTERFACES[interface])
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        result = _curl(handle, certificates, flag)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen["scheme"] == "https"
        assert seen["version"] in (version, f"HTTP/{version}")
    if interface == "native":  # what the handshake settled reaches the handler
        seen = json.loads(_curl(handle, certificates, "--http2").stdout)
        assert seen["tls"] == "TLSv1.3" and seen["alpn"] == "h2" and seen["sni"] == "localhost"
        assert seen["cipher"].startswith("TLS_")


@pytest.mark.skipif(not shutil.which("h2load"), reason="h2load (nghttp2-client) is not installed")
@pytest.mark.parametrize("interface", INTERFACES)
def test_h2load_over_tls(serve, runtime, certificates, interface):
    if interface == "asgi" and not load_runtime(runtime).supports_async:
        pytest.skip("ASGI applications run on the event-loop runtimes")
    handle = _serve_tls(serve, certificates, INTERFACES[interface])
    result = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", f"https://127.0.0.1:{handle.address[1]}/"],
                            capture_output=True, text=True, timeout=60)
    assert "Application protocol: h2" in result.stdout, result.stdout + result.stderr
    assert "400 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout


def test_without_alpn_a_client_gets_http11(serve, certificates):
    handle = _serve_tls(serve, certificates)
    context = certificates.client_context()  # no ALPN at all
    with _tls_client(handle, certificates, context=context) as sock:
        assert sock.selected_alpn_protocol() is None
        reply = _get(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"alpn": null' in reply


def test_http2_preface_without_alpn_h2_is_not_http2(serve, certificates):
    """Over TLS, HTTP/2 is what ALPN agreed, not what the first bytes look like."""
    handle = _serve_tls(serve, certificates)
    with _tls_client(handle, certificates, alpn=("http/1.1",)) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 505 "), reply[:60]  # answered as HTTP/1.1: "HTTP/2.0 is not supported here"


def test_http_1_only_offers_only_http11(serve, certificates):
    handle = _serve_tls(serve, certificates, http="1")
    with _tls_client(handle, certificates, alpn=("h2", "http/1.1")) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert _get(sock).startswith(b"HTTP/1.1 200 ")


# Client certificates -------------------------------------------------------------------------

def test_a_required_client_certificate_is_checked(serve, certificates, caplog, capfd):
    handle = _serve_tls(serve, certificates, ca_certs=certificates.ca,
                        client_certificates=ClientCertificates.REQUIRED)
    with httpx.Client(verify=certificates.client_context(certificate=True), http2=True) as client:
        seen = client.get(handle.url.replace("127.0.0.1", "localhost")).json()
    assert seen["client"]["commonName"] == "client.example.test"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with _tls_client(handle, certificates) as sock:  # TLS 1.3: the refusal arrives after the handshake
            reply = _get(sock)
            if not reply:
                raise ConnectionError("closed without a response")
    result = _curl(handle, certificates, "--http2")
    assert result.returncode != 0  # curl without a certificate
    with httpx.Client(verify=certificates.client_context(certificate=True)) as client:
        assert client.get(handle.url.replace("127.0.0.1", "localhost")).status_code == 200
    _no_complaints(caplog, capfd)


def test_an_optional_client_certificate_is_shown_when_sent(serve, certificates):
    handle = _serve_tls(serve, certificates, ca_certs=certificates.ca,
                        client_certificates=ClientCertificates.OPTIONAL)
    url = handle.url.replace("127.0.0.1", "localhost")
    with httpx.Client(verify=certificates.client_context(certificate=True)) as client:
        assert client.get(url).json()["client"]
    with httpx.Client(verify=certificates.client_context()) as client:
        assert client.get(url).json()["client"] is None


async def tls_scope_asgi(scope, receive, send):
    body = json.dumps(scope.get("extensions", {}).get("tls")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


#: IANA's numbers for the suites a client below is held to (RFC 8446 B.4, RFC 5289).
IANA_SUITES = {"TLS_AES_256_GCM_SHA384": 0x1302, "TLS_AES_128_GCM_SHA256": 0x1301,
               "TLS_CHACHA20_POLY1305_SHA256": 0x1303, "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
               "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F}


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_asgi_apps_get_the_tls_extension(serve, runtime, certificates, version):
    if not load_runtime(runtime).supports_async:
        pytest.skip("ASGI needs an event-loop runtime")
    from cryptography import x509

    handle = _serve_tls(serve, certificates, ASGIHandler(tls_scope_asgi), ca_certs=certificates.ca,
                        client_certificates=ClientCertificates.OPTIONAL)
    for with_certificate in (True, False):
        context = certificates.client_context(certificate=with_certificate)
        context.maximum_version = context.minimum_version = ssl.TLSVersion[version.replace(".", "_")]
        if version == "TLSv1.2":
            context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
        with _tls_client(handle, certificates, context=context) as sock:
            suite = sock.cipher()[0]
            tls = json.loads(_get(sock).partition(b"\r\n\r\n")[2])
        assert tls["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[version]
        assert tls["cipher_suite"] == IANA_SUITES[suite]
        server = x509.load_pem_x509_certificate(tls["server_cert"].encode())
        assert server == x509.load_pem_x509_certificate(open(certificates.server, "rb").read())
        assert tls["client_cert_error"] is None
        if with_certificate:
            sent = x509.load_pem_x509_certificate(open(certificates.client, "rb").read())
            assert x509.load_pem_x509_certificate(tls["client_cert_chain"][0].encode()) == sent
            assert tls["client_cert_name"] == sent.subject.rfc4514_string()
            assert tls["client_cert_name"].startswith("CN=client.example.test,")
        else:
            assert (tls["client_cert_chain"], tls["client_cert_name"]) == ([], None)
    with httpx.Client() as client:  # the extension is only ever there over TLS
        plain = serve(ASGIHandler(tls_scope_asgi))
        assert client.get(plain.url).json() is None


def test_client_certificates_without_authorities_is_a_configuration_error(certificates):
    with pytest.raises(ValueError, match="ca_certs"):
        certificates.settings(client_certificates="required")


# Versions and ciphers ------------------------------------------------------------------------

def _old_client(maximum: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")  # let the client try what the server refuses
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = maximum
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls12_with_aead_is_served_and_older_or_weaker_is_refused(serve, certificates):
    handle = _serve_tls(serve, certificates)
    good = _old_client(ssl.TLSVersion.TLSv1_2, "ECDHE+AESGCM")
    with _tls_client(handle, certificates, context=good) as sock:
        assert sock.version() == "TLSv1.2"
        assert _get(sock).startswith(b"HTTP/1.1 200 ")
    cbc = "AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"  # no forward secrecy, or no AEAD
    for context in (_old_client(ssl.TLSVersion.TLSv1_1), _old_client(ssl.TLSVersion.TLSv1_2, cbc)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _tls_client(handle, certificates, context=context).close()
    assert _hello_ok(handle, certificates)


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_renegotiation_is_refused(serve, certificates, caplog, capfd):
    handle = _serve_tls(serve, certificates)
    # s_client renegotiates when it reads "R" on a line of its own (TLS 1.2: 1.3 has no renegotiation).
    result = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{handle.address[1]}",
                             "-servername", "localhost"],
                            input="R\n", capture_output=True, text=True, timeout=20)
    output = result.stdout + result.stderr
    assert "RENEGOTIATING" in output
    assert "no renegotiation" in output or "alert" in output.lower(), output[-800:]
    assert _hello_ok(handle, certificates)
    _no_complaints(caplog, capfd)


# Hostile and broken clients ------------------------------------------------------------------

def test_plain_http_on_the_tls_port_is_told_so(serve, certificates):
    handle = _serve_tls(serve, certificates)
    with socket.create_connection(handle.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"TLS" in reply
    assert _hello_ok(handle, certificates)


def _client_hello() -> bytes:
    """The first flight of a real TLS client, as bytes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("opening", ["garbage", "record-garbage", "half-hello", "whole-hello"])
def test_broken_or_abandoned_handshakes_close_quietly(serve, certificates, caplog, capfd, opening):
    handle = _serve_tls(serve, certificates)
    hello = _client_hello()
    sent = {"garbage": bytes(range(1, 256)) * 4, "record-garbage": b"\x16\x03\x01\x00\x20" + b"\xff" * 32,
            "half-hello": hello[:len(hello) // 2], "whole-hello": hello}[opening]
    with caplog.at_level(logging.DEBUG, logger="astra"):
        for _ in range(3):
            with socket.create_connection(handle.address, timeout=5) as sock:
                sock.sendall(sent)
                if opening.endswith("garbage"):
                    read_until_closed(sock)  # the server ends it (an alert at most)
            # the others are abandoned by the client mid-handshake
        assert _hello_ok(handle, certificates)
    _no_complaints(caplog, capfd)


def test_a_stalled_handshake_is_cut_off_like_a_slow_head(serve, certificates):
    handle = _serve_tls(serve, certificates, header_timeout=0.5)
    hello = _client_hello()
    with socket.create_connection(handle.address, timeout=10) as sock:
        sock.sendall(hello[:20])
        started = time.monotonic()
        assert read_until_closed(sock, timeout=10) == b""  # no plaintext 408 in a TLS connection
        assert time.monotonic() - started < 5
    with socket.create_connection(handle.address, timeout=10) as sock:  # silent from the start
        started = time.monotonic()
        assert read_until_closed(sock, timeout=10) == b""
        assert time.monotonic() - started < 5
    assert _hello_ok(handle, certificates)


def test_handshakes_in_progress_are_bounded(serve, certificates):
    handle = _serve_tls(serve, certificates, max_handshakes=2, header_timeout=3)
    hello = _client_hello()
    stalled = []
    for _ in range(2):
        sock = socket.create_connection(handle.address, timeout=10)
        sock.sendall(hello[:20])
        stalled.append(sock)
    time.sleep(0.3)  # the server has taken both
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _hello_ok(handle, certificates)  # a third is closed before its handshake
        for sock in stalled:  # once the stalled ones are cut off, handshakes go through again
            read_until_closed(sock, timeout=10)
        assert wait_for(lambda: _quietly(_hello_ok, handle, certificates), timeout=5)
    finally:
        for sock in stalled:
            sock.close()


def _quietly(check, *args) -> bool:
    try:
        return check(*args)
    except (ssl.SSLError, ConnectionError):
        return False


def test_the_connection_ends_with_close_notify(serve, certificates):
    handle = _serve_tls(serve, certificates)
    context = certificates.client_context(alpn=["http/1.1"])
    with socket.create_connection(handle.address, timeout=5) as raw:
        sock = context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # SSLEOFError here: the server closed without close_notify
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")


def test_a_slow_head_over_tls_gets_its_408(serve, certificates):
    handle = _serve_tls(serve, certificates, header_timeout=0.5)
    with _tls_client(handle, certificates) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        started = time.monotonic()
        reply = read_until_closed(sock, timeout=10)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:60]
    assert time.monotonic() - started < 5


def test_a_slow_upload_over_tls_gets_its_408(serve, certificates):
    """A body trickled a byte at a time, never silent for io_timeout: overdue at io_timeout + size / rate."""
    handle = _serve_tls(serve, certificates, lambda request: Response(request.body.read()), io_timeout=1,
                        min_receive_rate=1024)
    with _tls_client(handle, certificates) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        reply = b""
        sock.settimeout(0.25)
        while time.monotonic() - started < 8 and b"\r\n" not in reply:
            try:
                sock.sendall(b"a")
                reply += sock.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, ConnectionError):
                break
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:60]
    assert time.monotonic() - started < 6
    assert _hello_ok(handle, certificates)


def test_a_reader_that_stalls_over_tls_is_cut_off(serve, certificates):
    size = 32 * MIB
    handle = _serve_tls(serve, certificates, lambda request: Response(b"x" * size) if request.path == "/big"
                        else Response("hello"), io_timeout=1, min_send_rate=16 * MIB)
    with _tls_client(handle, certificates) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(4)  # not reading: the server must give up on us
        assert _hello_ok(handle, certificates)  # and everyone else is served meanwhile
        received = 0
        try:
            while chunk := sock.recv(65536):
                received += len(chunk)
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass
    assert received < size / 2


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
def test_a_file_goes_out_encrypted(serve, certificates, tmp_path, http2):
    """No sendfile under TLS: the file is read in slices (os.pread, not the file object) and encrypted."""
    data = bytes(range(256)) * 8000  # 2 MB
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    handle = _serve_tls(serve, certificates, lambda request: Response(open(path, "rb")))
    with httpx.Client(verify=certificates.client_context(), http2=http2, http1=not http2) as client:
        for _ in range(2):
            reply = client.get(handle.url.replace("127.0.0.1", "localhost"))
            assert reply.content == data


def test_a_large_upload_over_tls(serve, certificates):
    received = []

    def upload(request):
        received.append(len(request.body.read()))
        return Response("ok")

    handle = _serve_tls(serve, certificates, upload)
    with httpx.Client(verify=certificates.client_context(), http2=True) as client:
        assert client.post(handle.url.replace("127.0.0.1", "localhost"), content=b"u" * (8 * MIB)).text == "ok"
    assert received == [8 * MIB]


def test_many_clients_at_once_over_tls(serve, certificates):
    handle = _serve_tls(serve, certificates)
    failures = []

    def one() -> None:
        try:
            if not _hello_ok(handle, certificates):
                failures.append("bad reply")
        except Exception as exc:  # noqa: BLE001 (recorded, then asserted)
            failures.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures[:3]


# The command line ------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_serves_https(certificates):
    server = subprocess.Popen(
        [sys.executable, "-m", "astra", "experiments.apps.bench:flask_app", "--bind", "127.0.0.1:0",
         "--certfile", certificates.server, "--ca-certs", certificates.ca, "--client-certs", "optional"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = server.stdout.readline().split()[-1]
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=certificates.client_context(certificate=True), http2=True) as client:
            reply = client.get(url.replace("127.0.0.1", "localhost") + "/")
        assert (reply.status_code, reply.http_version) == (200, "HTTP/2")
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=15)
    assert server.returncode == 0


@pytest.mark.parametrize("args, said", [
    (["--certfile", "/nonexistent.pem"], "TLS: [Errno 2]"),
    (["--keyfile", "/x.pem"], "need --certfile"),
    (["--certfile", "{server}", "--client-certs", "required"], "ca_certs"),
    (["--certfile", "{ca}"], "TLS:"),  # a certificate without its key
])
def test_the_cli_says_what_is_wrong_with_tls_settings(certificates, args, said):
    args = [a.format(server=certificates.server, ca=certificates.ca) for a in args]
    result = subprocess.run([sys.executable, "-m", "astra", "experiments.apps.bench:flask_app", "--bind", "127.0.0.1:0",
                             *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
