"""HTTP/2 as a sans-IO connection: h2 frames and flow-controls, this module serves.

:class:`HTTP2Connection` implements :class:`~.contract.ServerConnection`, as
:class:`~.http11.HTTP11Connection` does, so a runtime drives both with the
same calls. What differs is that streams overlap: a runtime that sees
``multiplexed`` set serves each :class:`~.events.RequestReceived` concurrently
with its siblings instead of one after another.

What h2 leaves to its user, and this module decides:

- **Output flow control.** ``send_data`` never refuses bytes: what the
  client's windows do not admit yet waits in the stream's queue and leaves
  when a WINDOW_UPDATE arrives. ``pending(stream_id)`` says how much waits, so
  a runtime can hold a streaming handler back (its backpressure).
- **Input flow control.** Body bytes are acknowledged (the client's window
  reopened) only when the runtime reports them consumed by the handler, so a
  slow reader stops the client instead of filling the server's memory.
- **Work bounds.** A stream counts against ``max_concurrent_streams`` until
  the runtime has finished its response, not merely until the client
  resets it; and resets of unfinished streams are budgeted (the rapid-reset
  attack, CVE-2023-44487, is "open a stream, reset it, repeat").
- **Graceful close.** h2's own GOAWAY ends the connection's state machine at
  once; a draining server sends its own GOAWAY frame and keeps serving the
  streams it already accepted.
- **Hostile clients.** A malformed request costs its stream, not the
  connection (RFC 9113 8.1.1): h2's inbound header checks are off, and
  ``h2_fields.request_from_fields`` makes them, and more, in the pass that
  builds the request (faster than h2's, too). A stream past
  ``max_concurrent_streams`` is refused alone (5.1.2); h2 would end the
  connection. Before h2 sees a byte, :class:`_FrameGuard` reads the frame
  headers: a frame longer than ``max_frame_size`` or a header block longer
  than twice ``max_header_bytes`` ends the connection before it is buffered
  (h2 holds a whole frame, and up to 64 CONTINUATION frames, first: the
  CVE-2024-27316 class), and frames that carry no request and no body byte
  (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA or CONTINUATION, DATA
  nobody reads) are budgeted, since each may queue a reply that a client
  which never reads lets pile up (CVE-2019-9512, -9514, -9515, -9518).
"""

from __future__ import annotations

import struct
from collections import deque

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .events import (
    BodyEnded,
    BodyReceived,
    ConnectionClosed,
    Event,
    ProtocolFailed,
    RequestReceived,
    StreamReset,
)
from .h2_fields import (
    NO_BODY_STATUSES,
    RejectedRequest,
    error_fields,
    request_from_fields,
    response_fields,
    trailers_problem,
)
from .limits import Limits
from .request import ConnectionInfo, Request
from .response import Response

__all__ = ["HTTP2Connection", "PREFACE"]

#: What a client sends first when it speaks HTTP/2 with prior knowledge.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_H2_CONFIG = dict(
    client_side=False,
    header_encoding=None,  # bytes in and out; we decode once, as latin-1
    # h2 makes a malformed header block a connection error, ending every
    # stream in flight; RFC 9113 8.1.1 wants a stream error. request_from_fields
    # checks instead, cookies included (8.2.3), in the pass that builds the request.
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,  # send_response checks what it builds
    normalize_outbound_headers=False,
)

#: Frames carrying no request and no body byte (see _FrameGuard) a client
#: may send in a burst; each request it opens earns _REQUEST_CREDIT more and
#: each body frame a handler is given one back, up to the burst again.
_IDLE_FRAME_BURST = 1000
_REQUEST_CREDIT = 100
_TOO_IDLE = "too many frames without a request or body"
# The HPACK table kept for our responses. A client may allow one of up to
# 4 GiB (SETTINGS_HEADER_TABLE_SIZE) and h2 would use all of it, keeping every
# distinct response field sent (each ETag, Date, Content-Length) for the
# connection's life; RFC 7541 4.2 lets an encoder use less than allowed.
_ENCODER_TABLE = 4096

_Codes = h2.errors.ErrorCodes
# Frame types (RFC 9113 6) and flags the guard reads.
_DATA, _HEADERS, _PUSH_PROMISE, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x5, 0x7, 0x8, 0x9
_END_STREAM = 0x1
_FRAME_HEAD = struct.Struct(">BHBB")  # length (high byte, low 16 bits), type, flags; the stream id is not needed


class _Refused(Exception):
    """The frame at ``offset`` of the data scanned will not be buffered: a connection error."""

    def __init__(self, offset: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.code = code
        self.reason = reason


class _FrameGuard:
    """Reads frame headers on the bytes received, before h2 buffers them.

    h2 waits for a frame to be complete before it checks its length against
    SETTINGS_MAX_FRAME_SIZE (so a client announcing 16 MiB gets 16 MiB
    held), and joins a header block's CONTINUATION frames in memory, up to
    64 of them, before it decodes any (about 1 MiB at 16 KiB frames, the
    CVE-2024-27316 class). Only the 9-byte frame headers are read here:
    enough to refuse both before the bytes are held, and to count the frames
    that carry no request and no body byte.
    """

    __slots__ = ("_skip", "_partial", "_block", "_max_frame", "_max_block")

    def __init__(self, max_frame: int, max_block: int) -> None:
        self._skip = len(PREFACE)  # payload bytes still to pass over; h2 checks the preface
        self._partial = b""  # a frame header cut by the end of a read
        self._block = 0  # bytes of the header block in progress
        self._max_frame = max_frame
        self._max_block = max_block

    def scan(self, data: bytes, budget: int) -> int:
        """How many idle frames begin in ``data``; raises :class:`_Refused` at one not to buffer.

        A DATA frame with payload is charged too, until a handler is given
        its bytes (HTTP2Connection then gives the unit back): h2 answers DATA
        for a closed stream with RST_STREAM by itself. The frame at which
        the idle ones outrun ``budget``, plus what the requests before it
        may earn, is refused here, so that a flood read in one piece does
        not queue a piece's worth of replies first.
        """
        carried = len(self._partial)
        if carried:
            data = self._partial + data  # rare: reads rarely end inside a frame header
            self._partial = b""
        pos = self._skip
        end = len(data)
        idle = payloads = 0
        head = _FRAME_HEAD.unpack_from
        while pos + 9 <= end:
            high, low, kind, flags = head(data, pos)
            length = high << 16 | low
            if length > self._max_frame:
                raise _Refused(pos - carried, _Codes.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
            if kind == _DATA and (length or flags & _END_STREAM):  # body bytes, or the end of a body
                if length:
                    payloads += 1
            elif kind == _HEADERS:
                self._block = length
                if length > self._max_block:
                    raise _Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, "header block too large")
                budget += _REQUEST_CREDIT  # if it turns out to be a request
            elif kind == _CONTINUATION and length:
                self._block += length
                if self._block > self._max_block:
                    raise _Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, "header block too large")
            elif kind == _PUSH_PROMISE:  # RFC 9113 8.4: only servers push
                raise _Refused(pos - carried, _Codes.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            elif kind != _WINDOW_UPDATE and kind != _GOAWAY:
                idle += 1
                if idle > budget:
                    raise _Refused(pos - carried, _Codes.ENHANCE_YOUR_CALM, _TOO_IDLE)
            pos += 9 + length
        if pos >= end:
            self._skip = pos - end
        else:
            self._skip = 0
            self._partial = bytes(data[pos:])
        return idle + payloads


class _LocalSettings(h2.settings.Settings):
    """Our SETTINGS as advertised, but no stream limit for h2 to enforce.

    h2 makes a HEADERS frame past MAX_CONCURRENT_STREAMS a connection error,
    ending every stream in flight; RFC 9113 5.1.2 makes it a stream error.
    HTTP2Connection counts streams itself (reset ones whose handlers still
    run included) and refuses the one too many with REFUSED_STREAM.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return 2**31 - 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _Stream:
    """What the connection remembers about one request stream."""

    __slots__ = ("method", "queue", "queued", "ending", "started", "sent_end", "to_send",
                 "unacked", "body_seen", "request_open", "reset")

    def __init__(self, method: str, request_open: bool) -> None:
        self.method = method
        self.queue: deque[memoryview] = deque()  # response bytes waiting for window
        self.queued = 0
        self.ending = False  # end_stream was called; END_STREAM goes with the last byte
        self.started = False  # the response head has been sent
        self.sent_end = False  # END_STREAM has been sent: nothing more goes out
        self.to_send: int | None = None  # bytes still owed under Content-Length
        self.unacked = 0  # body bytes delivered but not yet consumed
        self.body_seen = 0
        self.request_open = request_open  # the client may still send body bytes
        self.reset = False  # reset (by either side): drop what the handler sends


class HTTP2Connection:
    """One HTTP/2 connection, seen from the server.

    ``upgrade`` is ``(request, settings_header)`` for a connection upgraded
    from HTTP/1.1 (the request becomes stream 1); ``received`` are bytes
    read before this object took over, ``output`` bytes queued before it
    (the ``101`` of an upgrade). Raises ValueError for an upgrade whose
    settings h2 refuses.
    """

    protocol = "HTTP/2"
    multiplexed = True

    def __init__(
        self,
        info: ConnectionInfo,
        limits: Limits | None = None,
        *,
        upgrade: tuple[Request, bytes] | None = None,
        received: bytes = b"",
        output: bytes = b"",
    ) -> None:
        self.info = info
        self.limits = limits = limits or Limits()
        config = h2.config.H2Configuration(**_H2_CONFIG)
        self._h2 = conn = h2.connection.H2Connection(config)
        conn.local_settings = _LocalSettings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        # h2 applies these from the settings only when the client acknowledges
        # a change; ours are in force from the start, so it would never apply
        # them (and keep a 64 KiB header list, 16 KiB frames). A header list up
        # to twice the advertised size is decoded, for a 431 on its stream;
        # past that hpack gives up and the connection ends (HPACK state is lost).
        conn.max_inbound_frame_size = limits.max_frame_size
        conn.decoder.max_header_list_size = 2 * limits.max_header_bytes
        # An encoded block is no longer than its decoded list (literals cost a
        # few bytes over their text, a Huffman code is used only when shorter);
        # twice the list limit leaves room for an encoder that always Huffman-codes.
        self._guard = _FrameGuard(limits.max_frame_size, 2 * limits.max_header_bytes)
        self._budget = _IDLE_FRAME_BURST  # idle frames the client may still send (see _FrameGuard)
        self._out: list[bytes] = [output] if output else []
        self._events: list[Event] = []
        self._streams: dict[int, _Stream] = {}
        self._waiting: set[int] = set()  # streams with queued bytes and an open window, maybe
        self._broken = False  # a connection error: nothing more is sent but its GOAWAY
        self._eof = False
        self._goaway_sent = False
        self._last_stream_id = 0  # streams above it (after our GOAWAY) are refused
        self._resets = 0  # client resets of streams whose response was unfinished
        self._completed = 0
        if upgrade is None:
            conn.initiate_connection()
        else:
            request, settings_header = upgrade
            try:
                conn.initiate_upgrade_connection(settings_header)
            except (h2.exceptions.ProtocolError, ValueError) as exc:  # a setting out of its range
                raise ValueError(f"invalid HTTP2-Settings: {exc}") from None
            self._cap_encoder_table()  # HTTP2-Settings may have raised it
            self._streams[1] = _Stream(request.method, request_open=False)
            request.http_version = "2"
            self._events += (RequestReceived(1, request, False), BodyEnded(1))
        if limits.connection_window > 65535:
            conn.increment_flow_control_window(limits.connection_window - 65535)
        if received:
            self.receive_data(received)

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""
        if self._broken or self._eof:
            return
        if not data:
            self._eof = True
            self._events.append(ConnectionClosed())
            return
        try:
            self._budget -= self._guard.scan(data, self._budget)
        except _Refused as refused:
            if refused.offset > 0:
                self._feed(data[:refused.offset])  # the frames before it are served as usual
            self._fail(refused.code, refused.reason)
            return
        self._feed(data)
        if self._budget < 0:
            self._fail(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, _TOO_IDLE)
        elif self._budget > _IDLE_FRAME_BURST:
            self._budget = _IDLE_FRAME_BURST

    def _feed(self, data: bytes) -> None:
        """Hand ``data`` to h2 and turn what it saw into events."""
        try:
            received = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR), str(exc) or type(exc).__name__)
            return
        for event in received:
            if self._broken:
                break  # a GOAWAY with an error is queued: nothing else matters
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._on_data(event)
            elif kind is h2.events.RequestReceived:
                self._on_request(event)
            elif kind is h2.events.StreamEnded:
                stream = self._streams.get(event.stream_id)
                if stream is not None and stream.request_open:
                    stream.request_open = False
                    if not stream.reset:
                        self._events.append(BodyEnded(event.stream_id))
            elif kind is h2.events.StreamReset:
                self._on_reset(event)
            elif kind is h2.events.WindowUpdated:
                self._waiting.update(sid for sid, s in self._streams.items() if s.queued)
            elif kind is h2.events.RemoteSettingsChanged:
                self._cap_encoder_table()
                self._waiting.update(sid for sid, s in self._streams.items() if s.queued)
            elif kind is h2.events.ConnectionTerminated:
                # RFC 9113 would let us still answer the client's open streams,
                # but h2 closes its state machine on GOAWAY and refuses to
                # send anything more; a client saying goodbye is gone.
                self._broken = True
                self._events.append(ConnectionClosed())
            elif kind is h2.events.TrailersReceived:
                self._on_trailers(event)  # dropped, as on HTTP/1.1; StreamEnded follows
            # PING is answered by h2 itself; SETTINGS are acknowledged by h2 itself.

    def events(self) -> list[Event]:
        """Everything received since the last call."""
        events, self._events = self._events, []
        return events

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self._goaway_sent and sid > self._last_stream_id:
            self._refuse(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if len(self._streams) >= self.limits.max_concurrent_streams:
            # Past our advertised limit, or the client's own count says there
            # is room (it reset streams whose handlers are still running):
            # this stream alone is refused (RFC 9113 5.1.2). The RST_STREAM
            # serves nothing, so it is budgeted like an idle frame's reply.
            self._budget -= 1
            self._refuse(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        open_body = event.stream_ended is None  # if so, StreamEnded follows
        try:
            request, content_length = request_from_fields(event.headers, self.info, self.limits.max_header_bytes)
        except RejectedRequest as rejected:
            self._reject(sid, event.headers, open_body, rejected)
            return
        stream = _Stream(request.method, request_open=True)  # StreamEnded ends it, with BodyEnded
        if content_length is not None and content_length > self.limits.max_body_bytes:
            stream.request_open = open_body
            self._answer(sid, stream, 413, "request body too large")  # no handler sees it
            return
        self._streams[sid] = stream
        self._budget += _REQUEST_CREDIT
        self._events.append(RequestReceived(sid, request, open_body))

    def _reject(self, sid: int, headers: list[tuple[bytes, bytes]], open_body: bool,
                rejected: RejectedRequest) -> None:
        """No handler sees this request: reset it as malformed, or answer its status."""
        if rejected.status is None:
            self._budget -= 1  # an RST_STREAM for nothing served: an idle frame's reply
            self._refuse(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        else:
            method = "HEAD" if (b":method", b"HEAD") in headers else ""
            self._answer(sid, _Stream(method, open_body), rejected.status, rejected.reason, rejected.fields)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        """Malformed trailers (RFC 9113 8.1) reset their stream; the handler's body read fails."""
        problem = trailers_problem(event.headers)
        stream = self._streams.get(event.stream_id)
        if problem is None or stream is None or stream.reset:
            return
        stream.reset = True
        stream.request_open = False
        stream.queue.clear()
        stream.queued = 0
        self._release(event.stream_id, stream)
        self._refuse(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self._events.append(StreamReset(event.stream_id))

    def _on_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        size = len(event.data)
        stream = self._streams.get(sid)
        padding = event.flow_controlled_length - size
        if stream is None or stream.reset or not stream.request_open:
            self._acknowledge(event.flow_controlled_length, sid)  # nobody will read it
            return
        if padding:
            self._acknowledge(padding, sid)
        stream.body_seen += size
        if stream.body_seen > self.limits.max_body_bytes:
            self._acknowledge(size, sid)
            self._answer(sid, stream, 413, "request body too large")
            self._events.append(StreamReset(sid))  # the handler's body read fails
            return
        if size:
            stream.unacked += size
            self._budget += 1  # body bytes a handler is given: not an idle frame after all
            self._events.append(BodyReceived(sid, event.data))

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None or stream.reset:
            return
        stream.reset = True
        stream.queue.clear()
        stream.queued = 0
        self._release(sid, stream)
        self._events.append(StreamReset(sid))
        if event.remote_reset:
            self._resets += 1
            if self._resets > self.limits.max_client_resets + self._completed // 2:
                self._fail(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")

    def _cap_encoder_table(self) -> None:
        encoder = self._h2.encoder
        if encoder.header_table_size > _ENCODER_TABLE:
            encoder.header_table_size = _ENCODER_TABLE

    def consumed(self, stream_id: int, size: int) -> None:
        """The handler has read ``size`` body bytes: the client may send that much more.

        h2 batches the WINDOW_UPDATE frames (one per half window consumed).
        """
        stream = self._streams.get(stream_id)
        if stream is not None and stream.unacked:
            size = min(size, stream.unacked)
            stream.unacked -= size
            self._acknowledge(size, stream_id)

    def _acknowledge(self, size: int, stream_id: int) -> None:
        if size > 0 and not self._broken:
            try:
                self._h2.acknowledge_received_data(size, stream_id)
            except h2.exceptions.ProtocolError:  # the stream (or connection) is already closed
                pass

    # -- output --------------------------------------------------------------

    def send_response(self, stream_id: int, response: Response) -> None:
        """Queue the response's HEADERS; the body follows with send_data.

        Raises ValueError (and queues nothing) for a malformed status or header.
        A stream the client has reset swallows its response quietly.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.reset or stream.sent_end or self._broken:
            return
        suppress = stream.method == "HEAD" or response.status in NO_BODY_STATUSES
        fields, length = response_fields(response, suppress)
        self._h2.send_headers(stream_id, fields, end_stream=suppress)
        stream.started = True
        stream.sent_end = suppress
        stream.to_send = length

    def send_data(self, stream_id: int, data: bytes) -> None:
        """Queue body bytes; they leave as the client's windows allow (see ``pending``)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.reset or stream.sent_end or not data or self._broken:
            return
        if stream.to_send is not None:
            if len(data) > stream.to_send:
                raise ValueError("response body longer than its Content-Length")
            stream.to_send -= len(data)
        stream.queue.append(memoryview(data))
        stream.queued += len(data)
        self._waiting.add(stream_id)

    def end_stream(self, stream_id: int) -> None:
        """Finish the response (END_STREAM goes out with its last queued byte).

        Raises ValueError when the body fell short of its Content-Length; the
        stream is then reset, which is how HTTP/2 says "truncated".
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.to_send and not stream.reset:
            self.abort_stream(stream_id)
            raise ValueError(f"response body {stream.to_send} bytes short of its Content-Length")
        stream.ending = True
        if stream.reset or stream.sent_end or self._broken:
            self._finish(stream_id, stream)
        else:
            self._flush(stream_id, stream)

    def abort_stream(self, stream_id: int) -> None:
        """The response cannot be completed: reset this stream only (INTERNAL_ERROR)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if not stream.reset and not self._broken:
            stream.reset = True
            try:
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            except h2.exceptions.ProtocolError:  # the stream (or connection) is already closed
                pass
        self._finish(stream_id, stream)

    def _flush(self, sid: int, stream: _Stream) -> None:
        """Move queued bytes into DATA frames as far as the windows allow."""
        conn = self._h2
        queue = stream.queue
        while queue:
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                return  # the rest waits for a WINDOW_UPDATE
            piece = queue[0]
            size = min(window, conn.max_outbound_frame_size, len(piece))
            if size < len(piece):
                queue[0] = piece[size:]
                piece = piece[:size]
            else:
                queue.popleft()
            stream.queued -= size
            last = stream.ending and not queue
            conn.send_data(sid, piece.tobytes(), end_stream=last)
            stream.sent_end = last
        self._waiting.discard(sid)
        if stream.ending:
            if not stream.sent_end:
                conn.end_stream(sid)
                stream.sent_end = True
            self._finish(sid, stream)

    def _finish(self, sid: int, stream: _Stream) -> None:
        """The response is complete (or abandoned): forget the stream."""
        if self._streams.pop(sid, None) is None:
            return
        self._waiting.discard(sid)
        if not stream.reset:
            self._completed += 1
        self._release(sid, stream)
        if stream.request_open and not stream.reset and not self._broken:
            # Answered before the client finished its body: tell it to stop.
            stream.reset = True
            try:
                self._h2.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.ProtocolError:  # the stream (or connection) is already closed
                pass

    def _release(self, sid: int, stream: _Stream) -> None:
        """Give back the connection window held by body bytes nobody will read."""
        if stream.unacked:
            self._acknowledge(stream.unacked, sid)
            stream.unacked = 0

    def _answer(self, sid: int, stream: _Stream, status: int, message: str,
                extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer a stream ourselves (the client crossed a limit) and stop its body.

        The stream is marked reset, so whatever its handler (if one runs)
        sends afterwards is dropped.
        """
        if not stream.started and not stream.sent_end:
            fields, body = error_fields(status, message, extra)
            head_only = stream.method == "HEAD"
            self._h2.send_headers(sid, fields, end_stream=head_only)
            stream.started = True
            stream.sent_end = head_only
            if not head_only and self._h2.local_flow_control_window(sid) >= len(body):
                self._h2.send_data(sid, body, end_stream=True)
                stream.sent_end = True
        stream.reset = True
        stream.queue.clear()
        stream.queued = 0
        self._release(sid, stream)
        if stream.request_open or not stream.sent_end:
            stream.request_open = False
            # NO_ERROR after a complete answer: "stop sending, you have your response".
            self._refuse(sid, h2.errors.ErrorCodes.NO_ERROR if stream.sent_end else h2.errors.ErrorCodes.CANCEL)

    def refuse_stream(self, stream_id: int) -> None:
        """Turn a stream away unprocessed (REFUSED_STREAM: the client may safely retry it)."""
        stream = self._streams.get(stream_id)
        if stream is not None and not self._broken:
            stream.reset = True
            self._refuse(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            self._finish(stream_id, stream)

    def _refuse(self, sid: int, code: int) -> None:
        try:
            self._h2.reset_stream(sid, code)
        except h2.exceptions.ProtocolError:  # the stream (or connection) is already closed
            pass

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: GOAWAY with ``code``, then close."""
        if self._broken:
            return
        self._broken = True
        try:
            self._h2.close_connection(code, reason.encode("utf-8", "replace")[:256])
        except h2.exceptions.ProtocolError:
            pass
        self._events.append(ProtocolFailed(400, reason))

    def close_after_current(self) -> None:
        """Graceful shutdown: GOAWAY now; streams already accepted are still served."""
        if self._goaway_sent or self._broken:
            return
        self._goaway_sent = True
        self._last_stream_id = self._h2.highest_inbound_stream_id
        frame = GoAwayFrame(stream_id=0, last_stream_id=self._last_stream_id, error_code=0)
        self._out.append(self._h2.data_to_send())
        self._out.append(frame.serialize())

    def expects_continue(self, stream_id: int) -> bool:
        """Always False: this server sends no ``100 Continue`` over HTTP/2.

        The stream's flow-control window already tells the client how much
        body it may send; one that asks for ``100`` anyway goes ahead after
        its own short wait.
        """
        return False

    def send_continue(self, stream_id: int) -> None:
        """A no-op, since :meth:`expects_continue` is never true (see there)."""

    def data_to_send(self) -> bytes:
        if self._waiting:
            for sid in list(self._waiting):
                stream = self._streams.get(sid)
                if stream is None:
                    self._waiting.discard(sid)
                else:
                    self._flush(sid, stream)
        data = self._h2.data_to_send()
        if self._out:
            self._out.append(data)
            data = b"".join(self._out)
            self._out.clear()
        return data

    # -- state a runtime needs ----------------------------------------------

    def pending(self, stream_id: int) -> int:
        """Response bytes of the stream still waiting for the client's window."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.queued

    def waiting_for_window(self) -> list[tuple[int, int]]:
        """Responses whose bytes wait for a WINDOW_UPDATE, with how many bytes each."""
        return [(sid, stream.queued) for sid, stream in self._streams.items() if stream.queued]

    def stream_reset(self, stream_id: int) -> bool:
        """Has the client abandoned this stream (or the connection)?"""
        stream = self._streams.get(stream_id)
        return self._broken or self._eof or stream is None or stream.reset

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def should_close(self) -> bool:
        """Once data_to_send is flushed, close the socket."""
        if self._broken or self._eof:
            return True
        return self._goaway_sent and not self._streams
