"""HTTP/2 from a hostile client, sans-IO: hand-built frames (hyperframe, hpack) fed to HTTP2Connection.

Each attack shape is checked for its outcome (a reset stream, an answer, a
GOAWAY) and, where RFC 9113 makes it a stream error, for the streams around
it being served. ``test_h2_refuses_*`` prove what h2 itself still checks
behind HTTP2Connection (no code of ours does it); ``test_h2_alone_*`` run
h2's server side as it ships, to show what it lets through (or how badly it
refuses) and so why a check of ours exists.
"""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    ExtensionFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from protocols import (
    BodyEnded,
    BodyReceived,
    ConnectionInfo,
    HTTP2Connection,
    HTTP11Connection,
    Limits,
    ProtocolFailed,
    ProtocolSwitched,
    RequestReceived,
    Response,
    StreamReset,
    server_connection,
)
from protocols.response import CONNECT_REFUSAL

from .h2frames import (
    GET,
    POST,
    FrameReader,
    continuation_flood,
    data_frame,
    headers_frames,
    opening,
    ping,
    settings_header,
)

E = h2.errors.ErrorCodes
INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))


# -- an HTTP2Connection and its hand-writing client ---------------------------------------


class Peer(FrameReader):
    """An HTTP2Connection and a client that speaks to it in hand-built frames."""

    def __init__(self, limits: Limits | None = None, info: ConnectionInfo = INFO) -> None:
        super().__init__()
        self.server = HTTP2Connection(info, limits)
        self.encoder = Encoder()
        self.events: list = []
        self.output = 0  # bytes the server has produced
        self.send(opening(ack=True))

    def send(self, data: bytes) -> list:
        self.server.receive_data(data)
        events = self.server.events()
        self.events += events
        self.flush()
        return events

    def flush(self) -> None:
        out = self.server.data_to_send()
        self.output += len(out)
        self.feed(out)

    def block(self, fields, huffman: bool = True) -> bytes:
        return self.encoder.encode(fields, huffman=huffman)

    def request(self, stream_id: int, fields=GET, end_stream: bool = True) -> list:
        return self.send(headers_frames(stream_id, self.block(fields), end_stream))

    def answer(self, stream_id: int, body: bytes = b"ok") -> None:
        self.server.send_response(stream_id, Response(body))
        self.server.send_data(stream_id, body)
        self.server.end_stream(stream_id)
        self.flush()

    def started(self) -> dict[int, RequestReceived]:
        return {e.stream_id: e for e in self.events if isinstance(e, RequestReceived)}

    def failed(self) -> bool:
        return any(isinstance(e, ProtocolFailed) for e in self.events)


def bare_h2(settings: dict | None = None) -> h2.connection.H2Connection:
    """h2's server side as h2 ships it, past the preface and SETTINGS."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    if settings:
        conn.local_settings = h2.settings.Settings(client=False, initial_values=settings)
    conn.initiate_connection()
    conn.receive_data(opening())
    conn.data_to_send()
    return conn


def assert_stream_error(peer: Peer, bad: int, code: int = E.PROTOCOL_ERROR) -> None:
    assert peer.resets.get(bad) == code, (peer.resets, peer.status)
    assert bad not in peer.started() and bad not in peer.status
    assert peer.goaway is None and not peer.failed()


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


# -- frames the server will not buffer ------------------------------------------------------------


def test_h2_alone_buffers_a_megabyte_of_continuation_frames():
    conn = bare_h2()
    assert conn.receive_data(continuation_flood(60)) == []  # ~1 MiB held, nothing said


def test_a_continuation_flood_ends_the_connection_before_it_is_buffered():
    peer = Peer()  # max_header_bytes 16 KiB: a block may be 32 KiB on the wire
    peer.request(1, POST, end_stream=False)
    peer.send(continuation_flood(1)[:-3])  # 32 KiB in two frames, nearly all: fine so far
    assert peer.goaway is None
    peer.send(continuation_flood(1)[-3:] + ContinuationFrame(1, data=b"\x00").serialize()[:9])
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert peer.goaway.last_stream_id == 1  # stream 1 had been accepted
    assert peer.failed()
    peer.send(b"\x00" * 100_000)  # nothing more is read
    assert peer.server.should_close


def test_the_header_block_bound_follows_max_header_bytes():
    peer = Peer(Limits(max_header_bytes=1024))
    peer.send(HeadersFrame(1, data=b"\x00" * 2049, flags=["END_STREAM"]).serialize())
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM


def test_h2_alone_buffers_a_frame_announced_huge_until_it_is_complete():
    conn = bare_h2()
    header = b"\xff\xff\xff\x00\x00\x00\x00\x00\x01"  # DATA, 16 MiB - 1
    assert conn.receive_data(header + b"\x00" * 100_000) == [] and conn.data_to_send() == b""


def test_a_frame_announced_huge_ends_the_connection_at_its_header():
    peer = Peer()
    peer.request(1)
    peer.send(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")
    assert peer.goaway is not None and peer.goaway.error_code == E.FRAME_SIZE_ERROR
    assert 1 in peer.started()


def test_frames_before_a_refused_one_in_the_same_read_are_served():
    peer = Peer()
    block = peer.block(GET)
    peer.send(headers_frames(1, block) + b"\x00\x40\x01\x00\x00\x00\x00\x00\x03")  # then 16 KiB + 1
    assert 1 in peer.started() and peer.goaway.error_code == E.FRAME_SIZE_ERROR


def test_a_larger_max_frame_size_is_accepted_once_configured():
    peer = Peer(Limits(max_frame_size=65536))
    peer.request(1, POST, end_stream=False)
    peer.send(data_frame(1, b"x" * 40000, end_stream=True))
    assert peer.goaway is None
    assert sum(len(e.data) for e in peer.events if isinstance(e, BodyReceived)) == 40000


def test_push_promise_from_a_client_ends_the_connection_at_once():
    peer = Peer()
    peer.request(1, POST, end_stream=False)
    frame = PushPromiseFrame(1, promised_stream_id=2, data=b"\x00" * 1000).serialize()  # no END_HEADERS
    peer.send(frame)
    assert peer.goaway is not None and peer.goaway.error_code == E.PROTOCOL_ERROR


def test_frames_split_anywhere_read_the_same():
    """The guard reads frame headers across reads: any split gives the same events."""
    encoder = Encoder()
    conversation = b"".join([
        opening(), ping(),
        headers_frames(1, encoder.encode(POST + [(b"content-length", b"10")]), end_stream=False),
        data_frame(1, b"01234"), PriorityFrame(1, depends_on=0).serialize(),
        data_frame(1, b"56789", end_stream=True),
        HeadersFrame(3, data=encoder.encode(GET), flags=["END_STREAM"]).serialize(),
        ContinuationFrame(3, data=b"", flags=["END_HEADERS"]).serialize(),
    ])
    rng = random.Random(7)
    for trial in range(30):
        server = HTTP2Connection(INFO)
        every_byte = range(1, len(conversation))
        cuts = sorted(rng.sample(every_byte, rng.randint(1, 40))) if trial else every_byte
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(conversation)]):
            server.receive_data(conversation[start:end])
            events += server.events()
        kinds = [type(e) for e in events]
        assert kinds == [RequestReceived, BodyReceived, BodyReceived, BodyEnded, RequestReceived, BodyEnded], kinds


# -- floods: frames that carry no request and no body byte --------------------------------------

IDLE_FLOODS = {
    "PING": ping(),
    "PING ACK": ping(["ACK"]),
    "SETTINGS": SettingsFrame(0).serialize(),
    "SETTINGS ACK": SettingsFrame(0, flags=["ACK"]).serialize(),
    "PRIORITY": PriorityFrame(1, depends_on=0).serialize(),
    "empty DATA": data_frame(1, b""),
    "unknown frame type": ExtensionFrame(type=0xEE, stream_id=0, flag_byte=0, body=b"").serialize(),
}


@pytest.mark.parametrize("name", IDLE_FLOODS)
def test_an_idle_frame_flood_gets_goaway_enhance_your_calm(name):
    peer = Peer()
    peer.request(1, POST, end_stream=False)
    peer.send(IDLE_FLOODS[name] * 1100)
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert peer.output < 1200 * 17 + 1000  # the replies queued stayed bounded


@pytest.mark.parametrize("per_read", [1, 100, 4000])
def test_a_ping_flood_that_is_not_read_stops_producing_replies(per_read):
    peer = Peer()
    for _ in range(4000 // per_read):  # the client reads nothing
        peer.send(ping() * per_read)
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM
    assert peer.count(PingFrame) <= 1000


def test_zero_length_headers_flood_gets_goaway():
    """CVE-2019-9518: empty header blocks each open a stream that is malformed."""
    peer = Peer()
    peer.send(b"".join(HeadersFrame(1 + 2 * i, data=b"", flags=["END_HEADERS", "END_STREAM"]).serialize()
                       for i in range(1100)))
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM


def test_data_on_reset_streams_is_budgeted():
    """h2 answers each DATA frame on a stream it reset with RST_STREAM."""
    peer = Peer()
    peer.request(1, [(b":method", b"CONNECT"), (b":authority", b"x:1")], end_stream=False)  # 405, reset
    for _ in range(12):
        peer.send(data_frame(1, b"x") * 100)
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM


def test_streams_refused_past_the_limit_are_budgeted():
    peer = Peer(Limits(max_concurrent_streams=1))
    peer.request(1, POST, end_stream=False)
    encoder_block = peer.block(GET)
    peer.send(b"".join(headers_frames(3 + 2 * i, encoder_block) for i in range(1100)))
    assert peer.goaway is not None and peer.goaway.error_code == E.ENHANCE_YOUR_CALM


def test_a_client_that_pings_with_every_request_is_never_cut_off():
    peer = Peer()
    for i in range(1500):
        sid = 1 + 2 * i
        peer.send(ping() + PriorityFrame(sid, depends_on=0).serialize() + headers_frames(sid, peer.block(GET)))
        peer.answer(sid)
    assert peer.goaway is None and len(peer.status) == 1500


def test_many_small_body_frames_in_one_read_are_not_a_flood():
    peer = Peer()
    peer.request(1, POST, end_stream=False)
    peer.send(data_frame(1, b"0123456789") * 3000 + data_frame(1, b"", end_stream=True))
    assert peer.goaway is None and BodyEnded(1) in peer.events
    peer.server.consumed(1, 30000)


# -- h2c upgrade with settings h2 refuses ----------------------------------------------------------


@pytest.mark.parametrize("pairs", [
    [(0x2, 2)],  # ENABLE_PUSH must be 0 or 1
    [(0x4, 2**31)],  # INITIAL_WINDOW_SIZE past 2^31 - 1
    [(0x5, 100)],  # MAX_FRAME_SIZE under 16 KiB
    [(0x5, 2**24)],  # MAX_FRAME_SIZE over 16 MiB - 1
    [(0x8, 5)],  # ENABLE_CONNECT_PROTOCOL must be 0 or 1
])
def test_an_upgrade_with_settings_h2_refuses_is_answered_over_http1(pairs):
    head = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings_header(*pairs) + b"\r\n\r\n")
    conn = server_connection(INFO)
    conn.receive_data(head)
    switched, = conn.events()
    http1 = switched.connection
    assert isinstance(http1, HTTP11Connection)
    events = http1.events()
    assert isinstance(events[0], RequestReceived) and not any(isinstance(e, ProtocolSwitched) for e in events)
    http1.send_response(1, Response(b"ok"))
    http1.send_data(1, b"ok")
    http1.end_stream(1)
    assert http1.data_to_send().startswith(b"HTTP/1.1 200 ")


def test_an_upgrade_with_valid_settings_still_switches():
    head = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings_header((0x2, 0), (0x4, 2**31 - 1), (0x5, 2**24 - 1)) + b"\r\n\r\n")
    conn = server_connection(INFO)
    conn.receive_data(head)
    http1 = conn.events()[0].connection
    switched, = http1.events()
    assert isinstance(switched, ProtocolSwitched) and isinstance(switched.connection, HTTP2Connection)


# -- state a client could make the server keep -------------------------------------------------------


def test_a_huge_hpack_table_allowance_is_not_taken():
    """A client allowing a 4 GiB table would have every distinct response field kept for it."""
    peer = Peer()
    peer.decoder.max_allowed_table_size = 2**32 - 1
    peer.send(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 2**32 - 1}).serialize())
    for i in range(300):
        sid = 1 + 2 * i
        peer.request(sid)
        peer.server.send_response(sid, Response(b"x", headers={"etag": f'"{i:08d}"'}))
        peer.server.send_data(sid, b"x")
        peer.server.end_stream(sid)
        peer.flush()
    assert len(peer.status) == 300  # the client decoded every response with our smaller table
    assert peer.decoder.header_table_size <= 4096


def test_h2_alone_would_take_a_huge_hpack_table_allowance():
    conn = bare_h2()
    conn.receive_data(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 2**32 - 1}).serialize())
    assert conn.encoder.header_table_size == 2**32 - 1


def test_an_upgrade_cannot_raise_the_hpack_table_either():
    head = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings_header((0x1, 2**32 - 1)) + b"\r\n\r\n")
    conn = server_connection(INFO)
    conn.receive_data(head)
    switched, = conn.events()[0].connection.events()
    reader = FrameReader()
    reader.decoder.max_allowed_table_size = 2**32 - 1
    http2 = switched.connection
    http2.events()
    http2.send_response(1, Response(b"ok", headers={"etag": '"1"'}))
    http2.send_data(1, b"ok")
    http2.end_stream(1)
    out = http2.data_to_send()
    reader.feed(out[out.index(b"\r\n\r\n") + 4:])
    assert reader.status[1] == 200 and reader.decoder.header_table_size <= 4096
