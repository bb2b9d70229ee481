"""asyncio: connections are tasks on an asyncio event loop (uvloop's, when installed).

The driver is the shared one in ``_async/``. What this edge adds:

- the choice of loop: ``Config.loop`` (:class:`~.common.Loop`, ``--loop``)
  is ``uvloop``, plain ``asyncio``, or ``auto`` (uvloop if it can be
  imported: ``pip install 'astra[fast]'``; an option, not a requirement;
  asyncio's own loop where the GIL is off, see :meth:`AsyncioRuntime.loop`);
- a thread-safe "call soon" for the worker pool (``call_soon_threadsafe``);
- connections' tasks in an ``asyncio.TaskGroup``: a plain asyncio task
  each, where anyio's ``start_soon`` adds a task handle, an event and a
  cancel scope (measured: 15 us and 12 objects per task against 61 us
  and 27); and a connection's cancel scope is :class:`TaskCancelScope`,
  asyncio's own ``task.cancel()`` and ``uncancel()`` (as ``asyncio.timeout``
  uses them), where anyio's looks its task up in a weak dictionary on entry;
- its own transport (``_async/transport.py`` defines the seam). anyio's
  asyncio streams make every ``receive`` and ``send`` a checkpoint (an
  extra trip round the loop) and keep their own queue and event per stream;
  :class:`ProtocolStream` sits directly on an ``asyncio.Protocol``: data
  arrives by callback into a list, and a ``send`` that the kernel takes at
  once never suspends. Measured on hello world at 64 connections (server
  pinned to one core): 197 us of CPU per request on anyio's streams, 147 us
  on these. ``async_streams="anyio"`` brings anyio's back, to measure it
  again. It is made when the connection's first bytes arrive
  (``loop.connect_accepted_socket``), not when it is accepted.

Threading model: the loop's thread owns every socket, transport, task and
protocol object, and the counters, without a lock. Blocking handlers, and a
synchronous body's ``next()`` and ``close()``, run on ``WorkerPool``
threads (``exchange.WorkerIterated`` keeps a body's two from overlapping);
a worker reads the request body by a hop back to the loop
(``anyio.from_thread.run``) and hands its result back through
``call_soon_threadsafe`` (``server._PoolCall``, whose end and cancellation
meet under one lock). ``stop()`` and ``stats()`` come from other threads.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from protocols import ClientDisconnected, ConnectionInfo

from ._async import AsyncRuntime
from ._gil import gil_enabled
from ._async.server import Spawn
from ._async.transport import RECV_SIZE, AsyncTransport
from .common import Loop, no_delay, socket_address

__all__ = ["AsyncioRuntime"]

READ_HIGH_WATER = 256 * 1024  # buffered, unread bytes past which we stop reading


class AsyncioRuntime(AsyncRuntime):
    name = "asyncio"
    backend = "asyncio"

    def backend_options(self) -> dict[str, Any]:
        return {"use_uvloop": self.loop() is Loop.UVLOOP}

    def loop(self) -> Loop:
        """The loop ``Config.loop`` names, ``auto`` resolved (raises ImportError for a missing uvloop)."""
        choice = Loop(self.config.loop)
        if choice is Loop.AUTO:
            # Without the GIL, uvloop's thread-safe call_soon updates a plain C counter that a
            # worker and the loop may both write (a lost wake-up): asyncio's own loop locks it.
            if not gil_enabled():
                return Loop.ASYNCIO
            return Loop.UVLOOP if importlib.util.find_spec("uvloop") else Loop.ASYNCIO
        if choice is Loop.UVLOOP and not importlib.util.find_spec("uvloop"):
            raise ImportError("the uvloop event loop needs uvloop: pip install 'astra[fast]'")
        return choice

    def thread_notifier(self):
        return asyncio.get_running_loop().call_soon_threadsafe

    def cancel_scope(self) -> TaskCancelScope:
        return TaskCancelScope()

    @asynccontextmanager
    async def connection_tasks(self) -> AsyncIterator[Spawn]:
        async with asyncio.TaskGroup() as group:
            yield lambda fn, *args: group.create_task(fn(*args))

    async def open_transport(self, sock: socket.socket) -> AsyncTransport:
        if self.config.async_streams == "anyio":
            return await super().open_transport(sock)
        no_delay(sock)  # uvloop sets it itself; asyncio does not, for an accepted socket
        info = ConnectionInfo(socket_address(sock.getpeername()), socket_address(sock.getsockname()))
        _, stream = await asyncio.get_running_loop().connect_accepted_socket(lambda: ProtocolStream(info), sock)
        return stream


class TaskCancelScope:
    """The task that enters it, cancelled by :meth:`cancel`; the scope swallows that cancellation.

    A cancellation from elsewhere (a forced shutdown) goes on through it.
    After the scope has been left, :meth:`cancel` does nothing.
    """

    __slots__ = ("_task", "_cancelled")

    def __enter__(self) -> TaskCancelScope:
        self._task = asyncio.current_task()
        self._cancelled = False
        return self

    def cancel(self) -> None:
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    def __exit__(self, exc_type, exc, tb) -> bool:
        task, self._task = self._task, None
        if self._cancelled and task.uncancel() == 0:
            return exc_type is asyncio.CancelledError
        return False


class ProtocolStream(asyncio.Protocol):
    """An :class:`~._async.transport.AsyncTransport` over an asyncio transport: just what the driver uses.

    It is the transport itself rather than wrapped in one, so a read or a
    write costs the driver one coroutine call and no more. Closing needs no
    draining of unread bytes: asyncio reads eagerly, so the kernel holds none.
    """

    tls = None  # cleartext (TLS wraps this transport: runtimes/_async/tls.py)

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._closed = False
        self._reading_paused = False
        self._writing_paused = False
        self._reader: asyncio.Future | None = None
        self._drainer: asyncio.Future | None = None

    # Protocol callbacks (the loop calls these) -------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep our half open: a response may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._closed = True
        self._wake_reader()
        self._wake_drainer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drainer()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake_drainer(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    # The transport, as the driver sees it ------------------------------------

    async def receive(self, max_bytes: int = RECV_SIZE) -> bytes:
        """A chunk as the loop delivered it (``max_bytes`` is the loop's business); b"" at the end."""
        while not self._chunks:
            if self._eof:
                return b""
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= READ_HIGH_WATER // 2 and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise anyio.BrokenResourceError
        self._transport.write(data)
        await self._drain()

    async def _drain(self) -> None:
        """Wait while the transport holds more than its high-water mark."""
        while self._writing_paused and not self._closed:
            self._drainer = asyncio.get_running_loop().create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
        if self._closed:
            raise anyio.BrokenResourceError

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """``sendfile`` straight to the socket, around the transport (see the seam).

        The socket is the transport's: bytes it still buffers must leave
        first, and the loop will not watch the socket for anyone else. So
        for the file's time the transport's high-water mark is zero (a
        ``send`` then waits until its buffer is empty), and when the kernel
        has no room for ``sendfile`` one block of the file goes through the
        transport instead, which waits for room the loop's way.
        """
        transport = self._transport
        out = transport.get_extra_info("socket").fileno()
        transport.set_write_buffer_limits(high=0)
        try:
            await self._drain()
            while count:
                try:
                    sent = os.sendfile(out, fd, offset, count)
                except BlockingIOError:
                    block = os.pread(fd, min(count, RECV_SIZE), offset)
                    transport.write(block)
                    sent = len(block)
                if sent == 0:
                    raise ClientDisconnected("the file ended before its length")
                offset += sent
                count -= sent
                await asyncio.sleep(0)  # a client that keeps up must not keep the loop
                await self._drain()
        finally:
            if not self._closed:
                transport.set_write_buffer_limits()

    async def aclose(self) -> None:
        self._closed = True
        self._transport.close()

    def abort(self) -> None:
        self._closed = True
        self._transport.abort()
