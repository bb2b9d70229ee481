"""TLS under the thread runtimes: a :class:`SocketTransport` that speaks it.

:class:`TLSTransport` has every member of the plain transport, in both
modes, so ``threaded``, ``pinned`` and ``hybrid`` (transports made by :func:`open_transport`)
serve HTTPS without a line
of their own: plaintext above, ciphertext below, and a
:class:`~protocols.tls.TLSSession` (sans-IO, on memory buffers) between.
The handshake happens inside the first reads, so the runtime's head
deadline is the handshake's deadline too: a client that opens TCP and never
finishes its handshake is cut off like one that never finishes its head.

Three things differ from a plain socket:

- **Two threads may use one transport at once**: a reactor (or an HTTP/2
  reader) decrypting while a worker encrypts a response. An SSL object is
  not safe for that, so each call into the session holds ``_tls_lock``,
  briefly; senders also queue on ``_send_lock``, held across encrypting
  and sending, so records leave in the order they were made.
- **A non-blocking send cannot give bytes back.** ``send_now`` on a plain
  socket takes what the kernel takes; here the plaintext is encrypted
  whole, and the ciphertext the kernel refuses waits in ``_pending``.
  Like OpenSSL's own ``SSL_write``, a send that returned short must be
  retried with the same bytes first (every caller does: they keep the
  unsent rest and offer it again); the retry reports them taken once their
  ciphertext has left. So the reactor's bookkeeping (wait for writable
  while output is owed) stays exactly right.
- **No sendfile**: the kernel cannot encrypt (no kTLS here), so a file is
  read and sent in slices, under the same deadlines.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace

from protocols import ClientDisconnected

from ._transport import SocketTransport
from .common import Config, TLSEndpoint, logger

__all__ = ["TLSTransport", "open_transport"]

#: A file is read and encrypted this much at a time (a few TLS records' worth).
FILE_SLICE = 64 * 1024


class TLSTransport(SocketTransport):
    """A connected TCP socket carrying TLS, as the thread runtimes read and write it."""

    __slots__ = ("tls", "_endpoint", "_counted", "_pending", "_owed", "_tls_lock", "_send_lock", "_given_up")

    def __init__(self, sock: socket.socket, peer: object, endpoint: TLSEndpoint) -> None:
        super().__init__(sock, peer)
        self.info = replace(self.info, scheme="https")
        self._endpoint = endpoint
        #: The session; None when the server had too many handshakes in progress (the connection ends).
        self.tls = endpoint.start()
        self._counted = self.tls is not None  # in the endpoint's handshake count
        self._pending = b""  # ciphertext the kernel has not taken yet
        self._owed = 0  # plaintext bytes of a short send_now whose ciphertext is in _pending
        self._tls_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._given_up = False  # shut down mid-exchange: no close_notify, which would vouch for a truncation

    # -- reading -----------------------------------------------------------------------

    def receive(self, timeout: float) -> bytes | None:
        """As the plain transport's: plaintext, b"" at the end, None once ``timeout`` passed.

        Handshake messages arrive through here too and complete no plaintext;
        the wait for them is one ``timeout`` in all, however they trickle in.
        """
        deadline = None
        while True:
            if self.tls is None or self.tls.ended:
                return b""
            data = super().receive(timeout)
            if data is None:
                return None
            plaintext = self._absorb(data)
            if plaintext is not None:
                return plaintext
            now = time.monotonic()
            deadline = deadline or now + timeout
            timeout = deadline - now
            if timeout <= 0:
                return None

    def receive_pending(self) -> bytes | None:
        if self.tls is None or self.tls.ended:
            return b""
        data = super().receive_pending()
        return None if data is None else self._absorb(data)

    def receive_now(self) -> bytes | None:
        if self.tls is None or self.tls.ended:
            return b""
        data = super().receive_now()
        return None if data is None else self._absorb(data)

    def _absorb(self, data: bytes) -> bytes | None:
        """Ciphertext in, plaintext out; the handshake's replies (and alerts) go back at once."""
        tls = self.tls
        with self._tls_lock:
            plaintext = tls.receive(data)
            replies = tls.has_output
        if replies:  # handshake messages, an alert, session tickets: out now, behind any earlier records
            with self._send_lock:
                with self._tls_lock:
                    self._pending += tls.data_to_send()
                try:
                    self._push()
                except ClientDisconnected:
                    pass  # the next read or send finds out
        if self._counted and (tls.established or tls.ended):
            self._uncount()
            if tls.failure:
                logger.debug("TLS handshake with %s failed: %s", self.info.peer, tls.failure)
        return plaintext

    def _uncount(self) -> None:
        with self._tls_lock:
            counted, self._counted = self._counted, False
        if counted:
            self._endpoint.finished()

    # -- sending -------------------------------------------------------------------------

    def _encrypt(self, data: bytes | memoryview | bytearray) -> None:
        """Send lock held: the records for ``data`` join the pending ciphertext."""
        if self.tls is None:
            raise ClientDisconnected("no TLS session")
        with self._tls_lock:
            self.tls.send(data)
            self._pending += self.tls.data_to_send()

    def _push(self) -> bool:
        """Send lock held: hand the kernel what it takes of the pending ciphertext now, never
        waiting; True once none is left."""
        try:
            sent = self.sock.send(self._pending, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None
        self._pending = self._pending[sent:]
        return not self._pending

    def send_all(self, data: bytes) -> None:
        if not data:
            return
        with self._send_lock:
            self._encrypt(data)
            pending, self._pending, self._owed = self._pending, b"", 0
            super().send_all(pending)  # blocking, under the plain transport's deadlines

    def send_now(self, data: bytes | memoryview | bytearray) -> int:
        """Plaintext bytes taken (see the module docstring: what is not taken must be offered again)."""
        with self._send_lock:
            taken = 0
            if self._pending:
                if not self._push():
                    return 0
                taken, self._owed = min(self._owed, len(data)), 0
            rest = memoryview(data)[taken:]
            if not rest:
                return taken
            self._encrypt(rest)
            if self._push():
                return len(data)
            self._owed = len(rest)
            return taken

    def _send_file_now(self, fd: int, offset: int, count: int) -> int:
        """A slice of the file, read and sent encrypted: plaintext bytes taken, 0 when no room.

        A slice not taken is read again from the same offset next time: the
        same bytes, which is what ``send_now`` asks of a retry.
        """
        chunk = os.pread(fd, min(count, FILE_SLICE), offset)
        if not chunk:
            raise ClientDisconnected("the file ended before its length")
        return self.send_now(chunk)

    # -- ending ----------------------------------------------------------------------------

    def _say_goodbye(self) -> None:
        """Queue TLS's close_notify and send what the kernel takes of it, never waiting."""
        if self.tls is None or self._given_up:
            return
        with self._send_lock:
            with self._tls_lock:
                self.tls.close()
                self._pending += self.tls.data_to_send()
            try:
                self._push()
            except ClientDisconnected:
                pass

    def finish_sending(self) -> None:
        self._say_goodbye()
        super().finish_sending()

    def shutdown(self) -> None:
        self._given_up = True
        super().shutdown()

    def close(self) -> None:
        self._say_goodbye()
        if self._counted:
            self._uncount()
        super().close()



def open_transport(sock: socket.socket, peer: object, config: Config) -> SocketTransport:
    """A new client connection behind the seam: TLS when the server has a certificate, else plain.

    ``peer``: the client's address as ``accept`` gave it; None to ask the socket.
    """
    if config.tls_endpoint is None:
        return SocketTransport(sock, peer)
    return TLSTransport(sock, peer, config.tls_endpoint)
