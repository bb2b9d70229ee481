"""HTTP/2 streams as the server keeps them: responses out, flow control both ways.

:class:`Streams` is the half of :class:`~.http2.HTTP2Connection` that writes:
the contract's response calls (``send_response``, ``send_data``,
``end_stream``, ``abort_stream``, ``refuse_stream``), the per-stream output
queue that waits for the client's windows (``pending``,
``waiting_for_window``), the acknowledgement of body bytes a handler has
consumed (``consumed``), and the server's own answers to requests that
cross a limit. It is a base class, not a separate object, so a response
costs no more calls than it did in one class; the state it works on is
set up by ``HTTP2Connection.__init__``.
"""

from __future__ import annotations

from collections import deque

import h2.connection
import h2.errors
import h2.exceptions

from .h2_fields import NO_BODY_STATUSES, error_fields, response_fields
from .response import Response

__all__ = ["ENCODER_TABLE", "Stream", "Streams"]

# The HPACK table kept for our responses. A client may allow one of up to
# 4 GiB (SETTINGS_HEADER_TABLE_SIZE) and h2 would use all of it, keeping every
# distinct response field sent (each ETag, Date, Content-Length) for the
# connection's life; RFC 7541 4.2 lets an encoder use less than allowed.
ENCODER_TABLE = 4096

_Codes = h2.errors.ErrorCodes


class Stream:
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

    def drop_output(self) -> None:
        """Reset: what the handler queued or sends from now on goes nowhere."""
        self.reset = True
        self.queue.clear()
        self.queued = 0


class Streams:
    """The streams of one connection and everything that goes out on them."""

    _h2: h2.connection.H2Connection
    _streams: dict[int, Stream]
    _waiting: set[int]  # streams with queued bytes and an open window, maybe
    _out: list[bytes]  # bytes to send before h2's
    _broken: bool  # a connection error: nothing more is sent but its GOAWAY
    _completed: int  # responses finished (not reset)

    # -- input flow control ----------------------------------------------------

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

    def _release(self, sid: int, stream: Stream) -> None:
        """Give back the connection window held by body bytes nobody will read."""
        if stream.unacked:
            self._acknowledge(stream.unacked, sid)
            stream.unacked = 0

    # -- responses -------------------------------------------------------------

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

    def raw_body(self, stream_id: int, size: int) -> bool:
        """Always False: every byte of an HTTP/2 body goes out in DATA frames."""
        return False

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
            self._refuse(stream_id, _Codes.INTERNAL_ERROR)
        self._finish(stream_id, stream)

    def refuse_stream(self, stream_id: int) -> None:
        """Turn a stream away unprocessed (REFUSED_STREAM: the client may safely retry it)."""
        stream = self._streams.get(stream_id)
        if stream is not None and not self._broken:
            stream.reset = True
            self._refuse(stream_id, _Codes.REFUSED_STREAM)
            self._finish(stream_id, stream)

    def _refuse(self, sid: int, code: int) -> None:
        """RST_STREAM with ``code``, unless the stream (or connection) is already closed."""
        try:
            self._h2.reset_stream(sid, code)
        except h2.exceptions.ProtocolError:  # the stream (or connection) is already closed
            pass

    def _answer(self, sid: int, stream: Stream, status: int, message: str,
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
        stream.drop_output()
        self._release(sid, stream)
        if stream.request_open or not stream.sent_end:
            stream.request_open = False
            # NO_ERROR after a complete answer: "stop sending, you have your response".
            self._refuse(sid, _Codes.NO_ERROR if stream.sent_end else _Codes.CANCEL)

    def _cap_encoder_table(self) -> None:
        encoder = self._h2.encoder
        if encoder.header_table_size > ENCODER_TABLE:
            encoder.header_table_size = ENCODER_TABLE

    # -- the output queue --------------------------------------------------------

    def _flush(self, sid: int, stream: Stream) -> None:
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

    def _finish(self, sid: int, stream: Stream) -> None:
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
            self._refuse(sid, _Codes.NO_ERROR)

    def _window_opened(self) -> None:
        """A window may have grown: every stream with bytes queued may move on."""
        self._waiting.update(sid for sid, s in self._streams.items() if s.queued)

    def release(self) -> None:
        """See the contract: the transport is gone."""
        self._broken = True
        for stream in self._streams.values():
            stream.drop_output()
        self._waiting.clear()
        self._out.clear()
        self._h2.clear_outbound_data_buffer()

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

    def pending(self, stream_id: int) -> int:
        """Response bytes of the stream still waiting for the client's window."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.queued

    def waiting_for_window(self) -> list[tuple[int, int]]:
        """Responses whose bytes wait for a WINDOW_UPDATE, with how many bytes each."""
        return [(sid, stream.queued) for sid, stream in self._streams.items() if stream.queued]
