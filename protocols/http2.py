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
"""

from __future__ import annotations

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
from .h2_fields import NO_BODY_STATUSES, error_fields, request_from_fields, response_fields
from .limits import Limits
from .request import ConnectionInfo, Request
from .response import Response

__all__ = ["HTTP2Connection", "PREFACE"]

#: What a client sends first when it speaks HTTP/2 with prior knowledge.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_H2_CONFIG = dict(
    client_side=False,
    header_encoding=None,  # bytes in and out; we decode once, as latin-1
    validate_outbound_headers=False,  # send_response checks what it builds
    normalize_outbound_headers=False,
)


class _Stream:
    """What the connection remembers about one request stream."""

    __slots__ = ("method", "queue", "queued", "ending", "started", "sent_end", "to_send",
                 "unacked", "body_seen", "request_open", "reset")

    def __init__(self, method: bytes, request_open: bool) -> None:
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
    (the ``101`` of an upgrade).
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
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
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
            conn.initiate_upgrade_connection(settings_header)
            self._streams[1] = _Stream(request.method.encode("ascii"), request_open=False)
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
            elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
                self._waiting.update(sid for sid, s in self._streams.items() if s.queued)
            elif kind is h2.events.ConnectionTerminated:
                # RFC 9113 would let us still answer the client's open streams,
                # but h2 closes its state machine on GOAWAY and refuses to
                # send anything more; a client saying goodbye is gone.
                self._broken = True
                self._events.append(ConnectionClosed())
            elif kind is h2.events.TrailersReceived:
                pass  # trailers are dropped, as on HTTP/1.1; StreamEnded follows
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
            # The client's own count says there is room (it reset streams
            # whose handlers are still running); ours says there is not.
            self._refuse(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        request, content_length = request_from_fields(event.headers, self.info)
        stream = _Stream(request.method.encode("ascii"), request_open=True)  # StreamEnded follows if no body
        if content_length is not None and content_length > self.limits.max_body_bytes:
            self._answer(sid, stream, 413, "request body too large")  # no handler sees it
            return
        self._streams[sid] = stream
        stream_ended = event.stream_ended is not None
        self._events.append(RequestReceived(sid, request, not stream_ended))

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
        suppress = stream.method == b"HEAD" or response.status in NO_BODY_STATUSES
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

    def _answer(self, sid: int, stream: _Stream, status: int, message: str) -> None:
        """Answer a stream ourselves (the client crossed a limit) and stop its body.

        The stream is marked reset, so whatever its handler (if one runs)
        sends afterwards is dropped.
        """
        if not stream.started and not stream.sent_end:
            fields, body = error_fields(status, message)
            self._h2.send_headers(sid, fields)
            stream.started = True
            if self._h2.local_flow_control_window(sid) >= len(body):
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
