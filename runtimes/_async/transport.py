"""The event-loop runtimes' transport seam: every read, write and close of a client socket.

The driver never touches a socket. It holds an :class:`AsyncTransport`, a
byte stream with four members, and everything particular to one kind of
stream stays behind it: anyio's exceptions, the raw socket under it,
``TCP_NODELAY``, the unread bytes that would turn a close into a reset. A
TLS transport (``ssl.MemoryBIO`` between the protocol and the socket)
implements the same four members and slots in without touching the driver.

Three transports exist today, each made when a connection's first bytes
arrive (``waiting.py``), from the accepted socket:

- :class:`AnyioTransport`, over anyio's ``SocketStream`` (the default, and
  the asyncio runtime's with ``async_streams="anyio"``);
- ``asyncio_runtime.ProtocolStream``, which sits directly on an
  ``asyncio.Protocol`` and *is* a transport (no wrapper: a wrapper would add
  an await to every read and write of the fastest path);
- ``trio_runtime.TrioTransport``, straight on the socket and trio's
  readiness waits.

A transport does not time out: the driver's deadlines do (see
``connection.py``), so a read or write costs no cancel scope.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc

from protocols import ClientDisconnected, ConnectionInfo, error_response_bytes
from protocols.tls import TLSSession

from ..common import discard_unread, no_delay, socket_address

__all__ = ["DISCONNECTS", "RECV_SIZE", "AnyioTransport", "AsyncTransport", "reject"]

RECV_SIZE = 64 * 1024

#: What a send (or a handler's read) raises when the client has gone away:
#: its connection is all that costs, nothing is logged.
DISCONNECTS = (ClientDisconnected, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
               anyio.EndOfStream)


def is_disconnect(exc: BaseException) -> bool:
    """Is this only the client going away? A task group reports it wrapped in an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_disconnect(inner) for inner in exc.exceptions)
    return isinstance(exc, DISCONNECTS)


class AsyncTransport(Protocol):
    """One client's byte stream, as the event-loop driver reads and writes it."""

    #: The peer's and our own address, for ``request.client`` and ``request.server``.
    info: ConnectionInfo
    #: The connection's :class:`~protocols.tls.TLSSession` (``tls.TLSTransport``); None: cleartext.
    tls: TLSSession | None

    async def receive(self, max_bytes: int = RECV_SIZE) -> bytes:
        """The next bytes from the client; ``b""`` once it has closed (or the connection broke)."""

    async def send(self, data: bytes) -> None:
        """Hand ``data`` to the client, waiting while it is slow to read.

        Raises one of :data:`DISCONNECTS` when the client is gone.
        """

    #: Optional: ``await send_file(fd, offset, count)`` sends that part of a regular file with
    #: ``sendfile`` once every byte sent before it has left. None (or absent) where the
    #: transport cannot; the driver then reads the file and sends its bytes.
    send_file: Callable[[int, int, int], Awaitable[None]] | None

    async def aclose(self) -> None:
        """Close the connection (our last bytes are delivered, not reset). Never raises.

        Not interrupted by cancellation either (a cancelled connection closes
        too): a transport whose close must wait shields the wait itself.
        """

    def abort(self) -> None:
        """Drop the connection now, with what it has not delivered (a client too slow to read it).

        Never raises. ``aclose`` would go on feeding a trickling reader the
        bytes queued for it, for as long as it likes.
        """


class AnyioTransport:
    """An anyio ``SocketStream`` behind the :class:`AsyncTransport` seam."""

    __slots__ = ("stream", "sock", "info")
    send_file = None
    tls = None  # anyio's asyncio streams own the socket's writes: no way around their buffer

    def __init__(self, stream: anyio.abc.SocketStream, sock: socket.socket) -> None:
        self.stream = stream
        self.sock = sock  # the accepted socket under the stream
        no_delay(sock)
        # From the socket, not ``stream.extra()``: that builds anyio's table of
        # attributes on every call, a tenth of a new connection's cost on trio.
        self.info = ConnectionInfo(socket_address(sock.getpeername()), socket_address(sock.getsockname()))

    @classmethod
    async def open(cls, sock: socket.socket) -> AnyioTransport:
        """An accepted socket behind anyio's stream, and that behind the seam."""
        if sock.family == socket.AF_UNIX:
            return cls(await anyio.abc.UNIXSocketStream.from_socket(sock), sock)
        return cls(await anyio.abc.SocketStream.from_socket(sock), sock)

    async def receive(self, max_bytes: int = RECV_SIZE) -> bytes:
        try:
            return await self.stream.receive(max_bytes)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            return b""  # closed here (a handler's late body read) reads as closed there

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def aclose(self) -> None:
        # trio's streams read only when asked: what the client sent that
        # nobody read is still in the kernel, and would turn our FIN into a
        # reset that may destroy our last words (a 400, a GOAWAY) in flight.
        # (asyncio's transport has read eagerly: there is little or nothing left.)
        discard_unread(self.sock)
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except OSError:
                pass

    def abort(self) -> None:
        try:
            # A zero linger turns the close into a reset: the kernel drops what it still holds.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


async def reject(transport: AsyncTransport) -> None:
    """Answer 503 on a connection the server will not serve, then close it."""
    with anyio.move_on_after(1):
        try:
            await transport.send(error_response_bytes(503, "too many connections", [("retry-after", "1")]))
        except DISCONNECTS:
            pass
    await transport.aclose()
