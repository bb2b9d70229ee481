"""The HTTP/1 parser interface: h11's adapter, and the connection's policy over any parser."""

from __future__ import annotations

import pytest

from protocols import (
    BodyEnded,
    BodyReceived,
    ConnectionInfo,
    HTTP11Connection,
    Limits,
    ProtocolError,
    ProtocolFailed,
    RequestReceived,
    Response,
)
from protocols.h1_parser import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    H11Parser,
    ParseError,
    RequestParser,
)

from .conftest import parse_responses

INFO = ConnectionInfo(("10.0.0.1", 1234), ("10.0.0.2", 80))


# -- H11Parser -----------------------------------------------------------------------


def test_h11_parser_is_a_request_parser():
    assert isinstance(H11Parser(1024), RequestParser)


def test_head_is_a_plain_tuple_of_bytes_with_fields_as_received():
    parser = H11Parser(1024)
    parser.receive_data(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\n\r\n")
    head = parser.next_event()
    assert type(head) is tuple
    assert head == (b"GET", b"/a?b", b"1.1", [(b"Host", b"x"), (b"X-Mixed-Case", b"v")])


def test_body_end_pause_and_next_request():
    parser = H11Parser(1024)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
    assert type(parser.next_event()) is tuple
    assert parser.next_event() == b"ab" and parser.next_event() is NEED_DATA
    parser.receive_data(b"cGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = parser.next_event()
    assert data == b"c" and type(data) is bytes
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED  # the next request waits for start_next
    assert parser.buffered() == b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parser.start_next() is True
    assert parser.next_event()[1] == b"/2"


def test_need_data_on_a_partial_head_and_nothing_left_over():
    parser = H11Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHo")
    assert parser.next_event() is NEED_DATA
    assert parser.buffered() == b"GET / HTTP/1.1\r\nHo"
    parser = H11Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    parser.next_event()
    parser.next_event()
    assert parser.start_next() is False


def test_connection_closed_between_requests():
    parser = H11Parser(1024)
    parser.receive_data(b"")
    assert parser.next_event() is CONNECTION_CLOSED
    parser = H11Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    parser.receive_data(b"")
    parser.next_event()
    parser.next_event()
    assert parser.start_next() is True  # the EOF waits to be reported
    assert parser.next_event() is CONNECTION_CLOSED


def test_waiting_for_continue():
    parser = H11Parser(1024)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    parser.next_event()
    assert parser.waiting_for_continue
    parser.receive_data(b"a")
    parser.next_event()
    assert not parser.waiting_for_continue


@pytest.mark.parametrize("data, status", [
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 431),
])
def test_parse_errors_carry_a_status_and_are_protocol_errors(data, status):
    parser = H11Parser(1024)
    parser.receive_data(data)
    with pytest.raises(ParseError) as caught:
        parser.next_event()
    assert caught.value.status == status and isinstance(caught.value, ProtocolError)


# -- the policy is the connection's, whatever the parser -----------------------------


class ScriptedParser:
    """A lenient parser: whatever the test scripts, it reports (one request per script)."""

    def __init__(self, scripts: list[list], buffered: bytes = b"") -> None:
        self.scripts = scripts
        self.events = list(scripts.pop(0)) if scripts else []
        self._buffered = buffered
        self.fed: list[bytes] = []
        self.waiting_for_continue = False

    def receive_data(self, data: bytes) -> None:
        self.fed.append(data)

    def next_event(self):
        return self.events.pop(0) if self.events else NEED_DATA

    def buffered(self) -> bytes:
        return self._buffered

    def start_next(self) -> bool:
        self.events = list(self.scripts.pop(0)) if self.scripts else []
        return bool(self.events)


def scripted(*scripts, buffered: bytes = b"", **limits) -> tuple[HTTP11Connection, ScriptedParser]:
    parser = ScriptedParser(list(scripts), buffered)
    conn = HTTP11Connection(INFO, Limits(**limits), parser=lambda max_head: parser)
    conn.receive_data(b"(bytes the scripted parser ignores)")
    return conn, parser


def head(*fields: tuple[bytes, bytes], method: bytes = b"GET", version: bytes = b"1.1") -> tuple:
    return (method, b"/", version, list(fields))


def test_the_connection_serves_keep_alive_over_any_parser():
    conn, parser = scripted(
        [head((b"Host", b"x"), (b"Content-Length", b"2"), method=b"POST"), b"hi", END_OF_MESSAGE],
        [head((b"Host", b"x"))],
    )
    events = conn.events()
    assert [type(e) for e in events] == [RequestReceived, BodyReceived, BodyEnded]
    assert events[0].request.headers["content-length"] == "2"
    conn.send_response(1, Response("a"))
    conn.send_data(1, b"a")
    conn.end_stream(1)  # the parser is asked to start on the next request
    started, ended = conn.events()
    assert started.stream_id == 2 and ended == BodyEnded(2)
    assert parser.fed == [b"(bytes the scripted parser ignores)"]


@pytest.mark.parametrize("fields, version, status", [
    ([(b"Host", b"x"), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")], b"1.1", 400),
    ([(b"Transfer-Encoding", b"chunked")], b"1.0", 400),
    ([(b"Host", b"x"), (b"Transfer-Encoding", b"gzip")], b"1.1", 501),
    ([(b"Host", b"x"), (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")], b"1.1", 501),
    ([], b"1.1", 400),  # no Host
    ([(b"Host", b"a"), (b"HOST", b"b")], b"1.1", 400),
    ([(b"Host", b"a/b@c")], b"1.1", 400),
    ([(b"Host", b"x"), (b"Content-Length", b"+3")], b"1.1", 400),
    ([(b"Host", b"x"), (b"Content-Length", b"1"), (b"Content-Length", b"2")], b"1.1", 400),
    ([(b"Host", b"x"), (b"Content-Length", b"101")], b"1.1", 413),
    ([(b"Host", b"x")], b"2.0", 505),
])
def test_request_checks_are_policy_not_parser(fields, version, status):
    conn, _ = scripted([head(*fields, method=b"POST", version=version)], max_body_bytes=100)
    events = conn.events()
    assert events == [ProtocolFailed(status, events[0].reason)], events
    (response, _), = parse_responses(conn.data_to_send())
    assert response.status_code == status and conn.should_close


def test_repeated_equal_content_lengths_are_one():
    conn, _ = scripted([head((b"Host", b"x"), (b"Content-Length", b"2"), (b"content-length", b"2"))])
    assert conn.events()[0].has_body


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200 + b"\r\n\r\n", 431),  # whole, in one read
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200, 431),  # incomplete
    (b"GET /" + b"a" * 200, 431),  # not even a line yet
    (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),  # bare LF
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),  # obsolete line folding
])
def test_raw_head_checks_are_policy_not_parser(raw, status):
    conn, _ = scripted([head((b"Host", b"x"))], buffered=raw, max_header_bytes=128)
    events = conn.events()
    assert events == [ProtocolFailed(status, events[0].reason)], events


def test_body_limit_is_policy_not_parser():
    conn, _ = scripted([head((b"Host", b"x"), (b"Transfer-Encoding", b"chunked"), method=b"POST"),
                        b"x" * 60, b"x" * 60], max_body_bytes=100)
    events = conn.events()
    assert isinstance(events[-1], ProtocolFailed) and events[-1].status == 413


def test_parser_errors_are_answered_with_their_status():
    class Broken(ScriptedParser):
        def next_event(self):
            raise ParseError("no such thing", 501)

    conn = HTTP11Connection(INFO, parser=lambda max_head: Broken([]))
    conn.receive_data(b"x")
    assert conn.events() == [ProtocolFailed(501, "no such thing")]
    assert conn.data_to_send().startswith(b"HTTP/1.1 501 ")
