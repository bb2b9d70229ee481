"""Fuzzing HTTP/2 input: random and mutated frame sequences fed to HTTP2Connection.

Hypothesis writes a client's side of a connection with hyperframe and hpack:
the preface (sometimes damaged), then frames of every type with random
stream ids, flags and payloads, including well-formed requests (HEADERS with
a real HPACK block, DATA, CONTINUATION) so that the fuzzing gets past the
first frame. Some streams are then mutated at the byte level, and every
stream is cut into reads at random points.

:func:`drive` plays a well-behaved runtime: it answers every request, reports
body bytes consumed and stops when the connection says it is done. Checked:

- **no crash**: client input never makes a method of the connection raise;
  the only failure paths are the connection's own (a reset stream, a
  GOAWAY and ``ProtocolFailed``, ``ConnectionClosed``);
- **no hang**: a bounded number of events for the bytes given;
- **bounded output**: what the server writes stays within a fixed multiple
  of what the client sent (no amplification: every reply a frame can earn is
  small, and the idle-frame budget stops a flood of them);
- **reads do not matter** to a well-behaved client: its requests are all
  served, with their bodies, however its bytes are cut. (Not to a hostile
  one: whether a bad frame is a stream or a connection error may depend on
  whether the stream's reset was already sent when it arrived.)

``ASTRA_FUZZ=1`` (``make fuzz``) selects the long profile. Inputs in
``tests/fuzz_corpus/h2/*.bin`` are replayed on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hpack import Encoder
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from protocols import (
    PREFACE,
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    ConnectionInfo,
    HTTP2Connection,
    Limits,
    ProtocolFailed,
    RequestReceived,
    Response,
    StreamReset,
)

from .fuzzing import PROFILE, corpus, corpus_reads, cut
from .h2frames import opening

INFO = ConnectionInfo(("127.0.0.1", 50000), ("127.0.0.1", 8000))
#: Far more events than any test input can honestly produce.
MAX_EVENTS = 20_000
#: Output allowed beyond the fixed multiple of the input: the server's SETTINGS,
#: WINDOW_UPDATE and a GOAWAY.
OUTPUT_SLACK = 4096
#: Bytes the server may write per byte received; a request of a few dozen
#: bytes earns a response of about a hundred.
OUTPUT_RATIO = 8


# -- a runtime that does what runtimes do ------------------------------------------------------


@dataclass
class Outcome:
    served: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # (stream, method, path, body)
    reset: list[int] = field(default_factory=list)
    failed: bool = False
    closed: bool = False
    events: int = 0
    output: int = 0


def drive(pieces: list[bytes], limits: Limits | None = None) -> Outcome:
    """Feed the pieces, answering every complete request; any exception propagates."""
    conn = HTTP2Connection(INFO, limits or Limits())
    outcome = Outcome()
    bodies: dict[int, tuple[str, str, bytearray]] = {}
    outcome.output += len(conn.data_to_send())
    for piece in pieces:
        if conn.should_close:
            break
        conn.receive_data(piece)
        events = conn.events()
        outcome.events += len(events)
        assert outcome.events < MAX_EVENTS, "the connection keeps producing events"
        for event in events:
            if isinstance(event, RequestReceived):
                assert event.stream_id not in bodies, "a stream started twice"
                bodies[event.stream_id] = (event.request.method, event.request.path, bytearray())
            elif isinstance(event, BodyReceived):
                bodies[event.stream_id][2].extend(event.data)
                conn.consumed(event.stream_id, len(event.data))
            elif isinstance(event, BodyEnded):
                method, path, body = bodies[event.stream_id]
                outcome.served.append((event.stream_id, method, path, bytes(body)))
                if not conn.stream_reset(event.stream_id):
                    conn.send_response(event.stream_id, Response(b"ok"))
                    conn.send_data(event.stream_id, b"ok")
                    conn.end_stream(event.stream_id)
            elif isinstance(event, StreamReset):
                outcome.reset.append(event.stream_id)
                if event.stream_id in bodies:
                    conn.end_stream(event.stream_id)  # the handler gives up, as a runtime's would
            elif isinstance(event, ProtocolFailed):
                outcome.failed = True
            elif isinstance(event, ConnectionClosed):
                outcome.closed = True
            else:
                raise AssertionError(f"unexpected event {event!r}")
        outcome.output += len(conn.data_to_send())
    outcome.closed = outcome.closed or conn.should_close
    return outcome


def check(stream: bytes, pieces: list[bytes]) -> Outcome:
    """Drive the connection with ``pieces`` and check the output bound; exceptions propagate."""
    outcome = drive(pieces)
    assert outcome.output <= OUTPUT_SLACK + OUTPUT_RATIO * len(stream), (outcome.output, len(stream))
    return outcome


# -- strategies ----------------------------------------------------------------------------

stream_ids = st.sampled_from([0, 1, 1, 1, 3, 3, 5, 7, 2, 2**31 - 1])
small_payloads = st.binary(max_size=40)
_PSEUDO = [b":method", b":path", b":scheme", b":authority", b":status", b":protocol"]
header_names = st.one_of(
    st.sampled_from(_PSEUDO + [b"content-length", b"te", b"connection", b"host", b"cookie", b"Upper"]),
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8).map(str.encode),
)
header_values = st.one_of(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"/", b"/a?b", b"*", b"http", b"https",
                     b"example.com", b"trailers", b"0", b"5", b"-1", b""]),
    st.binary(max_size=12),
)


@st.composite
def request_fields(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """A request's fields: usually valid, sometimes with random fields added or some missing."""
    fields = [(b":method", draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]))),
              (b":path", draw(st.sampled_from([b"/", b"/x", b"/a?b=c"]))),
              (b":scheme", b"https"), (b":authority", b"example.com")]
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))[: draw(st.integers(2, 4))]
    return fields + draw(st.lists(st.tuples(header_names, header_values), max_size=3))


def _on_stream(frame: bytes, sid: int) -> bytes:
    """The serialized frame moved to stream ``sid``, which hyperframe might not allow (the point)."""
    return frame[:5] + sid.to_bytes(4, "big") + frame[9:]


@st.composite
def frames(draw: st.DrawFn, encoder: Encoder) -> bytes:
    """One frame of any type, with a stream id that is usually, not always, a legal one."""
    kind = draw(st.sampled_from([
        "request", "request", "request", "data", "data", "headers", "continuation", "priority",
        "rst", "settings", "settings ack", "ping", "goaway", "window", "push", "unknown",
    ]))
    sid = draw(stream_ids)
    flags = draw(st.sets(st.sampled_from(["END_STREAM", "END_HEADERS", "PADDED", "PRIORITY"]), max_size=2))
    if kind == "request":  # a real header block, so the fuzzing reaches the request checks
        frame = HeadersFrame(1, data=encoder.encode(draw(request_fields())), flags=["END_HEADERS"])
        if draw(st.booleans()):
            frame.flags.add("END_STREAM")
        return _on_stream(frame.serialize(), sid | 1)
    if kind == "headers":  # random bytes for a header block, random flags
        frame = HeadersFrame(1, data=draw(small_payloads), flags=sorted(flags))
    elif kind == "data":
        frame = DataFrame(1, data=draw(st.binary(max_size=300)), flags=["END_STREAM"] if draw(st.booleans()) else [])
    elif kind == "continuation":
        frame = ContinuationFrame(1, data=draw(small_payloads), flags=sorted(flags & {"END_HEADERS"}))
    elif kind == "priority":
        frame = PriorityFrame(1, depends_on=draw(stream_ids), stream_weight=draw(st.integers(0, 255)),
                              exclusive=draw(st.booleans()))
    elif kind == "rst":
        frame = RstStreamFrame(1, error_code=draw(st.integers(0, 15)))
    elif kind == "push":
        frame = PushPromiseFrame(1, promised_stream_id=2, data=draw(small_payloads), flags=["END_HEADERS"])
    elif kind == "unknown":
        frame = ExtensionFrame(type=draw(st.integers(10, 255)), stream_id=1, flag_byte=draw(st.integers(0, 255)),
                               body=draw(small_payloads))
    else:  # connection-level frames: stream 0, mostly
        sid = sid if draw(st.integers(0, 7)) == 0 else 0
        if kind == "settings":
            values = draw(st.dictionaries(st.integers(1, 9), st.integers(0, 2**32 - 1), max_size=3))
            frame = SettingsFrame(0, settings=values)
        elif kind == "settings ack":
            frame = SettingsFrame(0, flags=["ACK"])
        elif kind == "ping":
            frame = PingFrame(0, opaque_data=draw(st.binary(min_size=8, max_size=8)),
                              flags=["ACK"] if draw(st.booleans()) else [])
        elif kind == "goaway":
            frame = GoAwayFrame(0, last_stream_id=draw(stream_ids), error_code=draw(st.integers(0, 15)))
        else:  # window
            frame = WindowUpdateFrame(0, window_increment=draw(st.integers(0, 2**31 - 1)))
            sid = draw(stream_ids)  # WINDOW_UPDATE goes on streams too
    return _on_stream(frame.serialize(), sid)


@st.composite
def byte_mutations(draw: st.DrawFn, stream: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(stream)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if how == "flip" and at < len(stream):
            stream = stream[:at] + bytes([stream[at] ^ (1 << draw(st.integers(0, 7)))]) + stream[at + 1:]
        elif how == "insert":
            stream = stream[:at] + draw(st.binary(min_size=1, max_size=9)) + stream[at:]
        elif how == "delete":
            stream = stream[:at] + stream[at + draw(st.integers(1, 9)):]
        elif how == "truncate":
            stream = stream[:at]
        elif how == "repeat":
            stream = stream[:at] + stream[at:at + draw(st.integers(1, 40))] * 2 + stream[at + 40:]
    return stream


@st.composite
def valid_traffic(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, str, str, bytes]]]:
    """A well-behaved client's bytes, and the requests they make: (stream, method, path, body)."""
    encoder = Encoder()
    out = [opening()]
    requests = []
    for number in range(draw(st.integers(1, 5))):
        sid = 2 * number + 1
        method = draw(st.sampled_from(["GET", "POST", "PUT"]))
        path = draw(st.sampled_from(["/", "/x", "/a/b"]))
        body = draw(st.binary(max_size=200)) if method != "GET" else b""
        fields = [(":method", method), (":path", path), (":scheme", "https"), (":authority", "example.com")]
        values = st.text("abc ;=/", max_size=8).map(lambda v: f"v{v}v")  # no space at either end
        fields += draw(st.lists(st.tuples(st.sampled_from(["accept", "x-a", "cookie"]), values), max_size=2))
        out.append(HeadersFrame(sid, data=encoder.encode(fields),
                                flags=["END_HEADERS"] + ([] if body else ["END_STREAM"])).serialize())
        pieces = [body[i:i + 64] for i in range(0, len(body), 64)]
        for i, piece in enumerate(pieces):
            out.append(DataFrame(sid, data=piece, flags=["END_STREAM"] if i == len(pieces) - 1 else []).serialize())
        if draw(st.integers(0, 3)) == 0:  # some frames that carry no request
            out.append(draw(st.sampled_from([
                PingFrame(0, opaque_data=b"12345678").serialize(),
                WindowUpdateFrame(0, window_increment=1000).serialize(),
                SettingsFrame(0, flags=["ACK"]).serialize(),
            ])))
        requests.append((sid, method, path, body))
    return b"".join(out), requests


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A client's bytes (frames of any kind, sometimes damaged), and the reads they arrive in."""
    encoder = Encoder()
    start = opening() if draw(st.integers(0, 9)) else PREFACE
    stream = start + b"".join(draw(st.lists(frames(encoder), min_size=1, max_size=12)))
    if draw(st.integers(0, 3)) == 0:
        stream = draw(byte_mutations(stream))
    return stream, cut(draw, stream)


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes], list[tuple[int, str, str, bytes]]]:
    stream, requests = draw(valid_traffic())
    return stream, cut(draw, stream), requests


@PROFILE
@given(streams())
def test_fuzzed_frame_sequences(case: tuple[bytes, list[bytes]]) -> None:
    stream, pieces = case
    note(f"stream: {stream!r}")
    check(stream, pieces)


@PROFILE
@given(valid_streams())
def test_valid_traffic_is_served_whatever_the_reads(case) -> None:
    stream, pieces, requests = case
    outcome = check(stream, pieces)
    assert not outcome.failed and sorted(outcome.served) == requests


@settings(PROFILE, max_examples=PROFILE.max_examples // 2)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8))
def test_random_bytes_after_the_preface(chunks: list[bytes]) -> None:
    stream = PREFACE + b"".join(chunks)
    check(stream, [PREFACE, *chunks])


@pytest.mark.parametrize("path", corpus("h2", ".bin"), ids=lambda p: p.stem)
def test_corpus(path: Path) -> None:
    stream = path.read_bytes()
    for pieces in corpus_reads(stream):
        check(stream, pieces)


def test_the_corpus_is_there() -> None:
    assert len(corpus("h2", ".bin")) >= 5
