"""HTTP/2 as a sans-IO connection: h2 frames and flow-controls, this module serves.

:class:`HTTP2Connection` implements :class:`~.contract.ServerConnection`, as
:class:`~.http11.HTTP11Connection` does, so a runtime drives both with the
same calls. What differs is that streams overlap: a runtime that sees
``multiplexed`` set serves each :class:`~.events.RequestReceived` concurrently
with its siblings instead of one after another.

What h2 leaves to its user, and this connection decides (the code is in
:mod:`.h2_streams`, :mod:`.h2_input` and :mod:`.h2_guard`, see below):

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
  connection. Before h2 sees a byte, :class:`~.h2_guard.FrameGuard` reads the
  frame headers: a frame longer than ``max_frame_size`` or a header block longer
  than twice ``max_header_bytes`` ends the connection before it is buffered
  (h2 holds a whole frame, and up to 64 CONTINUATION frames, first: the
  CVE-2024-27316 class), and frames that carry no request and no body byte
  (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA or CONTINUATION, DATA
  nobody reads) are budgeted, since each may queue a reply that a client
  which never reads lets pile up (CVE-2019-9512, -9514, -9515, -9518).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .events import BodyEnded, RequestReceived
from .h2_guard import IDLE_FRAME_BURST, PREFACE, FrameGuard
from .h2_input import Input
from .h2_streams import Stream
from .limits import Limits
from .request import ConnectionInfo, Request

__all__ = ["HTTP2Connection", "PREFACE"]

# The connection is four modules, each a concern: h2_guard (frame headers
# read before h2 buffers them, the idle-frame budget), h2_streams (the
# streams, their output queues and flow control; the response calls),
# h2_input (h2's events translated into ours), and this one (setting h2 up,
# the connection's fate). Streams and Input are base classes of
# HTTP2Connection, not objects it calls, so no request pays for the split.

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


def _h2_connection(limits: Limits) -> h2.connection.H2Connection:
    """h2's server side, configured with our settings and limits."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(**_H2_CONFIG))
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
    return conn


class HTTP2Connection(Input):
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
        self._h2 = conn = _h2_connection(limits)
        # An encoded block is no longer than its decoded list (literals cost a
        # few bytes over their text, a Huffman code is used only when shorter);
        # twice the list limit leaves room for an encoder that always Huffman-codes.
        self._guard = FrameGuard(limits.max_frame_size, 2 * limits.max_header_bytes)
        self._budget = IDLE_FRAME_BURST
        self._out = [output] if output else []
        self._events = []
        self._streams = {}
        self._waiting = set()
        self._broken = False
        self._eof = False
        self._goaway_sent = False
        self._last_stream_id = 0
        self._resets = 0
        self._completed = 0
        if upgrade is None:
            conn.initiate_connection()
        else:
            self._upgrade(*upgrade)
        if limits.connection_window > 65535:
            conn.increment_flow_control_window(limits.connection_window - 65535)
        if received:
            self.receive_data(received)

    def _upgrade(self, request: Request, settings_header: bytes) -> None:
        """Start as the successor of HTTP/1.1's ``Upgrade: h2c``: ``request`` is stream 1."""
        try:
            self._h2.initiate_upgrade_connection(settings_header)
        except (h2.exceptions.ProtocolError, ValueError) as exc:  # a setting out of its range
            raise ValueError(f"invalid HTTP2-Settings: {exc}") from None
        self._cap_encoder_table()  # HTTP2-Settings may have raised it
        self._streams[1] = Stream(request.method, request_open=False)
        request.http_version = "2"
        self._events += (RequestReceived(1, request, False), BodyEnded(1))

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

    # -- state a runtime needs ----------------------------------------------

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
