"""Fixtures shared by the behavioural tests.

Every behavioural test takes the ``serve`` fixture, which is parametrized over
``astra.available_runtimes()``: registering a runtime makes the whole suite
run against it. The asyncio runtime runs twice when uvloop is installed,
on asyncio's own loop (``asyncio``) and on uvloop's (``asyncio-uvloop``):
its default then is uvloop, and a loop nobody tests is a runtime nobody
tests. Tests that talk through the ``client`` fixture (httpx) are
parametrized over the protocols too: HTTP/1.1, and HTTP/2 with prior
knowledge on the same port.
"""

from __future__ import annotations

import importlib.util
import socket
import time

import h11
import httpx
import pytest

from astra import Server, available_runtimes


class RuntimeUnderTest(str):
    """A registered runtime's name (it compares as that name) and the options of the variant under test."""

    def __new__(cls, name: str, **options) -> RuntimeUnderTest:
        self = super().__new__(cls, name)
        self.options = options
        return self


def _runtimes_under_test() -> list:
    params = []
    for name in available_runtimes():
        if name == "asyncio":
            params.append(pytest.param(RuntimeUnderTest(name, loop="asyncio"), id=name))
            if importlib.util.find_spec("uvloop"):
                params.append(pytest.param(RuntimeUnderTest(name, loop="uvloop"), id="asyncio-uvloop"))
        else:
            params.append(pytest.param(RuntimeUnderTest(name), id=name))
    return params


#: Every runtime the behavioural tests run on (``pytest.param``s of :class:`RuntimeUnderTest`).
RUNTIMES_UNDER_TEST = _runtimes_under_test()


@pytest.fixture(params=RUNTIMES_UNDER_TEST)
def runtime(request) -> RuntimeUnderTest:
    return request.param


class ProtocolUnderTest(str):
    """``"h1"`` or ``"h2"`` (it compares as that name), over TLS or not."""

    def __new__(cls, name: str, tls: bool = False) -> ProtocolUnderTest:
        self = super().__new__(cls, name)
        self.tls = tls
        return self


#: The protocols every client-facing test runs over: HTTP/1.1, and HTTP/2 by prior knowledge.
PROTOCOLS = [pytest.param(ProtocolUnderTest("h1"), id="h1"), pytest.param(ProtocolUnderTest("h2"), id="h2")]
#: The same over TLS, HTTP/2 by ALPN: a module opts in by defining its own ``protocol`` fixture with
#: these params; its ``serve`` then serves HTTPS and its ``client`` trusts the test CA.
PROTOCOLS_AND_TLS = PROTOCOLS + [pytest.param(ProtocolUnderTest("h1", tls=True), id="h1-tls"),
                                 pytest.param(ProtocolUnderTest("h2", tls=True), id="h2-tls")]


@pytest.fixture(params=PROTOCOLS)
def protocol(request) -> ProtocolUnderTest:
    return request.param


class Certificates:
    """A certificate authority made for this test run, and files signed by it (trustme)."""

    def __init__(self, directory) -> None:
        import trustme

        self.authority = trustme.CA()
        self.ca = str(directory / "ca.pem")
        self.authority.cert_pem.write_to_path(self.ca)
        server = self.authority.issue_cert("localhost", "127.0.0.1", "::1")
        self.server = str(directory / "server.pem")  # key and chain in one file
        server.private_key_and_cert_chain_pem.write_to_path(self.server)
        client = self.authority.issue_cert("client.example.test", common_name="client.example.test")
        self.client = str(directory / "client.pem")
        client.private_key_and_cert_chain_pem.write_to_path(self.client)

    def settings(self, **options):
        from astra import TLSSettings

        return TLSSettings(self.server, **options)

    def client_context(self, *, certificate: bool = False, alpn: list[str] | None = None):
        """An ``ssl`` client context that trusts this run's authority (and shows its client certificate)."""
        import ssl

        context = ssl.create_default_context(cafile=self.ca)
        if certificate:
            context.load_cert_chain(self.client)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


def _tls_under_test(request) -> bool:
    protocol = request.getfixturevalue("protocol") if "protocol" in request.fixturenames else None
    return bool(getattr(protocol, "tls", False))


@pytest.fixture
def client(request, protocol):
    """An httpx client speaking the parametrized protocol (trusting the test CA, over TLS)."""
    verify = request.getfixturevalue("certificates").client_context() if protocol.tls else True
    with httpx.Client(http1=protocol == "h1", http2=protocol == "h2", timeout=15, verify=verify) as client:
        yield client


@pytest.fixture
def serve(runtime, request):
    """serve(handler, **options) -> a running ServerHandle on 127.0.0.1 (free port); HTTPS when the
    test's protocol is one over TLS."""
    handles = []
    tls = _tls_under_test(request)

    def start(handler, **options):
        options.setdefault("shutdown_timeout", 3.0)
        if tls:
            options.setdefault("tls", request.getfixturevalue("certificates").settings())
        for name, value in runtime.options.items():
            options.setdefault(name, value)
        handle = Server("127.0.0.1", 0, runtime=runtime, **options).start(handler)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        assert handle.shutdown(10), "server did not shut down"


def connect(handle, protocol: str = "h1", timeout: float = 5.0) -> socket.socket:
    """A raw socket to the server; over TLS when it serves HTTPS, with ALPN asking for ``protocol``
    (the certificate is not checked: these tests are about what flows after the handshake)."""
    sock = socket.create_connection(handle.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if handle.url.startswith("https:"):
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2" if protocol == "h2" else "http/1.1"])
        sock = context.wrap_socket(sock)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse_responses(data: bytes, methods: list[str] | None = None) -> list[tuple[h11.Response, bytes]]:
    """Parse raw response bytes with h11's client side: a real, strict parser."""
    client = h11.Connection(h11.CLIENT)
    responses = []
    for method in methods or ["GET"] * 100:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        if data:
            client.receive_data(data)
            data = b""
        head, body = None, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                return responses  # incomplete or no more responses
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                responses.append((head, body))
                break
            elif isinstance(event, h11.ConnectionClosed):
                return responses
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            return responses
        client.start_next_cycle()
    return responses


def header(response: h11.Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.decode().lower() == name.lower():
            return value.decode()
    return None


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pytest_report_header(config) -> str:
    """Which interpreter the suite runs on, and whether the GIL is on (``make test-freethreaded``)."""
    import sys
    import sysconfig

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"interpreter: {sys.version.split()[0]}, {'free-threaded build' if free_threaded else 'standard build'}, " \
           f"GIL {'on' if gil else 'off'}"
