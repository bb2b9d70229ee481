"""Strict HTTP/1.1 request framing, sans-IO: raw bytes in, the status and what was served out.

Every rule of :mod:`protocols.h1_body` and of the request-target policy in
:mod:`protocols.http11` has a case here. For each request-smuggling shape the
test also checks the part that matters behind a proxy: the bytes after the
bad framing are never served as a request of their own.

:func:`~tests.h1_drive.drive` plays a well-behaved runtime (it answers every
complete request and feeds the next piece of input); the fuzz tests use it too.

Every test runs with each HTTP/1 parser (by the autouse fixture
:func:`~tests.h1_drive.h1_parser`, which ``test_protocol_http11`` imports too): the
policy, and so every status and every request boundary here, must not depend
on the parser.
"""

from __future__ import annotations

import pytest

from protocols import BodyEnded, BodyReceived, HTTP11Connection, RequestReceived
from protocols.h1_body import ChunkedDecoder, FramingError, LengthDecoder
from protocols.h1_parser import END_OF_MESSAGE, PAUSED, ParseError, parser_factory
from protocols.response import CONNECT_REFUSAL

from . import h1_drive
from .conftest import header, parse_responses
from .fuzzing import bytewise
from .h1_drive import INFO, drive, h1_parser, limits, refused, serve  # noqa: F401 (h1_parser: an autouse fixture)

CHUNKED = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def chunked(body: bytes) -> bytes:
    return CHUNKED + body


# -- valid chunked bodies ----------------------------------------------------------------


@pytest.mark.parametrize("body, data", [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", b"0123456789" * 2),
    (b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"000000000000000f\r\n" + b"x" * 15 + b"\r\n0\r\n\r\n", b"x" * 15),  # 16 digits
    (b"5;a\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5;a=b;c=d\r\nhello\r\n0;last=yes\r\n\r\n", b"hello"),
    (b'5;a="b \\"c\\" ;d"\r\nhello\r\n0\r\n\r\n', b"hello"),  # quoted-string with quoted-pairs
    (b'5;a="\x80\xff"\r\nhello\r\n0\r\n\r\n', b"hello"),  # obs-text inside quotes
    (b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Spaced:  a b \r\n\r\n", b"hello"),
    (b"0\r\n\r\n", b""),
])
def test_valid_chunked_bodies_are_served_and_the_next_request_follows(body, data):
    outcome = serve(chunked(body) + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert outcome.failed is None and outcome.targets == ["/upload", "/next"]
    assert outcome.served[0].body == data and not outcome.closed


def test_a_chunked_body_split_at_every_byte_reads_the_same():
    raw = chunked(b'3;a="x"\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n') + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    outcome = drive(bytewise(raw))
    assert outcome.targets == ["/upload", "/next"] and outcome.served[0].body == b"abcde"


def test_trailer_fields_are_dropped_not_merged_into_the_headers():
    outcome = serve(chunked(b"0\r\nHost: evil\r\nContent-Length: 99\r\n\r\n"))
    assert outcome.failed is None and outcome.served[0].host == "x"


def test_small_chunks_are_coalesced_into_one_body_event():
    conn = HTTP11Connection(INFO, limits())
    conn.receive_data(chunked(b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefgh")))
    events = conn.events()
    assert [type(e) for e in events] == [RequestReceived, BodyReceived]
    assert events[1].data == b"abcdefgh"


# -- malformed chunked framing: 400, and the connection closes ------------------------------


MALFORMED_CHUNKED = {
    # chunk-size: hex digits only, at most 16 of them
    "size not hex": b"zz\r\n",
    "size with 0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size with sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "negative size": b"-5\r\nhello\r\n0\r\n\r\n",
    "size after space": b" 5\r\nhello\r\n0\r\n\r\n",
    "space after size": b"5 \r\nhello\r\n0\r\n\r\n",
    "tab after size": b"5\t\r\nhello\r\n0\r\n\r\n",
    "empty size line": b"\r\nhello\r\n0\r\n\r\n",
    "17 digits": b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "size overflow": b"1" + b"0" * 40 + b"\r\n",
    # chunk extensions: ;token[=token|quoted-string], nothing else
    "empty extension": b"5;\r\nhello\r\n0\r\n\r\n",
    "extension without name": b"5;=b\r\nhello\r\n0\r\n\r\n",
    "extension with empty value": b"5;a=\r\nhello\r\n0\r\n\r\n",
    "whitespace before semicolon": b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    "whitespace around equals": b"5;a = b\r\nhello\r\n0\r\n\r\n",
    "control byte in extension": b"5;a=b\x01\r\nhello\r\n0\r\n\r\n",
    "DEL in extension": b"5;a=b\x7f\r\nhello\r\n0\r\n\r\n",
    "NUL in quoted extension": b'5;a="\x00"\r\nhello\r\n0\r\n\r\n',
    "unterminated quoted extension": b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "obs-text outside quotes": b"5;a=\x80\r\nhello\r\n0\r\n\r\n",
    # line endings: CRLF exactly
    "bare LF after size": b"5\nhello\r\n0\r\n\r\n",
    "bare CR after size": b"5\rhello\r\n0\r\n\r\n",
    "LF CR after size": b"5\n\rhello\r\n0\r\n\r\n",
    "bare LF after data": b"5\r\nhello\n0\r\n\r\n",
    "bare CR after data": b"5\r\nhello\r0\r\n\r\n",
    "no CRLF after data": b"5\r\nhelloXX0\r\n\r\n",
    "data longer than size": b"3\r\nhello\r\n0\r\n\r\n",
    "bare LF after last chunk": b"0\n\r\n",
    "bare LF ending trailers": b"0\r\n\n",
    "bare CR ending trailers": b"0\r\n\r\r\n",
    "bare LF after a trailer": b"0\r\nX: y\n\r\n",
    # trailers: field lines, no folding
    "obs-fold in trailers": b"0\r\nX: a\r\n b\r\n\r\n",
    "tab fold in trailers": b"0\r\nX: a\r\n\tb\r\n\r\n",
    "space before colon in trailer": b"0\r\nX : y\r\n\r\n",
    "trailer without colon": b"0\r\nnot a field\r\n\r\n",
    "NUL in trailer value": b"0\r\nX: a\x00b\r\n\r\n",
    "control byte in trailer": b"0\r\nX: a\x1bb\r\n\r\n",
    "empty trailer name": b"0\r\n: v\r\n\r\n",
}


@pytest.mark.parametrize("name", MALFORMED_CHUNKED)
def test_malformed_chunked_framing_gets_400_and_closes(name):
    outcome = serve(chunked(MALFORMED_CHUNKED[name]) + NEXT)
    refused(outcome, 400)
    assert outcome.served == [] and "/smuggled" not in outcome.targets


@pytest.mark.parametrize("name", MALFORMED_CHUNKED)
def test_malformed_chunked_framing_is_refused_whatever_the_reads(name):
    raw = chunked(MALFORMED_CHUNKED[name]) + NEXT
    outcome = drive(bytewise(raw))
    assert outcome.failed == 400 and outcome.served == []


def test_a_line_that_never_ends_is_refused_before_it_is_complete():
    outcome = serve(chunked(b"5;name=" + b"v" * 300), max_header_bytes=256)
    refused(outcome, 400)
    outcome = serve(chunked(b"0\r\nX: " + b"v" * 300), max_header_bytes=256)
    refused(outcome, 431)


def test_garbage_for_a_chunk_size_is_refused_at_once():
    assert serve(chunked(b"G")).failed == 400  # no line end needed to know


# -- the framing budget: extensions and trailers, not the size digits -----------------------


def test_extension_bytes_past_the_budget_get_400():
    ext = b";e=" + b"v" * 100
    within = b"".join(b"1" + ext + b"\r\nx\r\n" for _ in range(9)) + b"0\r\n\r\n"
    assert serve(chunked(within), max_header_bytes=1000).failed is None  # 9 x 103 bytes
    refused(serve(chunked(within * 2), max_header_bytes=1000), 400)


def test_one_huge_extension_gets_400_even_with_a_large_chunk():
    raw = chunked(b"400;e=" + b"v" * 2000 + b"\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n")
    refused(serve(raw, max_header_bytes=1000), 400)


def test_many_chunks_without_extensions_fit_any_budget():
    # Size lines are bounded per chunk; counting them would cap a stream's length.
    body = b"".join(b"1\r\n%c\r\n" % (97 + i % 26) for i in range(3000)) + b"0\r\n\r\n"
    outcome = serve(chunked(body), max_header_bytes=128)
    assert outcome.failed is None and len(outcome.served[0].body) == 3000


def test_trailers_past_the_budget_get_431():
    trailers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(30))
    refused(serve(chunked(b"0\r\n" + trailers + b"\r\n"), max_header_bytes=1024), 431)


def test_extensions_and_trailers_share_the_budget():
    ext = b";e=" + b"v" * 500
    trailers = b"X: " + b"v" * 500 + b"\r\n"
    assert serve(chunked(b"0" + ext + b"\r\n\r\n"), max_header_bytes=1024).failed is None
    assert serve(chunked(b"0\r\n" + trailers + b"\r\n"), max_header_bytes=1024).failed is None
    refused(serve(chunked(b"1" + ext + b"\r\nx\r\n0\r\n" + trailers * 2 + b"\r\n"), max_header_bytes=1024), 431)


def test_a_huge_chunk_size_is_cut_off_by_the_body_limit():
    outcome = serve(chunked(b"ffffffffffffffff\r\n" + b"x" * 200), max_body_bytes=100)
    refused(outcome, 413)


def test_client_closing_mid_chunk_is_a_disconnect_not_an_answer():
    outcome = drive([chunked(b"5\r\nhel")], eof=True)
    assert outcome.failed is None and outcome.closed and outcome.output == b""


# -- Content-Length bodies ---------------------------------------------------------------


def test_content_length_body_ends_exactly_where_it_says():
    head = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(NEXT)
    outcome = serve(head + NEXT + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert outcome.targets == ["/a", "/b"] and outcome.served[0].body == NEXT


def test_content_length_split_at_every_byte_reads_the_same():
    raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    outcome = drive(bytewise(raw))
    assert outcome.targets == ["/a", "/b"] and outcome.served[0].body == b"hello"


def test_client_closing_mid_body_is_a_disconnect():
    outcome = drive([b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel"], eof=True)
    assert outcome.failed is None and outcome.closed and outcome.output == b""


def test_100_continue_is_awaited_until_the_first_chunk_byte():
    conn = HTTP11Connection(INFO, limits())
    conn.receive_data(chunked(b"").replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    started, = conn.events()
    assert conn.expects_continue(started.stream_id)
    conn.receive_data(b"5")
    assert conn.events() == [] and not conn.expects_continue(started.stream_id)
    conn.receive_data(b"\r\nhello\r\n0\r\n\r\n")
    assert conn.events() == [BodyReceived(1, b"hello"), BodyEnded(1)]


# -- request smuggling shapes: refused, and nothing after them is served --------------------


SMUGGLING = {
    "TE and CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n" + NEXT, 400),
    "CL and TE": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
                  b"0\r\n\r\n" + NEXT, 400),
    "conflicting CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + NEXT, 400),
    "CL list disagreeing": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, %d\r\n\r\n" % len(NEXT) + NEXT, 400),
    "CL with sign": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +37\r\n\r\n" + NEXT, 400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + NEXT, 400),
    "TE chunked twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + NEXT, 501),
    "TE chunked after another coding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                        b"0\r\n\r\n" + NEXT, 501),
    "TE not last chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                            b"0\r\n\r\n" + NEXT, 501),
    "TE obs-fold": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + NEXT, 400),
    "space before colon": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + NEXT, 400),
    "last chunk bare LF": (chunked(b"0\n\n") + NEXT, 400),
    "trailers end bare LF": (chunked(b"5\r\nhello\r\n0\r\n\n") + NEXT, 400),
    "trailer bare LF": (chunked(b"0\r\nX: y\n\n") + NEXT, 400),
    "size bare LF": (chunked(b"5\nhello\n0\n\n") + NEXT, 400),
    "data not ending in CRLF": (chunked(b"2\r\nhello\r\n0\r\n\r\n") + NEXT, 400),
    "chunk size as 0x": (chunked(b"0x0\r\n\r\n") + NEXT, 400),
    "oversized size wraps": (chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n") + NEXT, 400),
    "extension hides LF": (chunked(b'0;a="\n"\r\n\r\n') + NEXT, 400),
    "head bare LF": (b"GET / HTTP/1.1\nHost: x\n\n" + NEXT, 400),
}


@pytest.mark.parametrize("name", SMUGGLING)
def test_smuggling_shapes_are_refused_and_what_follows_is_not_served(name):
    raw, status = SMUGGLING[name]
    for pieces in ([raw], bytewise(raw)):
        outcome = drive(pieces)
        assert outcome.failed == status, (name, outcome)
        assert "/smuggled" not in outcome.targets and outcome.served == [] and outcome.closed


# -- request-target forms and CONNECT ------------------------------------------------------


def test_connect_gets_405_before_any_handler_and_closes():
    outcome = serve(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + NEXT)
    refused(outcome, 405)
    assert outcome.served == [] and outcome.partial is None
    (response, body), = parse_responses(outcome.output)
    assert CONNECT_REFUSAL.status == 405 and CONNECT_REFUSAL.reason in body.decode()  # as on HTTP/2
    assert header(response, "allow") == ""  # no method applies to a tunnel target here


def test_connect_is_refused_whatever_its_target():
    refused(serve(b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n"), 405)
    refused(serve(b"CONNECT x:1 HTTP/1.0\r\n\r\n"), 405)


def test_asterisk_form_is_for_options_only():
    outcome = serve(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert outcome.targets == ["*"] and outcome.failed is None
    for method in (b"GET", b"POST", b"HEAD", b"DELETE"):
        refused(serve(method + b" * HTTP/1.1\r\nHost: x\r\n\r\n"), 400)


@pytest.mark.parametrize("target, host", [
    (b"http://example.com/a?b=1", "example.com"),
    (b"HTTPS://example.com:8443", "example.com:8443"),
    (b"http://[::1]:80/", "[::1]:80"),
    (b"http://a.example?q", "a.example"),
])
def test_absolute_form_is_served_with_its_authority_as_host(target, host):
    outcome = serve(b"GET " + target + b" HTTP/1.1\r\nHost: other.example\r\n\r\n")
    assert outcome.failed is None and outcome.served[0].target == target.decode()
    assert outcome.served[0].host == host


@pytest.mark.parametrize("target", [
    b"foo", b"../etc/passwd", b"example.com:80", b"ftp://example.com/", b"http://user@example.com/",
    b"http:///path", b"http://:80/", b"http://a b/", b"http://example.com/#frag", b"http:example.com",
])
def test_other_request_targets_get_400(target):
    refused(serve(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 400)


def test_absolute_form_still_needs_one_valid_host_field():
    refused(serve(b"GET http://example.com/ HTTP/1.1\r\n\r\n"), 400)
    refused(serve(b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
    outcome = serve(b"GET http://example.com/ HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs none
    assert outcome.served[0].host == "example.com"


# -- the decoders and the parser adapter on their own ----------------------------------------


def test_a_content_length_body_is_passed_through_without_copies():
    decoder = LengthDecoder(10, b"", False)
    piece = b"x" * 6
    decoder.receive_data(piece)
    assert decoder.read() is piece and decoder.read() is None
    decoder.receive_data(b"yyyyGET /")
    assert decoder.read() == b"yyyy" and decoder.read() == b""
    assert decoder.leftover() == (b"GET /", False)


def test_data_before_bad_framing_is_handed_out_before_the_error():
    decoder = ChunkedDecoder(1024, b"3\r\nabc\r\n2\r\nde\r\nzz\r\n", False)
    assert decoder.read() == b"abcde"
    with pytest.raises(FramingError):
        decoder.read()
    with pytest.raises(FramingError):
        decoder.read()  # and stays refused


def test_the_parser_keeps_its_contract_around_a_decoded_body():
    parser = parser_factory(h1_drive.PARSER)(1024)
    parser.receive_data(chunked(b"3\r\nabc\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert type(parser.next_event()) is tuple
    data = parser.next_event()
    assert data == b"abc" and type(data) is bytes
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED and parser.next_event() is PAUSED
    assert parser.buffered() == b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parser.start_next() is True and parser.next_event()[1] == b"/2"


def test_parser_errors_in_a_body_are_parse_errors_with_a_status():
    parser = parser_factory(h1_drive.PARSER)(64)
    parser.receive_data(chunked(b"0\r\nX: " + b"v" * 100))
    parser.next_event()
    with pytest.raises(ParseError) as caught:
        parser.next_event()
    assert caught.value.status == 431


# -- found by fuzzing ----------------------------------------------------------------------


def test_the_head_limit_does_not_depend_on_the_reads():
    # A head of exactly the limit (blank line included) passes; one byte more
    # does not, whether it arrives whole or cut anywhere (it was cut after the
    # last CR, and refused, while the whole head within 4 bytes was let through).
    head = b"GET /00/0000/000000?0000000 HTTP/1.1\r\n0: x\x80\r\nHost: example.com\r\n\r\n"
    for limit, failed in ((len(head), None), (len(head) - 1, 431)):
        for cut in range(1, len(head)):
            outcome = drive([head[:cut], head[cut:]], limits(max_header_bytes=limit))
            assert outcome.failed == failed, (limit, cut)
