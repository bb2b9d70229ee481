"""The HTTP/1 parser interface: h11's and llhttp's adapters, choosing one, and the policy over any parser."""

from __future__ import annotations

import sys

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
from astra import Server
from astra.cli import build_parser
from protocols import h1_parser
from protocols.h1_httptools import HttptoolsParser, _Fields
from protocols.h1_parser import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    H11Parser,
    ParseError,
    RequestParser,
    parser_factory,
)

from .conftest import connect, parse_responses, read_until_closed

INFO = ConnectionInfo(("10.0.0.1", 1234), ("10.0.0.2", 80))


# -- both adapters: H11Parser and HttptoolsParser -------------------------------------


@pytest.fixture(params=[H11Parser, HttptoolsParser], ids=["h11", "httptools"])
def Parser(request):
    return request.param


def test_parsers_are_request_parsers(Parser):
    assert isinstance(Parser(1024), RequestParser)


def test_head_is_a_plain_tuple_of_bytes_with_fields_as_received(Parser):
    parser = Parser(1024)
    parser.receive_data(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\n\r\n")
    head = parser.next_event()
    assert type(head) is tuple
    assert head == (b"GET", b"/a?b", b"1.1", [(b"Host", b"x"), (b"X-Mixed-Case", b"v")])


def test_body_end_pause_and_next_request(Parser):
    parser = Parser(1024)
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


def test_need_data_on_a_partial_head_and_nothing_left_over(Parser):
    parser = Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHo")
    assert parser.next_event() is NEED_DATA
    assert parser.buffered() == b"GET / HTTP/1.1\r\nHo"
    parser = Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    parser.next_event()
    parser.next_event()
    assert parser.start_next() is False


def test_connection_closed_between_requests(Parser):
    parser = Parser(1024)
    parser.receive_data(b"")
    assert parser.next_event() is CONNECTION_CLOSED
    parser = Parser(1024)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    parser.receive_data(b"")
    parser.next_event()
    parser.next_event()
    assert parser.start_next() is True  # the EOF waits to be reported
    assert parser.next_event() is CONNECTION_CLOSED


def test_waiting_for_continue(Parser):
    parser = Parser(1024)
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
def test_parse_errors_carry_a_status_and_are_protocol_errors(Parser, data, status):
    parser = Parser(1024)
    parser.receive_data(data)
    with pytest.raises(ParseError) as caught:
        parser.next_event()
    assert caught.value.status == status and isinstance(caught.value, ProtocolError)


def test_a_waiting_client_is_seen_in_the_head_of_either_parser(Parser):
    for expect, version, waits in ((b"100-continue", b"1.1", True), (b"foo, 100-Continue ", b"1.1", True),
                                   (b"100-continue", b"1.0", False), (b"100-continuex", b"1.1", False)):
        parser = Parser(1024)
        parser.receive_data(
            b"POST / HTTP/%s\r\nHost: x\r\nExpect: %s\r\nContent-Length: 1\r\n\r\n" % (version, expect))
        parser.next_event()
        assert parser.waiting_for_continue is waits, (expect, version)
        assert parser.next_event() is NEED_DATA and parser.waiting_for_continue is waits


# -- HttptoolsParser: what llhttp reads, and what it leaves to h11 ----------------------


def httptools_head(raw: bytes):
    parser = HttptoolsParser(4096)
    parser.receive_data(raw)
    return parser.next_event()


def test_llhttp_values_lose_their_surrounding_whitespace_and_keep_being_empty():
    head = httptools_head(b"GET / HTTP/1.1\r\nA:  a b\t \r\nB:\r\nC: \t\r\nHost: x\r\n\r\n")
    assert head[3] == [(b"A", b"a b"), (b"B", b""), (b"C", b""), (b"Host", b"x")]


@pytest.mark.parametrize("raw, head", [
    # llhttp refuses these, h11 (and RFC 9110) accept them: h11's reading is the answer.
    (b"FOO /x HTTP/1.1\r\nHost: x\r\n\r\n", (b"FOO", b"/x", b"1.1", [(b"Host", b"x")])),
    (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", (b"GET", b"/", b"1.2", [(b"Host", b"x")])),
    (b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", (b"CONNECT", b"/", b"1.1", [(b"Host", b"x")])),
    (b"POST / HTTP/1.0\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n",
     (b"POST", b"/", b"1.0", [(b"Content-Length", b"2")])),
    (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
     (b"GET", b"/", b"1.1", [(b"Host", b"x"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])),
    (b"GET / HTTP/1.0\r\n\r\n", (b"GET", b"/", b"1.0", [])),
])
def test_heads_are_read_as_h11_reads_them(raw, head):
    assert httptools_head(raw) == head
    h11_parser = H11Parser(4096)
    h11_parser.receive_data(raw)
    assert h11_parser.next_event() == head


@pytest.mark.parametrize("raw, status", [
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # llhttp takes runs of spaces
    (b"GET /\r\nHost: x\r\n\r\n", 400),  # and HTTP/0.9's request line
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nX : y\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 000000000000000000005\r\n\r\n", 400),  # llhttp: 5
    (b"\r\nGET / HTTP/1.1\r\n\r\n", 400),
])
def test_heads_are_refused_as_h11_refuses_them(raw, status):
    for parser in (HttptoolsParser(4096), H11Parser(4096)):
        parser.receive_data(raw)
        with pytest.raises(ParseError) as caught:
            parser.next_event()
        assert caught.value.status == status, parser


def test_a_bad_first_byte_is_refused_before_the_head_is_complete():
    for first in (b"\x16\x03\x01", b"\r\n", b" GET"):
        parser = HttptoolsParser(1024)
        parser.receive_data(first)
        with pytest.raises(ParseError):
            parser.next_event()


def test_a_field_llhttp_loses_sends_the_head_to_h11(monkeypatch):
    # The safety net: llhttp's reading must have one field per line, or h11 reads the head.
    def lossy(self, name, value):
        if name != b"Transfer-Encoding":
            self.fields.append((name, value))

    monkeypatch.setattr(_Fields, "on_header", lossy)
    head = httptools_head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert head[3] == [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")]


def test_llhttp_never_sees_a_body_byte_nor_the_next_request():
    parser = HttptoolsParser(1024)
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = parser.next_event()
    assert head[:2] == (b"POST", b"/") and parser.buffered() == b"abcGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parser.next_event() == b"abc" and parser.next_event() is END_OF_MESSAGE
    assert parser.buffered() == b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parser.start_next() and parser.next_event()[1] == b"/2"


# -- choosing a parser: Limits.http1_parser, Server, the command line -------------------


def test_limits_name_the_parser_and_the_connection_uses_it():
    for choice, parser in (("h11", H11Parser), ("httptools", HttptoolsParser), ("auto", HttptoolsParser)):
        assert type(HTTP11Connection(INFO, Limits(http1_parser=choice))._parser) is parser
    assert type(HTTP11Connection(INFO)._parser) is HttptoolsParser  # the default, auto, with httptools here
    with pytest.raises(ValueError):
        Limits(http1_parser="llhttp")


def test_auto_is_h11_without_httptools(monkeypatch):
    monkeypatch.setattr(h1_parser, "_FACTORIES", {"h11": H11Parser})
    monkeypatch.setitem(sys.modules, "httptools", None)  # import httptools now raises ImportError
    monkeypatch.delitem(sys.modules, "protocols.h1_httptools")
    assert parser_factory("auto") is H11Parser
    with pytest.raises(ImportError, match="astra\\[fast\\]"):
        Limits(http1_parser="httptools")


def test_the_option_reaches_the_limits():
    assert build_parser().parse_args(["m:h", "--http1-parser", "httptools"]).http1_parser == "httptools"
    assert build_parser().parse_args(["m:h"]).http1_parser is None  # Limits' default then
    with pytest.raises(SystemExit):
        build_parser().parse_args(["m:h", "--http1-parser", "llhttp"])
    assert Server("127.0.0.1", 0, http1_parser="auto").config.limits.http1_parser == "auto"


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_every_runtime_serves_through_either_parser(serve, parser):
    # The wiring, end to end: the option travels in the limits to every runtime's
    # HTTP/1.1 connections. (The behaviour itself is tested sans-IO, with both parsers;
    # the rest of the suite runs on the default, httptools where it is installed.)
    def handler(request):
        return Response(b"%s %s %s" % (request.method.encode(), request.target.encode(), request.body.read()))

    handle = serve(handler, http1_parser=parser, http="1")
    with connect(handle) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                     b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = parse_responses(read_until_closed(sock))
    assert [(r.status_code, body) for r, body in responses[:2]] == [(200, b"POST /a abc"), (200, b"GET /b ")]
    assert [r.status_code for r, _ in responses[2:]] == [400]


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
