"""The clients of the graceful-shutdown check: requests in flight, and newcomers after the signal.

Kept apart from ``experiments.hostile.shutdown`` so that the check (what counts as
lost, refused, in time) reads on its own. Both protocols are spoken with
real parsers' rules: HTTP/1.1 responses are complete only with their whole
``Content-Length`` body, HTTP/2 streams only with END_STREAM (h2's client
side), so a truncated answer counts as lost, never as served.
"""

from __future__ import annotations

import math
import re
import select
import selectors
import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .clients import Seen, final_status
from .h2 import RawH2, code_name

EXPECTED_BODY = b"slept"
LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def _connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def h1_response(buf: bytes | bytearray) -> tuple[int, bytes] | None:
    """(status, body) once ``buf`` holds a whole final response (1xx heads skipped) with its Content-Length body."""
    pos = 0
    while (end := buf.find(b"\r\n\r\n", pos)) >= 0:
        status = STATUS.match(buf, pos)
        if status is None:
            return (0, b"")  # not HTTP: a status of 0 says so
        if int(status[1]) >= 200:
            length = LENGTH.search(bytes(buf[pos:end + 2]))
            size = int(length[1]) if length else 0
            body = bytes(buf[end + 4:end + 4 + size])
            return (int(status[1]), body) if len(body) == size else None
        pos = end + 4
    return None


def _h1_get(sock: socket.socket, path: str = "/") -> int:
    """One blocking keep-alive request; the status."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: shutdown\r\n\r\n" % path.encode())
    buf = bytearray()
    while (answer := h1_response(buf)) is None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the answer")
        buf += data
    return answer[0]


class H1Flight:
    """``n`` HTTP/1.1 connections with one slow request each; half of them reused keep-alive ones."""

    def __init__(self, address: tuple[str, int], n: int, path: str) -> None:
        self.address, self.n, self.path = address, n, path
        self.socks: list[socket.socket] = []
        self.idle: list[socket.socket] = []
        self.sent_at = 0.0

    def prepare(self) -> None:
        for i in range(self.n):
            sock = _connect(self.address)
            if i % 2 == 0:
                _h1_get(sock)  # a keep-alive connection that has already served a request
            self.socks.append(sock)
        for _ in range(max(2, self.n // 10)):  # idle keep-alive connections: to be closed, not counted
            sock = _connect(self.address)
            _h1_get(sock)
            self.idle.append(sock)

    def send_all(self) -> None:
        request = b"GET %s HTTP/1.1\r\nHost: shutdown\r\n\r\n" % self.path.encode()
        for sock in self.socks:
            sock.sendall(request)
        self.sent_at = time.monotonic()

    def collect(self, deadline: float) -> list[dict[str, Any]]:
        selector = selectors.DefaultSelector()
        bufs: dict[socket.socket, bytearray] = {}
        results: dict[socket.socket, dict] = {}
        for sock in self.socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            bufs[sock] = bytearray()
        while len(results) < len(self.socks) and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                outcome = self._read(sock, bufs[sock])
                if outcome is not None:
                    results[sock] = {"outcome": outcome, "seconds": time.monotonic() - self.sent_at}
                    selector.unregister(sock)
        for sock in self.socks:
            results.setdefault(sock, {"outcome": "no answer", "seconds": None})
        for sock in self.socks + self.idle:
            sock.close()
        selector.close()
        return [results[s] for s in self.socks]

    @staticmethod
    def _read(sock: socket.socket, buf: bytearray) -> str | None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return "reset"
        buf += data
        answer = h1_response(buf)
        if answer is not None:
            status, body = answer
            return "complete 200" if status == 200 and body == EXPECTED_BODY else f"status {status}"
        if not data:
            return "truncated" if buf else "closed"
        return None


class H2Flight:
    """``n`` slow streams over connections of ``per_connection`` each; half the connections used before.

    Frames are read with ``RawH2``, not h2's client: h2 closes its state
    machine at a GOAWAY and then rejects the very responses a draining
    server still owes.
    """

    def __init__(self, address: tuple[str, int], n: int, path: str, per_connection: int = 10) -> None:
        self.address, self.n, self.path, self.per = address, n, path, per_connection
        self.seen = Seen("shutdown", "h2")
        self.conns: list[RawH2] = []
        self.idle: list[RawH2] = []
        self.streams: list[tuple[RawH2, int]] = []
        self.sent_at = 0.0
        self.done_at: dict[tuple[int, int], float] = {}

    def _open(self, used: bool) -> RawH2:
        conn = RawH2(*self.address, self.seen, keep_bodies=True)
        if not conn.ok:
            raise ConnectionError("could not connect")
        if used:  # one request read to its end: a connection that has served before
            frame = conn.request_frame("/")
            conn.send(frame)
            deadline = time.monotonic() + 5
            while frame.stream_id not in conn.ended and conn.ok and time.monotonic() < deadline:
                conn.poll(0.1)
        return conn

    def prepare(self) -> None:
        self.conns = [self._open(used=i % 2 == 0) for i in range(math.ceil(self.n / self.per))]
        self.idle = [self._open(used=True)]

    def send_all(self) -> None:
        for i in range(self.n):
            conn = self.conns[i // self.per]
            frame = conn.request_frame(self.path)
            conn.send(frame)
            self.streams.append((conn, frame.stream_id))
        self.sent_at = time.monotonic()

    def collect(self, deadline: float) -> list[dict[str, Any]]:
        while (left := deadline - time.monotonic()) > 0 and any(self._outcome(c, s) is None for c, s in self.streams):
            live = [c for c in self.conns if c.ok]
            if not live:
                break
            ready = select.select([c.sock for c in live], [], [], min(left, 0.5))[0]
            for conn in live:
                if conn.sock in ready:
                    conn.poll(0)
            for conn, sid in self.streams:
                if (id(conn), sid) not in self.done_at and self._outcome(conn, sid) is not None:
                    self.done_at[(id(conn), sid)] = time.monotonic() - self.sent_at
        results = [{"outcome": self._outcome(c, s) or ("closed" if c.closed else "no answer"),
                    "seconds": self.done_at.get((id(c), s))} for c, s in self.streams]
        for conn in self.conns + self.idle:
            if conn.sock is not None:
                conn.sock.close()
        return results

    @staticmethod
    def _outcome(conn: RawH2, sid: int) -> str | None:
        """A stream's fate once settled; None while it may still be answered."""
        if sid in conn.ended:
            body = bytes((conn.bodies or {}).get(sid, b""))
            status = conn.status.get(sid)
            return "complete 200" if status == 200 and body == EXPECTED_BODY else f"status {status}"
        if sid in conn.resets:
            return f"reset {code_name(conn.resets[sid])}"
        if conn.goaway_last is not None and sid > conn.goaway_last:
            return "goaway (not processed)"
        if conn.goaway is not None and conn.goaway != 0:
            return f"goaway {code_name(conn.goaway)}"
        if conn.closed:
            return "reset" if conn.closed == "reset" else "closed"
        return None


# Newcomers after the signal -------------------------------------------------------------

def probe(address: tuple[str, int], protocol: str, signalled: float, delay: float,
          wait: float = 6.0) -> dict[str, Any]:
    """``delay`` s after the signal, a new connection and one request: how it was turned away, how fast."""
    time.sleep(max(0.0, signalled + delay - time.monotonic()))
    began = time.monotonic()

    def row(outcome: str, answered: bool = True) -> dict[str, Any]:
        return {"delay_s": delay, "outcome": outcome,
                "answer_s": round(time.monotonic() - began, 3) if answered else None}
    try:
        sock = _connect(address, timeout=wait)
    except ConnectionRefusedError:
        return row("refused")
    except OSError as exc:
        return row(f"connect {type(exc).__name__}")
    sock.settimeout(wait)
    try:
        return row(_probe_h2(sock) if protocol == "h2" else _probe_h1(sock))
    except ConnectionResetError:
        return row("reset")
    except TimeoutError:
        return row("no answer", answered=False)
    except (OSError, h2.exceptions.ProtocolError) as exc:
        return row(type(exc).__name__)
    finally:
        sock.close()


def _probe_h1(sock: socket.socket) -> str:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: newcomer\r\n\r\n")
    buf = bytearray()
    while data := sock.recv(65536):
        buf += data
        if (status := final_status(buf)) is not None:
            return "served" if status < 300 else str(status)
    return "closed"


def _probe_h2(sock: socket.socket) -> str:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"),
                          (b":authority", b"newcomer")], end_stream=True)
    sock.sendall(conn.data_to_send())
    while data := sock.recv(65536):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
                return "served" if status < 300 else str(status)
            if isinstance(event, h2.events.StreamReset):
                return f"RST {event.error_code!s}"
            if isinstance(event, h2.events.ConnectionTerminated):
                return f"GOAWAY {event.error_code!s}"
        if out := conn.data_to_send():
            sock.sendall(out)
    return "closed"
