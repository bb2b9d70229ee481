"""TLS under the event-loop runtimes: an :class:`~.transport.AsyncTransport` over another.

:class:`TLSTransport` wraps whichever transport the edge made (anyio's
streams, asyncio's protocol, trio's socket) and puts a
:class:`~protocols.tls.TLSSession` between it and the driver, so asyncio
and trio serve HTTPS with the same code, and neither grows TLS of its own.
The loop's own TLS (``asyncio``'s ``ssl=``, ``trio.SSLStream``) would do the
job as well, but twice, with two sets of defaults and errors: this way TLS
policy is ``protocols/tls.py``'s alone, for the threads as for the loops.

The handshake happens inside the first :meth:`receive`, under the driver's
head deadline: a client that never finishes it is cut off like one that
never finishes its head. Replies the session has for the client go out at
once during the handshake (nobody else is sending then) and afterwards
with the next :meth:`send`, which the driver already runs one at a time:
records leave in the order they were made. ``send_file`` cannot be the
kernel's (it cannot encrypt here: no kTLS), so it reads the file in slices
and sends them as any other bytes.
"""

from __future__ import annotations

import os
from dataclasses import replace

import anyio

from protocols import ClientDisconnected

from ..common import TLSEndpoint, logger
from .transport import DISCONNECTS, RECV_SIZE, AsyncTransport

__all__ = ["TLSTransport"]

#: A file is read and encrypted this much at a time (a few TLS records' worth).
FILE_SLICE = 64 * 1024
#: How long a closing connection may spend handing over its close_notify.
GOODBYE_TIMEOUT = 1.0


class TLSTransport:
    """TLS over another :class:`~.transport.AsyncTransport`."""

    __slots__ = ("inner", "info", "tls", "_endpoint", "_counted", "_greeted", "_aborted")

    def __init__(self, inner: AsyncTransport, endpoint: TLSEndpoint) -> None:
        self.inner = inner
        self.info = replace(inner.info, scheme="https")
        self._endpoint = endpoint
        #: The session; None when the server had too many handshakes in progress (the connection ends).
        self.tls = endpoint.start()
        self._counted = self.tls is not None
        self._greeted = False  # plaintext has been read: replies wait for the driver's next send
        self._aborted = False  # dropped mid-response: no close_notify, which would vouch for a truncation

    async def receive(self, max_bytes: int = RECV_SIZE) -> bytes:
        tls = self.tls
        while tls is not None and not tls.ended:
            data = await self.inner.receive(max_bytes)
            plaintext = tls.receive(data)
            if not self._greeted and tls.has_output:
                try:
                    await self.inner.send(tls.data_to_send())
                except DISCONNECTS:
                    tls.ended = True
            if self._counted and (tls.established or tls.ended):
                self._uncount()
            if plaintext is not None:
                self._greeted = self._greeted or bool(plaintext)
                return plaintext
        return b""

    def _uncount(self) -> None:
        self._counted = False
        self._endpoint.finished()
        if self.tls.failure:
            logger.debug("TLS handshake with %s failed: %s", self.info.peer, self.tls.failure)

    async def send(self, data: bytes) -> None:
        tls = self.tls
        if tls is None:
            raise ClientDisconnected("no TLS session")
        tls.send(data)
        await self.inner.send(tls.data_to_send())

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Part of a file, read in slices (``os.pread``: the file object is not touched) and sent encrypted."""
        while count:
            chunk = os.pread(fd, min(count, FILE_SLICE), offset)
            if not chunk:
                raise ClientDisconnected("the file ended before its length")
            await self.send(chunk)
            offset += len(chunk)
            count -= len(chunk)

    async def aclose(self) -> None:
        tls = self.tls
        if tls is not None and tls.established and not self._aborted:
            tls.close()
            goodbye = tls.data_to_send()
            with anyio.move_on_after(GOODBYE_TIMEOUT, shield=True):
                try:
                    await self.inner.send(goodbye)
                except DISCONNECTS:
                    pass
        if self._counted:
            self._uncount()
        await self.inner.aclose()

    def abort(self) -> None:
        self._aborted = True
        self.inner.abort()
