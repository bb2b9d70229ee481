"""The sans-IO HTTP/2 connection and protocol selection, driven by h2's client side (no sockets)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events

from protocols import (
    BodyEnded,
    BodyReceived,
    ConnectionInfo,
    HTTP2Connection,
    HTTP11Connection,
    Limits,
    ProtocolSwitched,
    RequestReceived,
    Response,
    StreamReset,
    server_connection,
)

INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))
GET = [(b":method", b"GET"), (b":path", b"/p?q=1"), (b":scheme", b"http"), (b":authority", b"example")]


def pair(limits: Limits | None = None):
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server = HTTP2Connection(INFO, limits)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def opened_as_http1(data: bytes) -> HTTP11Connection:
    """An "auto" connection fed ``data``, past its opening switch to HTTP/1.1."""
    conn = server_connection(INFO)
    conn.receive_data(data)
    switched, = conn.events()
    assert isinstance(switched, ProtocolSwitched) and isinstance(switched.connection, HTTP11Connection)
    return switched.connection


def exchange(client, server):
    server.receive_data(client.data_to_send())
    return server.events()


def test_preface_switches_even_when_split_across_reads():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, GET, end_stream=True)
    data = client.data_to_send()
    conn = server_connection(INFO)
    conn.receive_data(data[:5])
    assert conn.events() == []  # "PRI *" could still be either protocol
    conn.receive_data(data[5:])
    switched, = conn.events()
    assert isinstance(switched, ProtocolSwitched)
    events = switched.connection.events()
    assert isinstance(events[0], RequestReceived) and events[0].request.http_version == "2"
    assert isinstance(events[1], BodyEnded)


def test_http1_only_does_not_switch():
    conn = server_connection(INFO, http="1")
    conn.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert not any(isinstance(e, ProtocolSwitched) for e in conn.events())


def test_h2c_upgrade_turns_the_request_into_stream_1():
    conn = opened_as_http1(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    switched, = conn.events()
    h2conn = switched.connection
    started, ended = h2conn.events()
    assert started.stream_id == 1 and started.request.path == "/up" and started.request.protocol == "HTTP/2"
    assert h2conn.data_to_send().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_bad_http2_settings_or_a_body_means_no_upgrade():
    for head in (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n",
                 b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\nhi"):
        conn = opened_as_http1(head)
        assert isinstance(conn.events()[0], RequestReceived)


def test_request_fields_and_host_from_authority():
    client, server = pair()
    client.send_headers(1, GET + [(b"x-a", b"1")], end_stream=True)
    started, ended = exchange(client, server)
    request = started.request
    assert request.method == "GET" and request.target == "/p?q=1" and request.query == "q=1"
    assert request.headers["host"] == "example" and request.headers["x-a"] == "1"
    assert not started.has_body and isinstance(ended, BodyEnded)


def test_body_bytes_are_acknowledged_only_when_consumed():
    client, server = pair(Limits(stream_window=65535))
    client.send_headers(1, [(b":method", b"POST")] + GET[1:])
    for _ in range(6):
        client.send_data(1, b"x" * 10000)
    events = exchange(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, BodyReceived)) == 60000
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) == 5535  # nothing given back yet
    server.consumed(1, 60000)
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) == 65535


def test_response_waits_for_the_window_and_ends_with_its_last_frame():
    client, server = pair()
    client.send_headers(1, GET, end_stream=True)
    exchange(client, server)
    server.send_response(1, Response(b"y" * 100_000))
    server.send_data(1, b"y" * 100_000)
    server.end_stream(1)
    received = client.receive_data(server.data_to_send())
    assert server.pending(1) == 100_000 - 65535
    assert not any(isinstance(e, h2.events.StreamEnded) for e in received)
    client.increment_flow_control_window(100_000)
    client.increment_flow_control_window(100_000, 1)
    server.receive_data(client.data_to_send())
    received = client.receive_data(server.data_to_send())
    assert server.pending(1) == 0 and server.open_streams == 0
    assert any(isinstance(e, h2.events.StreamEnded) for e in received)


def test_reset_streams_still_count_until_their_handler_finishes():
    client, server = pair(Limits(max_concurrent_streams=2, max_client_resets=100))
    for stream_id in (1, 3):
        client.send_headers(stream_id, GET, end_stream=True)
        client.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    events = exchange(client, server)
    assert [type(e) for e in events].count(StreamReset) == 2
    client.send_headers(5, GET, end_stream=True)  # the client thinks two slots are free
    assert exchange(client, server) == []
    received = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == 5
               and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM for e in received)
    server.end_stream(1)  # a handler finishes: a slot is free again
    client.send_headers(7, GET, end_stream=True)
    assert isinstance(exchange(client, server)[0], RequestReceived)


def test_declared_body_over_the_limit_is_answered_413_without_a_handler():
    client, server = pair(Limits(max_body_bytes=10))
    client.send_headers(1, [(b":method", b"POST")] + GET[1:] + [(b"content-length", b"11")])
    assert exchange(client, server) == []
    received = client.receive_data(server.data_to_send())
    response = next(e for e in received if isinstance(e, h2.events.ResponseReceived))
    assert dict(response.headers)[b":status"] == b"413"


def test_connection_specific_and_invalid_response_headers():
    client, server = pair()
    client.send_headers(1, GET, end_stream=True)
    exchange(client, server)
    try:
        server.send_response(1, Response("x", headers={"bad header": "1"}))
    except ValueError:
        pass
    else:
        raise AssertionError("an invalid header name was sent")
    server.send_response(1, Response("x", headers={"connection": "close", "x-ok": "1"}))
    server.send_data(1, b"x")
    server.end_stream(1)
    received = client.receive_data(server.data_to_send())
    headers = dict(next(e for e in received if isinstance(e, h2.events.ResponseReceived)).headers)
    assert b"connection" not in headers and headers[b"x-ok"] == b"1" and headers[b"content-length"] == b"1"
