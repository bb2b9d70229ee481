"""HTTP/2 from a hostile client, sans-IO: hand-built frames (hyperframe, hpack) fed to HTTP2Connection.

Each attack shape is checked for its outcome (a reset stream, an answer, a
GOAWAY) and, where RFC 9113 makes it a stream error, for the streams around
it being served. ``test_h2_refuses_*`` prove what h2 itself still checks
behind HTTP2Connection (no code of ours does it); ``test_h2_alone_*`` run
h2's server side as it ships, to show what it lets through (or how badly it
refuses) and so why a check of ours exists.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from protocols import BodyEnded, ConnectionInfo, Limits, RequestReceived, StreamReset
from protocols.response import CONNECT_REFUSAL

from .h2frames import (
    GET,
    POST,
    FrameReader,
    data_frame,
    headers_frames,
    ping,
)
from .h2peer import E, INFO, Peer, assert_stream_error, bare_h2


# -- what h2 refuses by itself (connection errors: RFC 9113 5.4.1 lets a stream error be one) --


@pytest.mark.parametrize("name, frames", [
    ("non-digit content-length", lambda p: p.block(POST + [(b"content-length", b"1x")])),
    ("content-lengths that disagree",
     lambda p: p.block(POST + [(b"content-length", b"1"), (b"content-length", b"2")])),
])
def test_h2_refuses_a_bad_content_length(name, frames):
    peer = Peer()
    peer.send(headers_frames(1, frames(peer), end_stream=False))
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR
    assert peer.failed() and not peer.started()


@pytest.mark.parametrize("body, end", [(b"toolong", True), (b"short", True), (b"toolongbyfar", False)])
def test_h2_holds_the_body_to_its_content_length(body, end):
    """RFC 9113 8.1.1: DATA disagreeing with content-length is malformed; h2 ends the connection."""
    peer = Peer()
    peer.request(1, POST + [(b"content-length", b"6")], end_stream=False)
    peer.send(data_frame(1, body, end_stream=end))
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


def test_h2_refuses_a_frame_inside_a_header_block():
    peer = Peer()
    head = HeadersFrame(1, data=peer.block(GET), flags=["END_STREAM"]).serialize()  # no END_HEADERS
    peer.send(head + ping())
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


def test_h2_refuses_more_than_64_continuation_frames():
    """Empty CONTINUATION frames hold no bytes; h2 caps their number (our budget is larger)."""
    peer = Peer()
    head = HeadersFrame(1, data=b"", flags=["END_STREAM"]).serialize()
    peer.send(head + ContinuationFrame(1, data=b"").serialize() * 70)
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


@pytest.mark.parametrize("frame", [
    WindowUpdateFrame(0, window_increment=0).serialize()[:9] + b"\x00\x00\x00\x00",  # increment 0
    HeadersFrame(2, data=b"", flags=["END_HEADERS"]).serialize(),  # an even (server) stream id
    PriorityFrame(3, depends_on=3).serialize(),  # a stream depending on itself
    RstStreamFrame(9, error_code=0).serialize(),  # resetting an idle stream
])
def test_h2_refuses_frames_that_break_the_connection_rules(frame):
    peer = Peer()
    peer.send(frame)
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


def test_h2_refuses_trailers_without_end_stream_and_a_lower_stream_id():
    peer = Peer()
    peer.request(3, POST, end_stream=False)
    peer.send(headers_frames(3, peer.block([(b"x-t", b"1")]), end_stream=False))
    assert peer.goaway is not None
    peer = Peer()
    peer.request(5)
    peer.request(3)  # stream ids only go up (RFC 9113 5.1.1)
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


def test_a_header_list_past_twice_the_limit_ends_the_connection():
    """hpack stops decoding at the limit we give it, and HPACK state is then lost."""
    peer = Peer(Limits(max_header_bytes=4096))
    peer.send(headers_frames(1, peer.block(GET + [(b"x-big", b"a" * 9000)], huffman=False)))
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert not peer.started()


def test_h2_alone_would_decode_a_64_kib_header_list_despite_the_16_kib_advertised():
    conn = bare_h2({h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16384})
    block = Encoder().encode(GET + [(b"x-big", b"a" * 40000)], huffman=False)
    events = conn.receive_data(headers_frames(1, block))
    assert isinstance(events[0], h2.events.RequestReceived)


# -- malformed requests: a stream error, and the streams around it go on (RFC 9113 8.1.1) ----


def test_h2_alone_makes_a_malformed_request_a_connection_error():
    """Why h2's inbound checks are off: one bad stream would end every stream in flight."""
    conn = bare_h2()
    encoder = Encoder()
    conn.receive_data(headers_frames(1, encoder.encode(POST), end_stream=False))
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(headers_frames(3, encoder.encode(GET + [(b"X-Up", b"1")])))
    reader = FrameReader()
    reader.feed(conn.data_to_send())
    assert reader.goaway is not None and reader.goaway.error_code == E.PROTOCOL_ERROR




MALFORMED = {
    "uppercase name": GET + [(b"X-Up", b"1")],
    "name with a space": GET + [(b"x up", b"1")],
    "empty name": GET + [(b"", b"1")],
    "colon inside a name": GET + [(b"x:y", b"1")],
    "8-bit name": GET + [(b"x-\xe9", b"1")],
    "NUL in a value": GET + [(b"x-a", b"a\x00b")],
    "CR in a value": GET + [(b"x-a", b"a\rb")],
    "LF in a value": GET + [(b"x-a", b"a\nb")],
    "control byte in a value": GET + [(b"x-a", b"a\x01b")],
    "value starting with a space": GET + [(b"x-a", b" a")],
    "value ending with a tab": GET + [(b"x-a", b"a\t")],
    "connection": GET + [(b"connection", b"close")],
    "keep-alive": GET + [(b"keep-alive", b"timeout=5")],
    "proxy-connection": GET + [(b"proxy-connection", b"keep-alive")],
    "transfer-encoding": GET + [(b"transfer-encoding", b"chunked")],
    "upgrade": GET + [(b"upgrade", b"h2c")],
    "te other than trailers": GET + [(b"te", b"gzip")],
    "pseudo-header after a regular field": [GET[0], (b"x-a", b"1"), *GET[1:]],
    "repeated :path": GET + [(b":path", b"/other")],
    "repeated :method": [GET[0], GET[0], *GET[1:]],
    "unknown pseudo-header": GET + [(b":foo", b"1")],
    ":status in a request": GET + [(b":status", b"200")],
    ":protocol without extended CONNECT": GET + [(b":protocol", b"websocket")],
    "no :method": GET[1:],
    "no :path": [f for f in GET if f[0] != b":path"],
    "no :scheme": [f for f in GET if f[0] != b":scheme"],
    "empty :path": [GET[0], (b":path", b""), *GET[2:]],
    "non-ASCII :method": [(b":method", b"G\xc3\x89T"), *GET[1:]],
    "method with a space": [(b":method", b"GE T"), *GET[1:]],
    "empty :method": [(b":method", b""), *GET[1:]],
    ":path without a slash": [GET[0], (b":path", b"index.html"), *GET[2:]],
    "absolute :path": [GET[0], (b":path", b"http://evil/x"), *GET[2:]],
    ":path with a space": [GET[0], (b":path", b"/a b"), *GET[2:]],
    ":path with a control byte": [GET[0], (b":path", b"/a\x7fb"), *GET[2:]],
    ":path with 8-bit bytes": [GET[0], (b":path", b"/\xc3\xa9"), *GET[2:]],
    "* for GET": [GET[0], (b":path", b"*"), *GET[2:]],
    ":authority with userinfo": GET[:3] + [(b":authority", b"user:pw@example")],
    ":authority with a space": GET[:3] + [(b":authority", b"exa mple")],
    "empty :authority": GET[:3] + [(b":authority", b"")],
    ":authority with no host": GET[:3] + [(b":authority", b":8000")],
    ":authority with a slash": GET[:3] + [(b":authority", b"example/x")],
    "invalid Host": GET[:3] + [(b"host", b"a b")],
    "two Hosts": GET[:3] + [(b"host", b"a"), (b"host", b"a")],
    "Host disagreeing with :authority": GET + [(b"host", b"other")],
    "no :authority and no Host": GET[:3],
    "CONNECT with a :path": [(b":method", b"CONNECT"), (b":authority", b"example:443"), (b":path", b"/")],
    "CONNECT without :authority": [(b":method", b"CONNECT")],
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_request_resets_its_stream_and_its_siblings_are_served(name):
    peer = Peer()
    peer.request(1, POST, end_stream=False)  # in flight around the bad one
    peer.request(3, MALFORMED[name])
    peer.request(5)
    assert_stream_error(peer, 3)
    assert set(peer.started()) == {1, 5}
    peer.send(data_frame(1, b"body", end_stream=True))
    peer.answer(1)
    peer.answer(5)
    assert peer.status == {1: 200, 5: 200} and {1, 5} <= peer.ended


def test_malformed_requests_need_no_h2_validation():
    """What h2's own checks said is now said here, before a handler exists: nothing raises."""
    peer = Peer()
    for i, fields in enumerate(MALFORMED.values()):
        peer.request(1 + 2 * i, fields)
    assert peer.goaway is None and not peer.started()
    assert len(peer.resets) == len(MALFORMED)


@pytest.mark.parametrize("fields", [
    GET + [(b"te", b"trailers")],
    GET + [(b"te", b"Trailers")],
    GET + [(b"host", b"EXAMPLE")],  # case does not matter in a host
    [GET[0], GET[1], (b":scheme", b"http"), (b":authority", b"example:80"), (b"host", b"example")],
    [GET[0], GET[1], (b":scheme", b"https"), (b":authority", b"example"), (b"host", b"example:443")],
    GET[:3] + [(b"host", b"example:8000")],  # Host alone (an HTTP/1.1 gateway's translation)
    GET[:3] + [(b":authority", b"[::1]:8000")],
    GET + [(b"x-a", b"inner  spaces\tand tab"), (b"x-b", b""), (b"x-c", b"caf\xc3\xa9")],
    [(b":method", b"OPTIONS"), (b":path", b"*"), *GET[2:]],
    [(b":method", b"PROPFIND"), *GET[1:]],  # any token is a method
    [GET[0], (b":path", b"/a%20b?q=%C3%A9#frag"), *GET[2:]],
])
def test_well_formed_edge_cases_are_served(fields):
    peer = Peer()
    started = peer.request(1, fields)
    assert isinstance(started[0], RequestReceived), peer.resets
    assert peer.goaway is None and not peer.resets


def test_cookie_crumbs_are_joined_and_host_comes_from_authority():
    peer = Peer()
    peer.request(1, GET + [(b"cookie", b"a=1"), (b"x-a", b"1"), (b"cookie", b"b=2")])
    request = peer.started()[1].request
    assert request.headers.get_all("cookie") == ["a=1; b=2"]
    assert request.headers["host"] == "example" and request.headers["x-a"] == "1"


def test_trailers_with_a_pseudo_header_reset_the_stream_only():
    peer = Peer()
    peer.request(1, POST, end_stream=False)
    peer.request(3, POST, end_stream=False)
    peer.send(data_frame(1, b"body"))
    peer.send(headers_frames(1, peer.block([(b":path", b"/late")])))
    assert peer.resets.get(1) == E.PROTOCOL_ERROR
    assert StreamReset(1) in peer.events and BodyEnded(1) not in peer.events
    peer.send(headers_frames(3, peer.block([(b"x-checksum", b"abc")])))  # ordinary trailers: dropped
    assert BodyEnded(3) in peer.events and 3 not in peer.resets
    peer.answer(3)
    peer.server.end_stream(1)  # its handler finishes: nothing more goes out
    peer.flush()
    assert peer.status == {3: 200} and peer.goaway is None


# -- requests the server answers itself --------------------------------------------------------


def test_connect_gets_405_without_a_handler_and_the_connection_goes_on():
    peer = Peer()
    peer.request(1, [(b":method", b"CONNECT"), (b":authority", b"internal:22")], end_stream=False)
    assert not peer.started() and peer.status[1] == 405
    assert peer.headers[1][b"allow"] == b""  # a tunnel target supports no method here, as on HTTP/1.1
    assert CONNECT_REFUSAL.reason in peer.bodies[1].decode()
    assert peer.resets.get(1) == E.NO_ERROR  # the tunnel's bytes are not wanted
    peer.send(data_frame(1, b"SSH-2.0-hello\r\n"))  # ignored: no handler, no tunnel
    assert not peer.started() and peer.goaway is None
    peer.request(3)
    assert isinstance(peer.events[-2], RequestReceived) and peer.events[-2].stream_id == 3


def test_an_unknown_scheme_gets_400():
    peer = Peer()
    peer.request(1, [GET[0], GET[1], (b":scheme", b"ftp"), GET[3]])
    assert peer.status[1] == 400 and not peer.started() and peer.goaway is None


def test_a_head_request_answered_by_the_server_gets_no_body():
    peer = Peer()
    peer.request(1, [(b":method", b"HEAD"), GET[1], (b":scheme", b"ftp"), GET[3]])
    assert peer.status[1] == 400 and 1 in peer.ended and 1 not in peer.bodies


@pytest.mark.parametrize("claimed, transport", [(b"https", "http"), (b"http", "https")])
def test_the_scheme_comes_from_the_transport_not_the_client(claimed, transport):
    peer = Peer(info=ConnectionInfo(INFO.peer, INFO.local, transport))
    peer.request(1, [GET[0], GET[1], (b":scheme", claimed), GET[3]])
    assert peer.started()[1].request.connection.scheme == transport


def test_header_fields_over_the_limit_get_431_and_the_connection_goes_on():
    peer = Peer(Limits(max_header_bytes=4096))
    peer.request(1, POST, end_stream=False)
    peer.send(headers_frames(3, peer.block(GET + [(b"x-big", b"a" * 5000)], huffman=False)))
    assert peer.status.get(3) == 431 and 3 not in peer.started()
    peer.request(5)
    assert set(peer.started()) == {1, 5} and peer.goaway is None


# -- too many streams ----------------------------------------------------------------------------


def test_h2_alone_ends_the_connection_for_one_stream_too_many():
    conn = bare_h2({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    encoder = Encoder()
    conn.receive_data(headers_frames(1, encoder.encode(GET)) + headers_frames(3, encoder.encode(GET)))
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        conn.receive_data(headers_frames(5, encoder.encode(GET)))


def test_one_stream_too_many_is_refused_alone():
    """RFC 9113 5.1.2: a stream error; the streams in flight finish."""
    peer = Peer(Limits(max_concurrent_streams=2))
    peer.request(1)
    peer.request(3)
    peer.request(5)
    assert set(peer.started()) == {1, 3}
    assert peer.resets == {5: E.REFUSED_STREAM} and peer.goaway is None
    peer.answer(1)
    peer.answer(3)
    assert peer.status == {1: 200, 3: 200}
    peer.request(7)  # slots are free again
    assert 7 in peer.started()


def test_the_advertised_limit_is_the_configured_one():
    peer = Peer(Limits(max_concurrent_streams=7))
    settings = next(f for f in peer.frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
