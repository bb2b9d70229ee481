"""Both HTTP versions (and the opening of an "auto" connection) implement ServerConnection, all of it."""

from __future__ import annotations

import inspect

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from protocols import (
    ConnectionInfo,
    HTTP2Connection,
    HTTP11Connection,
    Limits,
    OpeningConnection,
    RequestReceived,
    Response,
    ServerConnection,
    server_connection,
)
from protocols.contract import ServerConnection as ContractProtocol

from .conftest import header, parse_responses

INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))
GET = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
CLASSES = [HTTP11Connection, HTTP2Connection, OpeningConnection]


def contract_methods() -> list[str]:
    return [name for name, value in vars(ContractProtocol).items()
            if callable(value) and not name.startswith("_")]


@pytest.mark.parametrize("http", ["auto", "1", "2"])
def test_every_connection_a_runtime_gets_is_a_server_connection(http):
    assert isinstance(server_connection(INFO, http=http), ServerConnection)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_methods_have_the_contract_signatures(cls):
    for name in contract_methods():
        declared = inspect.signature(getattr(ContractProtocol, name))
        implemented = inspect.signature(getattr(cls, name))
        assert list(declared.parameters) == list(implemented.parameters), name
    assert isinstance(inspect.getattr_static(cls, "should_close"), property)
    for attribute in ("protocol", "multiplexed"):
        assert attribute in vars(cls), attribute


def test_declared_capabilities():
    assert (HTTP11Connection.protocol, HTTP11Connection.multiplexed) == ("HTTP/1.1", False)
    assert (HTTP2Connection.protocol, HTTP2Connection.multiplexed) == ("HTTP/2", True)


# -- HTTP/1.1 and HTTP/2 side by side -----------------------------------------------


def h1(data: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", **limits) -> HTTP11Connection:
    conn = HTTP11Connection(INFO, Limits(**limits))
    conn.receive_data(data)
    assert isinstance(conn.events()[0], RequestReceived)
    return conn


def h2pair(limits: Limits | None = None, *, end_stream: bool = True, headers=GET):
    """(client, server) with stream 1 open on the server."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, headers, end_stream=end_stream)
    server = HTTP2Connection(INFO, limits)
    server.receive_data(client.data_to_send())
    assert isinstance(server.events()[0], RequestReceived)
    client.receive_data(server.data_to_send())
    return client, server


def test_expects_continue_and_send_continue():
    conn = h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert conn.expects_continue(1) and not conn.expects_continue(2)
    conn.send_continue(1)
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n" and not conn.expects_continue(1)
    client, server = h2pair(end_stream=False, headers=GET + [(b"expect", b"100-continue")])
    assert server.expects_continue(1) is False
    server.send_continue(1)  # documented no-op
    assert server.data_to_send() == b""


def test_consumed_is_a_no_op_on_http1_and_reopens_the_window_on_http2():
    conn = h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    conn.consumed(1, 3)
    assert conn.data_to_send() == b""
    client, server = h2pair(Limits(stream_window=65535), end_stream=False)
    for _ in range(4):
        client.send_data(1, b"x" * 10000)
    server.receive_data(client.data_to_send())
    server.events()
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) == 65535 - 40000
    server.consumed(1, 40000)
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) == 65535


def test_pending_is_0_on_http1_and_the_queue_behind_the_window_on_http2():
    conn = h1()
    conn.send_response(1, Response(b"y" * 100_000))
    conn.send_data(1, b"y" * 100_000)
    assert conn.pending(1) == 0
    client, server = h2pair()
    server.send_response(1, Response(b"y" * 100_000))
    server.send_data(1, b"y" * 100_000)
    server.data_to_send()
    assert server.pending(1) == 100_000 - 65535


def test_stream_reset_on_http1():
    conn = h1()
    assert not conn.stream_reset(1)
    assert conn.stream_reset(2)  # not the request in flight
    conn.abort_stream(1)
    assert conn.stream_reset(1) and conn.should_close


def test_stream_reset_on_http2():
    client, server = h2pair()
    assert not server.stream_reset(1) and server.stream_reset(3)
    client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    server.receive_data(client.data_to_send())
    server.events()
    assert server.stream_reset(1)


def test_stream_reset_after_the_http1_response_ended():
    conn = h1()
    conn.send_response(1, Response("x"))
    conn.send_data(1, b"x")
    conn.end_stream(1)
    assert conn.stream_reset(1) and not conn.should_close


def test_refuse_stream_on_http1_is_a_503_then_close():
    conn = h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    conn.refuse_stream(1)
    assert conn.should_close and conn.stream_reset(1)
    (head, body), = parse_responses(conn.data_to_send())
    assert head.status_code == 503 and body.startswith(b"503 Service Unavailable")
    assert header(head, "retry-after") == "1" and header(head, "connection") == "close"
    conn.send_response(1, Response("too late"))  # the handler's answer, if any, is dropped
    assert conn.data_to_send() == b""


def test_refuse_stream_on_http1_head_has_no_body():
    conn = h1(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.refuse_stream(1)
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 503 ") and out.endswith(b"\r\n\r\n") and b"content-length: " in out


def test_refuse_stream_on_http1_ignores_other_streams_and_cuts_a_started_response():
    conn = h1()
    conn.refuse_stream(2)
    assert conn.data_to_send() == b"" and not conn.should_close
    conn.send_response(1, Response(iter([b"a"])))
    conn.refuse_stream(1)
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 ") and b" 503 " not in out and conn.should_close


def test_refuse_stream_on_http2_is_refused_stream_and_the_connection_goes_on():
    client, server = h2pair()
    server.refuse_stream(1)
    received = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
               for e in received)
    assert not server.should_close and server.stream_reset(1)


def test_abort_stream_closes_http1_and_resets_only_the_stream_on_http2():
    conn = h1()
    conn.send_response(1, Response(iter([b"a"])))
    conn.abort_stream(1)
    assert conn.should_close
    client, server = h2pair()
    server.send_response(1, Response(iter([b"a"])))
    server.abort_stream(1)
    received = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
               for e in received)
    assert not server.should_close


@pytest.mark.parametrize("make", [h1, lambda: h2pair()[1]], ids=["h1", "h2"])
def test_send_data_past_the_declared_length_and_end_stream_short_of_it_raise(make):
    conn = make()
    conn.send_response(1, Response(iter([b"abc"]), headers={"content-length": "3"}))
    with pytest.raises(ValueError):
        conn.send_data(1, b"abcd")
    conn.send_data(1, b"ab")
    with pytest.raises(ValueError):
        conn.end_stream(1)


def test_close_after_current_on_http2_sends_goaway_and_closes_after_the_open_stream():
    client, server = h2pair()
    server.close_after_current()
    received = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in received)
    assert not server.should_close  # stream 1 is still served
    server.send_response(1, Response(b"x"))
    server.send_data(1, b"x")
    server.end_stream(1)
    server.data_to_send()
    assert server.should_close


def test_the_opening_connection_has_no_stream_to_act_on():
    conn = server_connection(INFO)
    assert isinstance(conn, OpeningConnection)
    for method in ("send_continue", "abort_stream", "refuse_stream", "end_stream"):
        getattr(conn, method)(1)
    conn.send_response(1, Response("x"))
    conn.send_data(1, b"x")
    conn.consumed(1, 10)
    assert conn.data_to_send() == b"" and conn.pending(1) == 0
    assert conn.stream_reset(1) and not conn.expects_continue(1)
    assert not conn.should_close
    conn.close_after_current()
    assert conn.should_close
