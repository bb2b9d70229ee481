"""The contract between a runtime and a protocol connection.

A runtime moves bytes and runs handlers; a protocol connection turns bytes
into events and responses into bytes. :class:`ServerConnection` is everything
one may ask of the other, and both HTTP/1.1 and HTTP/2 implement all of it:
where a protocol has no such thing (HTTP/1.1 has no flow control, HTTP/2 no
``100 Continue``) the method still exists and its answer says so. A runtime
therefore never asks "which protocol is this?" except through the declared
capability :attr:`~ServerConnection.multiplexed`, which decides whether
streams may overlap.

Every call is made with the runtime's own lock held, if it has one: a
connection is not thread-safe, and it never blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .events import Event
    from .request import ConnectionInfo
    from .response import Response

__all__ = ["ServerConnection"]


@runtime_checkable
class ServerConnection(Protocol):
    """One client connection, seen from the server, without any I/O."""

    #: ``"HTTP/1.1"`` or ``"HTTP/2"``.
    protocol: str
    #: True when requests (streams) may be in progress at once; False when
    #: they come one after another and each waits for the previous response.
    multiplexed: bool
    info: ConnectionInfo

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` when the client closed its side."""

    def events(self) -> list[Event]:
        """What the bytes received so far mean (see :mod:`protocols.events`).

        A :class:`~protocols.events.ProtocolSwitched` event, always last in
        its batch, hands the runtime a successor connection to drive instead.
        """

    def consumed(self, stream_id: int, size: int) -> None:
        """The handler has read ``size`` body bytes of ``stream_id``.

        Flow control: HTTP/2 lets the client send that much more; HTTP/1.1,
        whose window is the socket's, does nothing.
        """

    def expects_continue(self, stream_id: int) -> bool:
        """Does the client wait for ``100 Continue`` before sending the body?"""

    def send_continue(self, stream_id: int) -> None:
        """Tell a waiting client to go ahead (a no-op when nobody waits)."""

    # -- output --------------------------------------------------------------

    def send_response(self, stream_id: int, response: Response) -> None:
        """Queue a response head; raises ValueError (queueing nothing) if it is malformed."""

    def send_data(self, stream_id: int, data: bytes) -> None:
        """Queue response body bytes; raises ValueError past the declared length."""

    def raw_body(self, stream_id: int, size: int) -> bool:
        """May the runtime write the next ``size`` body bytes itself, unframed (``sendfile``)?

        True: the connection counts them as sent, and the runtime writes them
        straight to the socket once :meth:`data_to_send` is flushed. False:
        they need framing (HTTP/2's DATA frames, HTTP/1.1's chunks), or are
        not sent at all (HEAD): they go through :meth:`send_data`.
        """

    def end_stream(self, stream_id: int) -> None:
        """Finish the response; raises ValueError if it fell short of its length."""

    def abort_stream(self, stream_id: int) -> None:
        """The response cannot be finished: reset the stream (HTTP/2) or the connection (HTTP/1.1)."""

    def refuse_stream(self, stream_id: int) -> None:
        """Turn a request away unprocessed, so that the client may retry it.

        HTTP/2: RST_STREAM REFUSED_STREAM, the connection goes on. HTTP/1.1:
        a 503 with ``Retry-After``, and the connection closes after it.
        """

    def pending(self, stream_id: int) -> int:
        """Response bytes queued behind the client's flow-control window (0 without one)."""

    def waiting_for_window(self) -> list[tuple[int, int]]:
        """``(stream_id, bytes queued)`` for each response held back by a shut flow-control window.

        The runtime times them (a response parked behind a window the client
        never opens is the CVE-2019-9517 class) and aborts the overdue ones.
        """

    def stream_reset(self, stream_id: int) -> bool:
        """Has the stream been abandoned (reset, or the connection broken)?"""

    def close_after_current(self) -> None:
        """Graceful shutdown: accept nothing new, finish what is in progress."""

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the client, in the order they must leave."""

    def release(self) -> None:
        """The transport is closed: drop every byte queued for the client, now.

        A connection's objects may form reference cycles (h2's do), so they
        are freed when the cycle collector gets to them, perhaps minutes
        later; the responses queued for a slow client (megabytes) must not
        wait for that. Methods called afterwards send nothing.
        """

    @property
    def should_close(self) -> bool:
        """Once :meth:`data_to_send` is flushed, close the socket."""
