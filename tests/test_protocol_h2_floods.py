"""HTTP/2 from a hostile client, sans-IO, continued: frames the server will not buffer, floods,
h2c upgrades with settings h2 refuses, and state a client could make the server keep.

Same method as ``test_protocol_h2_hostile``: ``test_h2_alone_*`` show what h2 lets through as it
ships, the others that HTTP2Connection does not.
"""

from __future__ import annotations

import random

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    ExtensionFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    SettingsFrame,
)

from protocols import (
    BodyEnded,
    BodyReceived,
    HTTP2Connection,
    HTTP11Connection,
    Limits,
    ProtocolSwitched,
    RequestReceived,
    Response,
    server_connection,
)

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
from .h2peer import E, INFO, Peer, bare_h2


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
