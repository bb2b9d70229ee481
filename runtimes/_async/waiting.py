"""The waiting room: accepted connections that have not sent a byte yet.

A connection costs a transport, a task, a protocol connection and its
buffers (about 10 KiB and 60 objects, measured) from the moment it is
served. Most of that is only needed once the client speaks, and a burst of
thousands of connections, or thousands that only hold a socket open, paid
it up front: at 25,000 connections the loop spent its time building
connections (and the garbage collector scanning them) instead of serving.

So an accepted socket first waits here, as an entry in one ``epoll`` set
and one dict: no transport, no task. The room's task waits for that set to
become readable, one wait for all of them, and hands each socket that has
something to say (a request, or its close) to the server, which only then
gives it a transport and a task (:meth:`WaitingRoom.serve`).

Its deadline, HEAD (``header_timeout`` from the connect), is the room's
while the socket is here and travels with it when it leaves: entries are
kept in arrival order, and they all have the same timeout, so the sweeper's
tick (:meth:`WaitingRoom.expire`) looks only at the oldest ones. A socket
that stays silent gets the 408 a connection gets, and is closed.

Without ``select.epoll`` (not Linux) there is no room: :func:`waiting_room`
returns None and connections are served as soon as they are accepted.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import anyio

from protocols import error_response_bytes

from .._lifecycle import Deadline
from ..common import discard_unread

__all__ = ["WaitingRoom", "waiting_room"]

#: A silent socket's last words, written without waiting (a socket that cannot take them is dropped).
_TOO_LATE = error_response_bytes(Deadline.HEAD.answer, Deadline.HEAD.reason)


class WaitingRoom:
    """Accepted sockets waiting for their first byte, watched by one task."""

    def __init__(self, header_timeout: float, last_words: bytes = _TOO_LATE) -> None:
        self.header_timeout = header_timeout
        self.last_words = last_words
        self._epoll = select.epoll()
        #: fd -> (socket, HEAD deadline), oldest first (dicts keep insertion order).
        self._waiting: dict[int, tuple[socket.socket, float]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, sock: socket.socket) -> None:
        """Wait here for the client's first byte (or its close)."""
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._waiting[fd] = (sock, time.monotonic() + self.header_timeout)

    async def serve(self, start: Callable[[socket.socket, float], None]) -> None:
        """Hand every socket that becomes readable to ``start(sock, deadline)``, until cancelled."""
        poll = self._epoll.poll
        waiting = self._waiting
        unregister = self._epoll.unregister
        while True:
            await anyio.wait_readable(self._epoll.fileno())
            # Every socket that is ready, not a batch: the connections already
            # served each get a turn per trip round the loop, and a newcomer
            # held back for the next trip waited one more such turn each time
            # (at 25,000 connections some waited 15 s for their first response).
            for fd, _ in poll(0, len(waiting) or 1):
                entry = waiting.pop(fd, None)
                if entry is not None:
                    unregister(fd)
                    start(*entry)

    def expire(self, now: float) -> None:
        """The sweeper's tick: a 408 for every socket whose head deadline has passed, and close it."""
        waiting = self._waiting
        late = []
        for fd, (_, deadline) in waiting.items():
            if deadline > now:
                break  # entries arrive in deadline order: the rest are in time too
            late.append(fd)
        for fd in late:
            sock, _ = waiting.pop(fd)
            self._epoll.unregister(fd)
            if self.last_words:
                try:
                    sock.send(self.last_words)
                except OSError:
                    pass
            discard_unread(sock)
            sock.close()

    def close(self) -> None:
        """Shutdown: nobody here has asked for anything, so every socket closes without a word."""
        for sock, _ in self._waiting.values():
            sock.close()
        self._waiting.clear()
        self._epoll.close()


def waiting_room(header_timeout: float, tls: bool = False) -> WaitingRoom | None:
    """A waiting room, where the platform has ``epoll``; None elsewhere (connections start at once).

    ``tls``: the port speaks TLS, so a silent socket is closed without its 408 (plain text it could not read).
    """
    if not hasattr(select, "epoll"):
        return None
    return WaitingRoom(header_timeout, b"" if tls else _TOO_LATE)
