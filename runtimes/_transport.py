"""The thread runtimes' transport seam: every read, write, shutdown and close of a client socket.

A runtime never calls ``sock.recv`` or ``sock.send`` itself; it asks its
:class:`SocketTransport`. That keeps what is particular to a byte stream
(kernel timeouts, the half-read buffer that turns a close into a reset, and
later TLS on ``ssl.MemoryBIO``) in one place instead of in every runtime.

A transport is used in one of two modes:

- **blocking** (a thread owns the connection: ``threaded``, a ``pinned``
  worker): ``receive(timeout)`` waits in the kernel. Timeouts are
  ``SO_RCVTIMEO`` / ``SO_SNDTIMEO``, so a wait costs one system call, not a
  ``poll`` before each read as Python's own socket timeouts do.
- **non-blocking** (a reactor waits on readiness: ``hybrid``, ``pinned``
  before a request is ready): ``receive_now()`` and ``send_now()`` take what
  the kernel has, never waiting.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from protocols import ClientDisconnected, ConnectionInfo, error_response_bytes

from .common import Config, discard_unread, no_delay, socket_address

__all__ = ["RECV_SIZE", "SocketTransport", "reject_connection"]

RECV_SIZE = 64 * 1024
SENDFILE_SLICE = 256 * 1024


class SocketTransport:
    """A connected stream socket (TCP, or a Unix domain socket), as the thread runtimes read and write it."""

    __slots__ = ("sock", "fd", "info", "_recv_timeout", "_blocking", "_send_timeout", "_send_rate")
    #: The connection's TLS session (``runtimes._tls.TLSTransport``); None: cleartext.
    tls = None

    def __init__(self, sock: socket.socket, peer: object = None) -> None:
        """``peer``: the client's address as ``accept`` gave it; None to ask the socket."""
        self.sock = sock
        self.fd = sock.fileno()
        no_delay(sock)
        if peer is None:
            peer = sock.getpeername()
        self.info = ConnectionInfo(socket_address(peer), socket_address(sock.getsockname()))
        self._recv_timeout = -1.0
        self._blocking = None
        self._send_timeout = 30.0
        self._send_rate = 1024.0

    def fileno(self) -> int:
        return self.fd

    # -- modes -------------------------------------------------------------------

    def block(self, send_timeout: float, min_send_rate: float) -> None:
        """Blocking mode: sending n bytes fails after ``send_timeout + n / min_send_rate`` seconds,
        or after ``send_timeout`` without progress."""
        self.send_limits(send_timeout, min_send_rate)
        if self._blocking is not True:
            self.sock.settimeout(None)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send_timeout))
            self._blocking = True

    def send_limits(self, send_timeout: float, min_send_rate: float) -> None:
        """The deadlines of a blocking send, and of :meth:`send_file` in either mode (see ``block``)."""
        self._send_timeout = send_timeout
        self._send_rate = min_send_rate

    def unblock(self) -> None:
        """Non-blocking mode, for a reactor."""
        if self._blocking is not False:
            self.sock.setblocking(False)
            self._blocking = False

    # -- blocking mode ---------------------------------------------------------------

    def receive(self, timeout: float) -> bytes | None:
        """One blocking read: bytes, b"" at end of stream, None when ``timeout`` passed first."""
        if timeout != self._recv_timeout:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._recv_timeout = timeout
        try:
            return self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except ConnectionError:
            return b""

    def receive_pending(self) -> bytes | None:
        """What the kernel holds already, without waiting: bytes, b"" at end of stream, None if nothing.

        For a connection being shut down: a request that has arrived is still
        served, but none is waited for.
        """
        try:
            return self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except ConnectionError:
            return b""

    def send_all(self, data: bytes) -> None:
        """Send everything, waiting for the client; a stalled client raises ClientDisconnected."""
        if not data:
            return
        try:
            # A blocking send returns early only when SO_SNDTIMEO passed with
            # part of the bytes taken: then the rest has a deadline of its own.
            sent = self.sock.send(data)
            if sent < len(data):
                self._send_rest(memoryview(data)[sent:], len(data))
        except BlockingIOError:
            raise ClientDisconnected("client stopped reading") from None
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None

    def _send_rest(self, rest: memoryview, size: int) -> None:
        """The slow path of send_all: a reader that trickles runs out of time instead of holding us."""
        deadline = time.monotonic() + self._send_timeout + size / self._send_rate
        try:
            while rest:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClientDisconnected("client reads too slowly")
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                     _timeval(min(left, self._send_timeout)))
                rest = rest[self.sock.send(rest):]
        finally:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self._send_timeout))

    def send_file(self, fd: int, offset: int, count: int,
                  guard: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        """Send ``count`` bytes of the file ``fd`` from ``offset`` with ``sendfile``, in either mode,
        on the calling thread, under the same deadlines as :meth:`send_all`.

        In non-blocking mode (a reactor's connection, sent by a worker) the
        thread waits for room with ``poll`` on the socket itself: the reactor
        is not asked to watch for it, and goes on reading. ``guard()``, if
        given, is entered around each ``sendfile`` call: the owner's lock and
        check that the socket is still open (closed by another thread, its
        descriptor could already be a new client's). A file that turns out
        shorter than ``count`` (truncated meanwhile) raises ClientDisconnected
        too: the response can only be cut off.
        """
        now = time.monotonic()
        deadline = now + self._send_timeout + count / self._send_rate
        stalled_at = now + self._send_timeout
        poller = None
        try:
            while count:
                if guard is None:
                    sent = self._send_file_now(fd, offset, count)
                else:
                    with guard():
                        sent = self._send_file_now(fd, offset, count)
                now = time.monotonic()
                if sent:
                    offset += sent
                    count -= sent
                    stalled_at = now + self._send_timeout
                    continue
                left = min(deadline, stalled_at) - now
                if left <= 0:
                    raise ClientDisconnected("client reads too slowly")
                if poller is None:
                    poller = select.poll()
                    poller.register(self.fd, select.POLLOUT)
                poller.poll(left * 1000)
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None

    def _send_file_now(self, fd: int, offset: int, count: int) -> int:
        """One ``sendfile``: bytes sent, 0 when the socket had no room."""
        try:
            # Capped: blocking, one call waits SO_SNDTIMEO for each piece it sends, so an
            # uncapped call to a client that reads a little now and then could outlast
            # every deadline here (seen: 3 s for one call against a 1 s timeout).
            sent = os.sendfile(self.fd, fd, offset, min(count, SENDFILE_SLICE))
        except BlockingIOError:  # no room (or, blocking, SO_SNDTIMEO passed with none taken)
            return 0
        if sent == 0:
            raise ClientDisconnected("the file ended before its length")
        return sent

    # -- non-blocking mode -----------------------------------------------------------

    def receive_now(self) -> bytes | None:
        """What the kernel has: bytes, b"" at end of stream (or a broken connection), None if nothing."""
        try:
            return self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def send_now(self, data: bytes | memoryview | bytearray) -> int:
        """Hand the kernel what it takes now; raises ClientDisconnected if the connection broke."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None

    # -- ending ------------------------------------------------------------------------

    def stop_reading(self) -> None:
        """Wake the thread blocked reading this socket, and keep the write side open.

        Its read returns what had arrived, then end of stream (b""), never
        waiting again; sends still work. So a graceful shutdown wakes an idle
        reader without losing a request that has just arrived, or the
        responses still owed on the connection.
        """
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def finish_sending(self) -> None:
        """Send FIN after what the kernel holds: nothing more goes out; reading goes on (a blocking
        read then ends when the client closes its side in turn)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def shutdown(self) -> None:
        """Wake any thread blocked on this socket, reading or sending (the descriptor stays ours until
        close). Nothing more can be sent: for a connection given up on."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Close, first reading and dropping what the client sent that nobody will read
        (unread bytes would turn the close into a reset, see ``discard_unread``)."""
        discard_unread(self.sock)
        self.sock.close()


def reject_connection(sock: socket.socket, why: str, config: Config) -> None:
    """Answer 503 on a connection we will not serve, without waiting for anything.

    Over TLS there is no session to answer in (a handshake is what we cannot
    afford), so the connection just closes.
    """
    if config.tls_endpoint is not None:
        sock.close()
        return
    try:
        sock.setblocking(False)
        try:
            sock.recv(65536)  # unread request bytes would turn our close into a reset
        except OSError:
            pass
        sock.send(error_response_bytes(503, why, [("retry-after", "1")]))
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


def _timeval(seconds: float) -> bytes:
    seconds = max(seconds, 0.001)  # a zero timeval means "wait forever"
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
