"""trio: connections are tasks in trio's structured-concurrency world.

The driver is the shared one in ``_async/`` (anyio maps its task groups and
cancel scopes straight onto trio's nurseries and cancel scopes); this edge
asks anyio for the trio backend and brings two things of trio's own, each
the cheaper way to do what a connection needs:

- connections' tasks run in a trio nursery: anyio's ``start_soon`` wraps
  each task in a handle, an event and a cancel scope, four times the cost of
  the task itself (measured: 19 us and 15 objects per task against 77 us and
  26), and a connection uses none of them;
- :class:`TrioTransport`, the transport seam straight on the accepted
  socket and trio's readiness waits: anyio's stream over trio's socket
  object costs two wrappers, two resource guards and four coroutine frames
  per connection, and as many calls per read.

Threading model: as asyncio's (see ``asyncio_runtime``), with trio's run
thread owning every socket, task and protocol object without locks;
workers report back through ``TrioToken.run_sync_soon``, which takes trio's
own lock.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from trio.lowlevel import cancel_shielded_checkpoint, notify_closing, wait_readable, wait_writable

from protocols import ClientDisconnected, ConnectionInfo

from ._async import AsyncRuntime
from ._async.server import Spawn
from ._async.transport import RECV_SIZE, AsyncTransport
from .common import discard_unread, no_delay, socket_address

__all__ = ["TrioRuntime", "TrioTransport"]


class TrioRuntime(AsyncRuntime):
    name = "trio"
    backend = "trio"

    def thread_notifier(self):
        return trio.lowlevel.current_trio_token().run_sync_soon

    def cancel_scope(self) -> trio.CancelScope:
        return trio.CancelScope()  # anyio's would wrap this one

    @asynccontextmanager
    async def connection_tasks(self) -> AsyncIterator[Spawn]:
        async with trio.open_nursery() as nursery:
            yield nursery.start_soon

    async def open_transport(self, sock: socket.socket) -> AsyncTransport:
        return TrioTransport(sock)


class TrioTransport:
    """An accepted, non-blocking socket behind the :class:`~._async.transport.AsyncTransport` seam.

    Each read or write tries the socket first and waits for readiness only
    when it would block. Like every trio I/O call it is a schedule point
    either way: a client that pipelines requests cannot hold the loop.
    """

    __slots__ = ("sock", "info")
    tls = None  # cleartext (TLS wraps this transport: runtimes/_async/tls.py)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        no_delay(sock)
        self.info = ConnectionInfo(socket_address(sock.getpeername()), socket_address(sock.getsockname()))

    async def receive(self, max_bytes: int = RECV_SIZE) -> bytes:
        waited = False
        while True:
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await wait_readable(self.sock)
                waited = True
            except OSError:
                return b""  # reset, or closed here: either way nothing more will come
            else:
                if not waited:
                    await cancel_shielded_checkpoint()
                return data

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        waited = False
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                await wait_writable(self.sock)
                waited = True
        if not waited:
            await cancel_shielded_checkpoint()

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """``sendfile`` from ``fd``, waiting for room as :meth:`send` does (see the seam)."""
        out = self.sock.fileno()
        while count:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                await wait_writable(self.sock)
                continue
            if sent == 0:
                raise ClientDisconnected("the file ended before its length")
            offset += sent
            count -= sent
        await cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        # trio reads only when asked: what the client sent that nobody read is
        # still in the kernel, and would turn our FIN into a reset that may
        # destroy our last words (a 400, a GOAWAY) in flight.
        discard_unread(self.sock)
        notify_closing(self.sock)
        self.sock.close()

    def abort(self) -> None:
        try:
            # A zero linger turns the close into a reset: the kernel drops what it still holds.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
