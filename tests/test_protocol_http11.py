"""The HTTP/1.1 protocol layer alone: bytes in, events out, no sockets.

Every test runs with each HTTP/1 parser (the ``h1_parser`` fixture).
"""

from __future__ import annotations

import io

import pytest

from protocols import (
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    ConnectionInfo,
    Headers,
    HTTP11Connection,
    ProtocolFailed,
    RequestReceived,
    Response,
)

from .conftest import header, parse_responses
from .h1_drive import h1_parser, limits  # noqa: F401 (h1_parser: an autouse fixture)

INFO = ConnectionInfo(("10.0.0.1", 1234), ("10.0.0.2", 80))


def new_conn(**values) -> HTTP11Connection:
    return HTTP11Connection(INFO, limits(**values))


def feed(conn: HTTP11Connection, data: bytes):
    conn.receive_data(data)
    return conn.events()


def respond(conn: HTTP11Connection, stream_id: int, response: Response) -> bytes:
    conn.send_response(stream_id, response)
    for chunk in response.body.chunks():
        conn.send_data(stream_id, chunk)
    conn.end_stream(stream_id)
    return conn.data_to_send()


def test_simple_get_becomes_a_request_event():
    conn = new_conn()
    events = feed(conn, b"GET /a%20b?x=1&x=2&y= HTTP/1.1\r\nHost: example\r\nAccept: a\r\naccept: b\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, BodyEnded]
    started = events[0]
    request = started.request
    assert started.stream_id == 1 and not started.has_body
    assert request.method == "GET"
    assert request.target == "/a%20b?x=1&x=2&y="
    assert request.path == "/a b"
    assert request.query == "x=1&x=2&y="
    assert request.query_params == {"x": ["1", "2"], "y": [""]}
    assert request.headers["HOST"] == "example"
    assert request.headers.get_all("Accept") == ["a", "b"]
    assert request.http_version == "1.1" and request.protocol == "HTTP/1.1"
    assert request.peer == ("10.0.0.1", 1234)


@pytest.mark.parametrize("host", [b"example.com", b"example.com:8080", b"[::1]:80", b"127.0.0.1", b""])
def test_valid_hosts_are_accepted(host):
    events = feed(new_conn(), b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert isinstance(events[0], RequestReceived)


def test_partial_head_waits_for_more_bytes():
    conn = new_conn()
    assert feed(conn, b"GET / HTTP/1.1\r\nHo") == []
    assert feed(conn, b"st: x\r\n") == []
    events = feed(conn, b"\r\n")
    assert isinstance(events[0], RequestReceived)


def test_response_has_length_date_and_server():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response("hello"))
    (head, body), = parse_responses(out)
    assert head.status_code == 200 and body == b"hello"
    assert header(head, "content-length") == "5"
    assert header(head, "content-type") == "text/plain; charset=utf-8"
    assert header(head, "date") and header(head, "server") == "astra"
    assert not conn.should_close


def test_a_reason_phrase_of_the_handlers_own_replaces_the_standard_one():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response("hi", status=299, reason="Custom Thing"))
    assert out.startswith(b"HTTP/1.1 299 Custom Thing\r\n")
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert respond(conn, 3, Response("hi", status=299)).startswith(b"HTTP/1.1 299 \r\n")  # not the cached one


@pytest.mark.parametrize("reason", ["OK\r\nX-Injected: 1", "OK\nX: 1", "OK\0"])
def test_a_reason_phrase_cannot_split_the_response(reason):
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ValueError):
        conn.send_response(1, Response("hi", reason=reason))
    assert conn.data_to_send() == b""


def test_pipelined_requests_are_released_one_at_a_time_in_order():
    conn = new_conn()
    events = feed(conn, b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
    assert [e.request.target for e in events if isinstance(e, RequestReceived)] == ["/0"]
    out = b""
    for expected in ("/0", "/1", "/2"):
        started = events[0]
        assert started.request.target == expected
        out += respond(conn, started.stream_id, Response(expected))
        events = conn.events()
    assert events == []
    assert [body for _, body in parse_responses(out)] == [b"/0", b"/1", b"/2"]


def test_content_length_body_arrives_as_body_events():
    conn = new_conn()
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    assert events[0].has_body
    assert events[1:] == [BodyReceived(1, b"hello")]
    assert feed(conn, b"world") == [BodyReceived(1, b"world"), BodyEnded(1)]


def test_chunked_body_is_decoded():
    conn = new_conn()
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    data = b"".join(e.data for e in events if isinstance(e, BodyReceived))
    assert data == b"hello world" and isinstance(events[-1], BodyEnded)


def test_streamed_response_is_chunked_for_http11():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response(iter([b"ab", b"", b"cd"])))
    assert b"transfer-encoding: chunked" in out
    (head, body), = parse_responses(out)
    assert body == b"abcd"


def test_file_response_gets_content_length():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response(io.BytesIO(b"0123456789")))
    (head, body), = parse_responses(out)
    assert header(head, "content-length") == "10" and body == b"0123456789"


def test_http10_client_gets_a_close_delimited_stream():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.0\r\n\r\n")
    out = respond(conn, 1, Response(iter([b"abc"])))
    assert b"transfer-encoding" not in out and b"connection: close" in out
    assert out.endswith(b"\r\n\r\nabc")
    assert conn.should_close


def test_connection_close_is_honoured():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = respond(conn, 1, Response("x"))
    assert b"connection: close" in out and conn.should_close


def test_head_response_has_length_but_no_body():
    conn = new_conn()
    feed(conn, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response("hello"))
    assert out.endswith(b"\r\n\r\n") and b"content-length: 5" in out


def test_204_has_no_body_and_no_length():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = respond(conn, 1, Response("ignored", status=204))
    assert out.endswith(b"\r\n\r\n") and b"content-length" not in out


def test_expect_100_continue_is_sent_on_request():
    conn = new_conn()
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert events[0].has_body and conn.expects_continue(1)
    conn.send_continue(1)
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.expects_continue(1)
    assert feed(conn, b"abc") == [BodyReceived(1, b"abc"), BodyEnded(1)]


def test_answering_without_reading_a_100_continue_body_closes():
    conn = new_conn()
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    out = respond(conn, 1, Response("no thanks", status=417))
    assert b"connection: close" in out and conn.should_close


def test_small_unread_body_is_drained_and_connection_reused():
    conn = new_conn()
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    out = respond(conn, 1, Response("early"))
    assert b"connection: close" not in out and not conn.should_close
    events = feed(conn, b"defGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, BodyEnded]
    assert events[0].request.target == "/next" and events[0].stream_id == 2


def test_large_unread_body_closes_instead_of_draining():
    conn = new_conn(max_drain_bytes=10)
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    out = respond(conn, 1, Response("early"))
    assert b"connection: close" in out and conn.should_close


def test_client_eof_between_requests():
    conn = new_conn()
    assert feed(conn, b"") == [ConnectionClosed()]


def test_client_eof_mid_body_is_a_disconnect_not_a_400():
    conn = new_conn()
    feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert feed(conn, b"") == [ConnectionClosed()]
    assert conn.data_to_send() == b"" and conn.should_close


BAD_REQUESTS = {
    "garbage": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\r\n\r\n", 400),
    "no host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "bad host": (b"GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 400),
    "cl and te": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "te in 1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "bad cl": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    "conflicting cl": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    "unknown te": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "bare lf": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare cr": (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    "obs fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_malformed_requests_get_4xx_and_close(name):
    data, status = BAD_REQUESTS[name]
    conn = new_conn()
    events = feed(conn, data)
    failed = [e for e in events if isinstance(e, ProtocolFailed)]
    assert failed and failed[0].status == status, events
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in out
    assert conn.should_close


def test_oversized_head_gets_431():
    conn = new_conn(max_header_bytes=1024)
    events = feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
    assert events == [ProtocolFailed(431, events[0].reason)]
    assert conn.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_oversized_head_arriving_whole_gets_431():
    conn = new_conn(max_header_bytes=1024)
    events = feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert isinstance(events[0], ProtocolFailed) and events[0].status == 431


def test_oversized_content_length_gets_413_up_front():
    conn = new_conn(max_body_bytes=100)
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
    assert isinstance(events[0], ProtocolFailed) and events[0].status == 413


def test_oversized_chunked_body_gets_413_when_it_crosses_the_limit():
    conn = new_conn(max_body_bytes=8)
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert isinstance(events[0], RequestReceived)
    events = feed(conn, b"5\r\nworld\r\n")
    assert isinstance(events[-1], ProtocolFailed) and events[-1].status == 413
    assert conn.data_to_send().startswith(b"HTTP/1.1 413 ")


def test_header_injection_in_a_response_is_refused():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ValueError):
        conn.send_response(1, Response("x", headers={"x-a": "b\r\nSet-Cookie: evil=1"}))
    with pytest.raises(ValueError):
        conn.send_response(1, Response("x", headers={"bad name": "v"}))
    assert conn.data_to_send() == b""


def test_body_shorter_than_declared_length_breaks_the_connection():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.send_response(1, Response(iter([b"abc"]), headers={"content-length": "10"}))
    conn.send_data(1, b"abc")
    with pytest.raises(ValueError):
        conn.end_stream(1)
    assert conn.should_close


def test_graceful_close_marks_the_next_response():
    conn = new_conn()
    feed(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.close_after_current()
    assert not conn.should_close  # a request is in flight
    out = respond(conn, 1, Response("x"))
    assert b"connection: close" in out and conn.should_close


def test_headers_are_case_insensitive_and_multi_valued():
    headers = Headers({"Content-Type": "text/plain"})
    headers.add("Set-Cookie", "a=1")
    headers.add("set-cookie", "b=2")
    assert headers["content-type"] == "text/plain"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert "Set-Cookie" in headers and "x" not in headers
    headers["set-cookie"] = "c=3"
    assert headers.get_all("set-cookie") == ["c=3"]
    del headers["Content-Type"]
    assert headers.get("content-type") is None
    assert list(headers) == [("set-cookie", "c=3")]
