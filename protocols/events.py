"""What a protocol connection tells its runtime.

Every HTTP version is presented the same way: one connection carrying many
request *streams*, each named by an integer ``stream_id``. HTTP/1.1 streams
come one after another (ids 1, 2, 3, ...; a pipelined request is only released
once the response before it is finished, which keeps responses in order);
HTTP/2 streams overlap. A runtime that handles these events handles both.

Events are small records, created once per occurrence, never changed and
never reused, so a runtime can hand them between threads without copying.
They are not frozen dataclasses: a frozen dataclass sets each field through
``object.__setattr__``, which made creating the two events of every request
cost three times as much; nothing here or in a runtime assigns to one.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from .request import Request

__all__ = [
    "Event",
    "RequestReceived",
    "BodyReceived",
    "BodyEnded",
    "StreamReset",
    "ConnectionClosed",
    "ProtocolFailed",
    "ProtocolSwitched",
]


class Event:
    """Base class of everything :meth:`events` returns."""

    __slots__ = ()


@dataclass(slots=True)
class RequestReceived(Event):
    """A request head arrived; its body (if any) follows as BodyReceived events.

    ``request.body`` is unset: the runtime attaches a body reader of its kind.
    ``has_body`` is false when the request cannot have a body (no
    Content-Length or a zero one, no chunked encoding; END_STREAM on HEADERS
    in HTTP/2), so a runtime may skip setting up a stream for it.
    """

    stream_id: int
    request: Request
    has_body: bool


@dataclass(slots=True)
class BodyReceived(Event):
    stream_id: int
    data: bytes


@dataclass(slots=True)
class BodyEnded(Event):
    """The request body of ``stream_id`` is complete (trailers are dropped)."""

    stream_id: int


@dataclass(slots=True)
class StreamReset(Event):
    """The client abandoned one stream (HTTP/2 RST_STREAM); the others go on."""

    stream_id: int


@dataclass(slots=True)
class ConnectionClosed(Event):
    """The client closed its side; no more requests or body bytes will come."""


@dataclass(slots=True)
class ProtocolFailed(Event):
    """The client broke the protocol.

    The connection has already queued its error response (``status``) in
    :meth:`data_to_send`; the runtime flushes that and closes the socket.
    """

    status: int
    reason: str


@dataclass(slots=True)
class ProtocolSwitched(Event):
    """Another connection object takes over; the runtime drives ``connection`` from now on.

    The only way a runtime learns of such a change, and always the last event
    of its batch. ``connection`` has taken over the bytes received and the
    output queued so far; its ``events()`` continue where these ended. It
    happens when:

    - an ``"auto"`` connection's first bytes tell its protocol: the successor
      is the HTTP/1.1 connection (which then reports the request those bytes
      begin) or the HTTP/2 one (the client sent the preface). An ``"auto"``
      connection always starts with this switch, before any other event
      except :class:`ConnectionClosed` for a client that sends nothing;
    - an HTTP/1.1 request is upgraded (``Upgrade: h2c``): its ``101`` is
      queued in the successor's output, and the request reappears there as
      stream 1.

    See :mod:`protocols.negotiation`.
    """

    connection: Any
