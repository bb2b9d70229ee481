"""Protocol selection: the opening of an "auto" connection, http="1"/"2", h2c, and HTTP/1.1's upgrade hook."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from protocols import (
    PREFACE,
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    ConnectionInfo,
    HTTP2Connection,
    HTTP11Connection,
    OpeningConnection,
    ProtocolFailed,
    ProtocolSwitched,
    RequestReceived,
    Response,
    server_connection,
)

from .conftest import parse_responses

INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))
GET = [(b":method", b"GET"), (b":path", b"/p"), (b":scheme", b"http"), (b":authority", b"x")]
SETTINGS = b"AAMAAABkAARAAAAAAAIAAAAA"
UPGRADE = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + SETTINGS + b"\r\n\r\n")


def h2_client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))


def switch(conn, data: bytes = b""):
    """Feed ``data``; the batch must be exactly one switch. Returns the successor."""
    if data:
        conn.receive_data(data)
    events = conn.events()
    assert len(events) == 1 and isinstance(events[0], ProtocolSwitched), events
    return events[0].connection


def respond(conn, stream_id: int, body: bytes = b"ok") -> bytes:
    conn.send_response(stream_id, Response(body))
    conn.send_data(stream_id, body)
    conn.end_stream(stream_id)
    return conn.data_to_send()


# -- the opening of an "auto" connection --------------------------------------------


def test_auto_starts_with_the_opening_connection():
    assert isinstance(server_connection(INFO), OpeningConnection)


def test_preface_split_byte_by_byte():
    client = h2_client()
    client.initiate_connection()
    client.send_headers(1, GET, end_stream=True)
    data = client.data_to_send()
    conn = server_connection(INFO)
    for i in range(len(PREFACE) - 1):
        conn.receive_data(data[i:i + 1])
        assert conn.events() == [] and conn.data_to_send() == b""
    successor = switch(conn, data[len(PREFACE) - 1:len(PREFACE)])
    assert isinstance(successor, HTTP2Connection)
    assert successor.events() == []  # the preface alone: no request yet
    for i in range(len(PREFACE), len(data)):
        successor.receive_data(data[i:i + 1])
    started, ended = successor.events()
    assert isinstance(started, RequestReceived) and started.request.path == "/p" and ended == BodyEnded(1)
    assert successor.data_to_send()  # the server's SETTINGS (and the ACK of the client's)


def test_preface_and_request_in_one_read_reach_http2_together():
    client = h2_client()
    client.initiate_connection()
    client.send_headers(1, GET, end_stream=True)
    successor = switch(server_connection(INFO), client.data_to_send())
    assert [type(e) for e in successor.events()] == [RequestReceived, BodyEnded]


@pytest.mark.parametrize("first", [b"G", b"\x16", b"\r"])
def test_a_first_byte_that_is_not_the_preface_goes_http1_at_once(first):
    successor = switch(server_connection(INFO), first)
    assert isinstance(successor, HTTP11Connection)


def test_http1_continues_where_the_opening_ended():
    successor = switch(server_connection(INFO), b"G")
    assert successor.events() == []
    successor.receive_data(b"ET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in successor.events()] == [RequestReceived, BodyEnded]


def test_a_request_that_starts_like_the_preface_goes_http1_once_it_differs():
    conn = server_connection(INFO)
    conn.receive_data(b"P")
    assert conn.events() == []
    successor = switch(conn, b"OST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert isinstance(successor, HTTP11Connection)
    assert [type(e) for e in successor.events()] == [RequestReceived, BodyReceived, BodyEnded]


def test_eof_before_any_byte_is_a_close_not_a_switch():
    conn = server_connection(INFO)
    conn.receive_data(b"")
    assert conn.events() == [ConnectionClosed()]
    assert conn.should_close and conn.data_to_send() == b""
    assert conn.events() == []


def test_eof_mid_preface_is_left_to_http1():
    conn = server_connection(INFO)
    conn.receive_data(PREFACE[:8])
    conn.receive_data(b"")
    successor = switch(conn)
    assert isinstance(successor, HTTP11Connection)
    assert successor.events() == [ConnectionClosed()] and successor.should_close


def test_graceful_close_before_the_first_bytes_carries_over():
    conn = server_connection(INFO)
    conn.close_after_current()
    assert conn.should_close
    successor = switch(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    started, _ = successor.events()
    assert b"connection: close" in respond(successor, started.stream_id) and successor.should_close


def test_http1_only_never_switches():
    conn = server_connection(INFO, http="1")
    assert isinstance(conn, HTTP11Connection)
    conn.receive_data(PREFACE)
    events = conn.events()
    assert not any(isinstance(e, ProtocolSwitched) for e in events)
    assert events == [ProtocolFailed(505, events[0].reason)]  # "PRI * HTTP/2.0" is no HTTP/1.x request
    conn = server_connection(INFO, http="1")
    conn.receive_data(UPGRADE)
    assert [type(e) for e in conn.events()] == [RequestReceived, BodyEnded]


def test_http2_only_is_http2_from_the_first_byte():
    conn = server_connection(INFO, http="2")
    assert isinstance(conn, HTTP2Connection)
    assert conn.data_to_send()[3] == 0x4  # the server's SETTINGS go out before the client says anything
    client = h2_client()
    client.initiate_connection()
    client.send_headers(1, GET, end_stream=True)
    conn.receive_data(client.data_to_send())
    assert [type(e) for e in conn.events()] == [RequestReceived, BodyEnded]


def test_unknown_http_setting_is_refused():
    with pytest.raises(ValueError):
        server_connection(INFO, http="3")


# -- h2c -----------------------------------------------------------------------------


def test_h2c_upgrade_with_the_client_preface_in_the_same_read():
    client = h2_client()
    settings = client.initiate_upgrade_connection()
    head = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    http1 = switch(server_connection(INFO), head + client.data_to_send())
    h2conn = switch(http1)
    assert isinstance(h2conn, HTTP2Connection)
    started, ended = h2conn.events()
    assert started.stream_id == 1 and started.request.http_version == "2" and ended == BodyEnded(1)
    switching = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
    out = respond(h2conn, 1, b"over h2")
    assert out.startswith(switching)
    received = client.receive_data(out[len(switching):])
    response = next(e for e in received if isinstance(e, h2.events.ResponseReceived))
    data = b"".join(e.data for e in received if isinstance(e, h2.events.DataReceived))
    assert response.stream_id == 1 and dict(response.headers)[b":status"] == b"200" and data == b"over h2"


def test_h2c_upgrade_then_eof_reaches_http2():
    http1 = switch(server_connection(INFO), UPGRADE)
    http1.receive_data(b"")
    h2conn = switch(http1)
    assert [type(e) for e in h2conn.events()] == [RequestReceived, BodyEnded, ConnectionClosed]


def test_h2c_upgrade_with_a_body_stays_http1():
    head = UPGRADE.replace(b"GET", b"POST").replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nhi")
    http1 = switch(server_connection(INFO), head)
    events = http1.events()
    assert [type(e) for e in events] == [RequestReceived, BodyReceived, BodyEnded]
    out = respond(http1, 1)
    assert out.startswith(b"HTTP/1.1 200 ") and b"101" not in out and not http1.should_close


@pytest.mark.parametrize("head", [
    UPGRADE.replace(SETTINGS, b"!!!"),  # not base64url
    UPGRADE.replace(SETTINGS, SETTINGS[:12]),  # 9 bytes: not whole 6-byte entries
    UPGRADE.replace(b"HTTP2-Settings: ", b"HTTP2-Settings: " + SETTINGS + b"\r\nHTTP2-Settings: "),  # two
    UPGRADE.replace(b"Connection: Upgrade, HTTP2-Settings", b"Connection: Upgrade"),
    UPGRADE.replace(b"Connection: Upgrade, HTTP2-Settings", b"Connection: HTTP2-Settings"),
    UPGRADE.replace(b"Upgrade: h2c", b"Upgrade: websocket"),
    UPGRADE.replace(b"HTTP2-Settings: " + SETTINGS + b"\r\n", b""),
], ids=["not-base64", "partial-entry", "twice", "not-connection-option", "no-upgrade-option", "websocket",
        "no-settings"])
def test_a_bad_h2c_request_is_answered_over_http1(head):
    http1 = switch(server_connection(INFO), head)
    assert [type(e) for e in http1.events()] == [RequestReceived, BodyEnded]
    out = respond(http1, 1)
    (response, body), = parse_responses(out)
    assert response.status_code == 200 and body == b"ok" and not http1.should_close


def test_only_the_first_request_may_upgrade():
    http1 = switch(server_connection(INFO), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    http1.events()
    respond(http1, 1)
    http1.receive_data(UPGRADE)
    assert [type(e) for e in http1.events()] == [RequestReceived, BodyEnded]


# -- HTTP/1.1's protocol-agnostic upgrade hook ---------------------------------------


class Recorder:
    """An upgrade hook that records its calls and returns ``successor``."""

    def __init__(self, successor=None):
        self.successor = successor
        self.calls = []

    def __call__(self, request, received, eof, output):
        self.calls.append((request, received, eof, output))
        return self.successor


def test_the_hook_gets_the_request_the_leftover_the_eof_and_the_output():
    successor = object()
    hook = Recorder(successor)
    conn = HTTP11Connection(INFO, upgrade=hook)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\nnext bytes")
    conn.receive_data(b"")
    events = conn.events()
    assert events == [ProtocolSwitched(successor)]
    (request, received, eof, output), = hook.calls
    assert request.headers["upgrade"] == "other" and received == b"next bytes" and eof and output == b""
    assert conn.data_to_send() == b"" and conn.should_close


def test_a_declined_upgrade_is_answered_over_http1():
    hook = Recorder(None)
    conn = HTTP11Connection(INFO, upgrade=hook)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n")
    assert [type(e) for e in conn.events()] == [RequestReceived, BodyEnded] and len(hook.calls) == 1


@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # no Upgrade
    b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: other\r\nContent-Length: 1\r\n\r\nx",  # a body
])
def test_the_hook_is_offered_only_a_first_request_without_a_body_asking_to_upgrade(first):
    hook = Recorder(object())
    conn = HTTP11Connection(INFO, upgrade=hook)
    conn.receive_data(first)
    assert not any(isinstance(e, ProtocolSwitched) for e in conn.events())
    respond(conn, 1)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n")
    assert [type(e) for e in conn.events()] == [RequestReceived, BodyEnded]
    assert hook.calls == []
