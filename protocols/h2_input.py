"""HTTP/2 input: bytes through the frame guard and h2, h2's events into the contract's.

:class:`Input` is the half of :class:`~.http2.HTTP2Connection` that reads.
It hands received bytes to :class:`~.h2_guard.FrameGuard` and then to h2,
and translates what h2 saw into the events a runtime handles
(:mod:`.events`), deciding on the way what h2 leaves to its user: a
malformed request costs its stream, not the connection (its fields are
checked by :func:`~.h2_fields.request_from_fields`); a stream past
``max_concurrent_streams`` is refused alone; a body past ``max_body_bytes``
is answered 413; client resets of unfinished streams and frames that
serve nothing are budgeted. Like :class:`~.h2_streams.Streams`, whose
methods it uses, it is a base class of the connection, not an object of
its own.
"""

from __future__ import annotations

import h2.errors
import h2.events
import h2.exceptions

from .events import BodyEnded, BodyReceived, ConnectionClosed, Event, ProtocolFailed, RequestReceived, StreamReset
from .h2_fields import RejectedRequest, request_from_fields, trailers_problem
from .h2_guard import IDLE_FRAME_BURST, REQUEST_CREDIT, TOO_IDLE, FrameGuard, Refused
from .h2_streams import Stream, Streams
from .limits import Limits
from .request import ConnectionInfo

__all__ = ["Input"]

_Codes = h2.errors.ErrorCodes


class Input(Streams):
    """Received bytes in, events out (see the module docstring)."""

    info: ConnectionInfo
    limits: Limits
    _guard: FrameGuard
    _budget: int  # idle frames the client may still send (see h2_guard)
    _events: list[Event]
    _eof: bool
    _goaway_sent: bool
    _last_stream_id: int  # streams above it (after our GOAWAY) are refused
    _resets: int  # client resets of streams whose response was unfinished

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
        except Refused as refused:
            if refused.offset > 0:
                self._feed(data[:refused.offset])  # the frames before it are served as usual
            self._fail(refused.code, refused.reason)
            return
        self._feed(data)
        if self._budget < 0:
            self._fail(_Codes.ENHANCE_YOUR_CALM, TOO_IDLE)
        elif self._budget > IDLE_FRAME_BURST:
            self._budget = IDLE_FRAME_BURST

    def events(self) -> list[Event]:
        """Everything received since the last call."""
        events, self._events = self._events, []
        return events

    def _feed(self, data: bytes) -> None:
        """Hand ``data`` to h2 and turn what it saw into events."""
        try:
            received = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(getattr(exc, "error_code", _Codes.PROTOCOL_ERROR), str(exc) or type(exc).__name__)
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
                self._window_opened()
            elif kind is h2.events.RemoteSettingsChanged:
                self._cap_encoder_table()
                self._window_opened()
            elif kind is h2.events.ConnectionTerminated:
                # RFC 9113 would let us still answer the client's open streams,
                # but h2 closes its state machine on GOAWAY and refuses to
                # send anything more; a client saying goodbye is gone.
                self._broken = True
                self._events.append(ConnectionClosed())
            elif kind is h2.events.TrailersReceived:
                self._on_trailers(event)  # dropped, as on HTTP/1.1; StreamEnded follows
            # PING is answered by h2 itself; SETTINGS are acknowledged by h2 itself.

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self._goaway_sent and sid > self._last_stream_id:
            self._refuse(sid, _Codes.REFUSED_STREAM)
            return
        if len(self._streams) >= self.limits.max_concurrent_streams:
            # Past our advertised limit, or the client's own count says there
            # is room (it reset streams whose handlers are still running):
            # this stream alone is refused (RFC 9113 5.1.2). The RST_STREAM
            # serves nothing, so it is budgeted like an idle frame's reply.
            self._budget -= 1
            self._refuse(sid, _Codes.REFUSED_STREAM)
            return
        open_body = event.stream_ended is None  # if so, StreamEnded follows
        try:
            request, content_length = request_from_fields(event.headers, self.info, self.limits.max_header_bytes)
        except RejectedRequest as rejected:
            self._reject(sid, event.headers, open_body, rejected)
            return
        stream = Stream(request.method, request_open=True)  # StreamEnded ends it, with BodyEnded
        if content_length is not None and content_length > self.limits.max_body_bytes:
            stream.request_open = open_body
            self._answer(sid, stream, 413, "request body too large")  # no handler sees it
            return
        self._streams[sid] = stream
        self._budget += REQUEST_CREDIT
        self._events.append(RequestReceived(sid, request, open_body))

    def _reject(self, sid: int, headers: list[tuple[bytes, bytes]], open_body: bool,
                rejected: RejectedRequest) -> None:
        """No handler sees this request: reset it as malformed, or answer its status."""
        if rejected.status is None:
            self._budget -= 1  # an RST_STREAM for nothing served: an idle frame's reply
            self._refuse(sid, _Codes.PROTOCOL_ERROR)
        else:
            method = "HEAD" if (b":method", b"HEAD") in headers else ""
            self._answer(sid, Stream(method, open_body), rejected.status, rejected.reason, rejected.fields)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        """Malformed trailers (RFC 9113 8.1) reset their stream; the handler's body read fails."""
        problem = trailers_problem(event.headers)
        stream = self._streams.get(event.stream_id)
        if problem is None or stream is None or stream.reset:
            return
        stream.drop_output()
        stream.request_open = False
        self._release(event.stream_id, stream)
        self._refuse(event.stream_id, _Codes.PROTOCOL_ERROR)
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
        stream.drop_output()
        self._release(sid, stream)
        self._events.append(StreamReset(sid))
        if event.remote_reset:
            self._resets += 1
            if self._resets > self.limits.max_client_resets + self._completed // 2:
                self._fail(_Codes.ENHANCE_YOUR_CALM, "too many stream resets")

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
