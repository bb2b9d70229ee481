"""The sans-IO TLS layer and ALPN negotiation, driven by a real TLS client on memory buffers.

No sockets: a client ``ssl.SSLObject`` and the server's
:class:`~protocols.tls.TLSSession` hand each other bytes, as a transport would.
"""

from __future__ import annotations

import ssl

import pytest

from protocols import ClientDisconnected, ConnectionClosed, ConnectionInfo, ProtocolSwitched, RequestReceived
from protocols.negotiation import SecureOpening, server_connection
from protocols.tls import TLSSession

INFO = ConnectionInfo(("127.0.0.1", 5000), ("127.0.0.1", 443))


class Client:
    """A TLS client on memory buffers, talking to one server session."""

    def __init__(self, certificates, server: TLSSession, alpn=("h2", "http/1.1"), name="localhost") -> None:
        context = certificates.client_context(alpn=list(alpn))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=name)
        self.server = server
        self.received = b""  # plaintext the server sent

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.tls.do_handshake()
                self.pump()  # our Finished
                return
            except ssl.SSLWantReadError:
                self.pump()
        raise AssertionError("the handshake did not finish")

    def pump(self) -> bytes | None:
        """Our bytes to the server, its replies back; returns the plaintext the server got."""
        plaintext = self.server.receive(self.outgoing.read()) if self.outgoing.pending else None
        self.incoming.write(self.server.data_to_send())
        return plaintext

    def send(self, data: bytes) -> bytes | None:
        self.tls.write(data)
        return self.pump()

    def read(self) -> bytes:
        self.incoming.write(self.server.data_to_send())
        out = b""
        try:
            while chunk := self.tls.read(65536):
                out += chunk
        except ssl.SSLWantReadError:
            pass
        return out


@pytest.fixture
def context(certificates):
    return certificates.settings().context("auto")


def test_a_handshake_settles_version_alpn_and_name(certificates, context):
    session = TLSSession(context)
    client = Client(certificates, session)
    client.handshake()
    assert session.established and not session.ended
    assert session.alpn == "h2"
    info = session.details()
    assert (info.version, info.alpn, info.server_name, info.client_certificate) == ("TLSv1.3", "h2", "localhost", None)


def test_plaintext_both_ways(certificates, context):
    session = TLSSession(context)
    client = Client(certificates, session)
    client.handshake()
    assert client.send(b"GET / HTTP/1.1\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"
    session.send(b"HTTP/1.1 200 OK\r\n\r\n")
    assert client.read() == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_record_split_across_reads_completes_nothing_until_whole(certificates, context):
    session = TLSSession(context)
    client = Client(certificates, session)
    client.handshake()
    client.tls.write(b"x" * 1000)
    record = client.outgoing.read()
    assert session.receive(record[:10]) is None
    assert session.receive(record[10:]) == b"x" * 1000


def test_close_notify_ends_the_stream_and_is_answered(certificates, context):
    session = TLSSession(context)
    client = Client(certificates, session)
    client.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()
    assert client.pump() == b"" and session.ended
    assert session.receive(b"more") == b""
    session.close()
    client.incoming.write(session.data_to_send())
    client.tls.unwrap()  # the server's close_notify arrived: a clean close, both ways


def test_no_plaintext_before_the_handshake(context):
    session = TLSSession(context)
    with pytest.raises(ClientDisconnected):
        session.send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")


def test_plain_http_gets_a_plain_400(context):
    session = TLSSession(context)
    assert session.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert session.ended and session.failure
    reply = session.data_to_send()
    assert reply.startswith(b"HTTP/1.1 400 ") and b"https://" in reply


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x00\x05hello", b"\x00" * 100, b"\x16" + b"\xff" * 300])
def test_garbage_ends_the_session_with_a_reason(context, garbage):
    session = TLSSession(context)
    assert session.receive(garbage) in (b"", None)
    if not session.ended:  # a record header that promises more: the end of stream decides
        assert session.receive(b"") == b""
    assert session.ended and session.failure
    assert session.details() is None


def test_an_end_of_stream_mid_handshake_ends_the_session(certificates, context):
    session = TLSSession(context)
    client = Client(certificates, session)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.do_handshake()
    assert session.receive(client.outgoing.read()[:30]) is None
    assert session.receive(b"") == b"" and session.ended


def test_a_wrong_name_is_still_what_the_handler_sees(certificates, context):
    """SNI is reported as asked; the certificate check is the client's to make (it fails here)."""
    session = TLSSession(context)
    client = Client(certificates, session, name="elsewhere.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.handshake()


# ALPN decides the protocol ------------------------------------------------------------------

def _opened(certificates, context, alpn, http="auto"):
    session = TLSSession(context)
    client = Client(certificates, session, alpn=alpn)
    client.handshake()
    return session, client, server_connection(INFO, http=http, tls=session)


def test_alpn_h2_opens_http2(certificates, context):
    from protocols import PREFACE

    session, client, proto = _opened(certificates, context, ("h2", "http/1.1"))
    assert isinstance(proto, SecureOpening) and proto.info.scheme == "https"
    proto.receive_data(client.send(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
    (switched,) = proto.events()
    assert isinstance(switched, ProtocolSwitched) and switched.connection.multiplexed
    assert switched.connection.info.tls.alpn == "h2"


@pytest.mark.parametrize("alpn", [("http/1.1",), ()], ids=["http/1.1", "none"])
def test_alpn_http11_or_none_opens_http11_without_h2c(certificates, context, alpn):
    session, client, proto = _opened(certificates, context, alpn)
    head = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"HTTP2-Settings: \r\n\r\n")
    proto.receive_data(client.send(head))
    (switched,) = proto.events()
    successor = switched.connection
    assert not successor.multiplexed
    (request,) = [e for e in successor.events() if isinstance(e, RequestReceived)]
    assert request.request.connection.scheme == "https"
    assert request.request.connection.tls.version == "TLSv1.3"
    assert b"101" not in successor.data_to_send()  # no upgrade to cleartext HTTP/2 inside TLS


def test_a_failed_handshake_closes_the_opening(context):
    session = TLSSession(context)
    proto = server_connection(INFO, tls=session)
    proto.receive_data(session.receive(b"\x00" * 50) or b"")
    assert [type(e) for e in proto.events()] == [ConnectionClosed]
