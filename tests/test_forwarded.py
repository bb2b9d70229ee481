"""Trusted proxy headers: the client behind nginx, and nobody else's word for it.

The rules are pure functions (``protocols.forwarded``), checked first on a
table of headers, hostile ones included; then over real sockets, on every
runtime and both protocols, that the result is what handlers see in
``request.connection`` and that a peer nobody trusts cannot spoof it.
"""

from __future__ import annotations

import httpx
import pytest

from astra import Response, Server
from protocols import ConnectionInfo, Headers
from protocols.forwarded import TrustedProxies, forwarded_elements

PROXY = ("10.0.0.2", 50000)
LOCAL = ("10.0.0.1", 80)


def resolve(trusted: str, fields: list[tuple[str, str]], peer=PROXY) -> ConnectionInfo:
    return TrustedProxies.parse(trusted).resolve(ConnectionInfo(peer, LOCAL), Headers(fields))


@pytest.mark.parametrize("trusted, fields, client, scheme", [
    # Forwarded: the element the proxy added names the client.
    ("10.0.0.0/8", [("forwarded", "for=192.0.2.60;proto=https;by=10.0.0.2")], ("192.0.2.60", 0), "https"),
    ("10.0.0.0/8", [("forwarded", 'for="[2001:db8:cafe::17]:4711"')], ("2001:db8:cafe::17", 4711), "http"),
    ("10.0.0.0/8", [("Forwarded", 'For="192.0.2.43:47011";Proto=HTTPS')], ("192.0.2.43", 47011), "https"),
    # Right to left past trusted hops; what the client wrote left of itself is its own business.
    ("10.0.0.0/8", [("forwarded", "for=6.6.6.6, for=192.0.2.9;proto=https, for=10.1.1.1;proto=http")],
     ("192.0.2.9", 0), "https"),
    ("10.0.0.0/8", [("forwarded", "for=6.6.6.6"), ("forwarded", "for=192.0.2.9")], ("192.0.2.9", 0), "http"),
    ("10.0.0.0/8", [("forwarded", "for=10.9.9.9, for=10.1.1.1")], ("10.9.9.9", 0), "http"),  # all trusted
    # Names that are no address stop the walk and leave the socket's peer.
    ("10.0.0.0/8", [("forwarded", "for=unknown;proto=https")], PROXY, "https"),
    ("10.0.0.0/8", [("forwarded", "for=_hidden")], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "for=192.0.2.1, for=_hidden, for=10.1.1.1")], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "for=[2001:db8::1]:4711")], PROXY, "http"),  # unquoted brackets: off-grammar
    ("10.0.0.0/8", [("forwarded", 'for="[2001:db8::1]:99999"')], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", 'for="[2001:db8::1"')], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "for=999.1.1.1")], PROXY, "http"),
    # Garbage anywhere: none of the field is used, not even a proto.
    ("10.0.0.0/8", [("forwarded", "for=192.0.2.1;proto=https garbage")], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "for=192.0.2.1;for=192.0.2.2")], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", 'for="192.0.2.1, for=6.6.6.6')], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "proto=gopher;for=192.0.2.1")], ("192.0.2.1", 0), "http"),
    # Forwarded and X-Forwarded-For must agree, or neither is believed.
    ("10.0.0.0/8", [("forwarded", "nonsense"), ("x-forwarded-for", "192.0.2.1")], PROXY, "http"),
    # A proxy that appends to X-Forwarded-For only, a client that brings its own Forwarded.
    ("10.0.0.0/8", [("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "192.0.2.1")], PROXY, "http"),
    ("10.0.0.0/8", [("forwarded", "for=192.0.2.1;proto=https"), ("x-forwarded-for", "192.0.2.1"),
                    ("x-forwarded-proto", "https")], ("192.0.2.1", 0), "https"),  # both, in agreement
    # An IPv6 zone can hold any text: never an address.
    ("10.0.0.0/8", [("x-forwarded-for", '::1%" 200 0 "-" "-" 1 ')], PROXY, "http"),
    # X-Forwarded-For: the rightmost address that is not a trusted proxy.
    ("10.0.0.0/8", [("x-forwarded-for", "6.6.6.6, 192.0.2.5, 10.3.3.3")], ("192.0.2.5", 0), "http"),
    ("10.0.0.0/8", [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "192.0.2.5")], ("192.0.2.5", 0), "http"),
    ("10.0.0.0/8", [("x-forwarded-for", "2001:db8::5"), ("x-forwarded-proto", "https")], ("2001:db8::5", 0), "https"),
    ("10.0.0.0/8", [("x-forwarded-for", "192.0.2.5, garbage, 10.3.3.3")], PROXY, "http"),
    ("10.0.0.0/8", [("x-forwarded-for", "192.0.2.5,,10.3.3.3")], PROXY, "http"),
    ("10.0.0.0/8", [("x-forwarded-for", "unknown")], PROXY, "http"),
    ("10.0.0.0/8", [("x-forwarded-proto", "javascript")], PROXY, "http"),
    ("10.0.0.0/8", [("x-forwarded-proto", "https")], PROXY, "https"),
    ("10.0.0.0/8", [("x-forwarded-for", "192.0.2.5, 10.3.3.3"), ("x-forwarded-proto", "https, http")],
     ("192.0.2.5", 0), "https"),
    ("10.0.0.0/8", [("x-forwarded-for", "192.0.2.5"), ("x-forwarded-proto", "https, http")], ("192.0.2.5", 0), "http"),
    # From a peer nobody trusts, the headers are just headers.
    ("192.168.0.0/16", [("forwarded", "for=192.0.2.60;proto=https")], PROXY, "http"),
    ("", [("x-forwarded-for", "192.0.2.60"), ("x-forwarded-proto", "https")], PROXY, "http"),
    ("*", [("x-forwarded-for", "192.0.2.60")], ("192.0.2.60", 0), "http"),
])
def test_resolving_the_client(trusted, fields, client, scheme):
    info = resolve(trusted, fields)
    assert info.peer == client and info.scheme == scheme and info.local == LOCAL


def test_unix_socket_peers_are_trusted_only_when_named():
    fields = [("x-forwarded-for", "192.0.2.60")]
    assert resolve("127.0.0.1", fields, peer=None).peer is None
    assert resolve("unix", fields, peer=None).peer == ("192.0.2.60", 0)
    assert resolve("unix", fields).peer == PROXY  # "unix" trusts no TCP peer
    assert resolve("::ffff:0:0/96, 10.0.0.2", fields, peer=("::ffff:10.0.0.2", 1)).peer == ("192.0.2.60", 0)


def test_a_huge_or_hostile_field_is_bounded_work():
    # 100 KB of elements, quoted strings full of escapes, and an element that never ends.
    many = ", ".join(f"for=10.0.{i // 250}.{i % 250}" for i in range(8000))
    assert len(many) > 100_000
    assert resolve("10.0.0.0/8", [("forwarded", "for=192.0.2.1, " + many)]).peer == ("192.0.2.1", 0)
    assert resolve("10.0.0.0/8", [("forwarded", 'for="' + "\\\\" * 50_000)]).peer == PROXY
    assert resolve("10.0.0.0/8", [("x-forwarded-for", "1.1.1.1, " + "x" * 100_000)]).peer == PROXY
    assert forwarded_elements('a=b;c="d\\"e, f"')[0] == {"a": "b", "c": 'd"e, f'}


@pytest.mark.parametrize("spec", ["10.0.0.300", "localhost", "10.0.0.0/40", "unix:/x"])
def test_a_bad_allow_list_fails_when_the_server_is_configured(spec):
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Server("127.0.0.1", 0, forwarded_allow_ips=spec)


def connection_echo(request):
    info = request.connection
    return Response(f"{info.peer[0]}|{info.peer[1]}|{info.scheme}|{request.headers.get('x-forwarded-for')}")


def test_the_handler_sees_the_client_behind_a_trusted_proxy(serve, client):
    trusting = serve(connection_echo, forwarded_allow_ips="127.0.0.1")
    wary = serve(connection_echo, forwarded_allow_ips="10.0.0.0/8, unix")
    proxied = {"x-forwarded-for": "6.6.6.6, 192.0.2.7", "x-forwarded-proto": "https"}

    host, port, scheme, _ = client.get(trusting.url, headers=proxied).text.split("|")
    assert (host, port, scheme) == ("192.0.2.7", "0", "https")
    bracketed = {"forwarded": 'for="[2001:db8::7]:443";proto=https'}
    host, port, scheme, _ = client.get(trusting.url, headers=bracketed).text.split("|")
    assert (host, port, scheme) == ("2001:db8::7", "443", "https")
    host, _, scheme, header = client.get(trusting.url, headers={"forwarded": "for=_x;proto=ftp"}).text.split("|")
    assert (host, scheme) == ("127.0.0.1", "http")

    # The spoofer is not a trusted proxy: its claims stay plain headers, for the handler to read.
    host, _, scheme, header = client.get(wary.url, headers=proxied).text.split("|")
    assert (host, scheme, header) == ("127.0.0.1", "http", "6.6.6.6, 192.0.2.7")
    host, _, scheme, _ = client.get(wary.url, headers={"forwarded": "for=192.0.2.7;proto=https"}).text.split("|")
    assert (host, scheme) == ("127.0.0.1", "http")


def test_a_100_kb_forwarded_field_from_a_trusted_proxy(serve):
    """Bounded by the head limit (431), or parsed to no effect; the server goes on either way.

    HTTP/1.1 only: httpx's HPACK encoder takes seconds over 100 KB, and
    HTTP/2's head limit has its own tests (test_hostile_h2).
    """
    field = "for=192.0.2.1;proto=https, " + ", ".join(["for=garbage!"] * 10_000)
    limited = serve(connection_echo, forwarded_allow_ips="127.0.0.1")
    roomy = serve(connection_echo, forwarded_allow_ips="127.0.0.1", max_header_bytes=256 * 1024)
    with httpx.Client() as client:
        assert client.get(limited.url, headers={"forwarded": field}).status_code == 431
        host, _, scheme, _ = client.get(roomy.url, headers={"forwarded": field}).text.split("|")
        assert (host, scheme) == ("127.0.0.1", "http")
        assert client.get(limited.url).status_code == 200
