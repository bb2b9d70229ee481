"""Thread per connection: the purest form of "yield to the OS".

Every connection gets an OS thread that does blocking ``recv`` and
``sendall`` and calls the handler itself. There is no event loop and no
scheduler of our own: when a thread waits on its socket or sleeps in a
handler, the kernel runs another one. The price is a thread (a stack's worth
of address space, a kernel task) per connection, even an idle one.

Read it in this order:

1. :meth:`ThreadedRuntime.serve`: the accept loop, and the cap on live
   connections (past it a client gets 503 at once rather than a hang).
2. :meth:`Connection.run`: one connection's life, request after request.
3. :class:`BodyReader`: how a handler's ``request.body.read()`` turns into
   ``recv`` calls on that same thread.
4. :meth:`Connection._serve_streams`: HTTP/2, where the connection's thread
   becomes the reader and every stream in progress gets a thread of its own.
5. :meth:`ThreadedRuntime._drain`: graceful shutdown.

Timeouts are enforced by the kernel: ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` make a
blocking ``recv`` or ``send`` give up with EAGAIN, so waiting costs one system
call, not a ``poll`` before each read as Python's own socket timeouts do.
"""

from __future__ import annotations

import _thread
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

from protocols import (
    ClientDisconnected,
    ConnectionInfo,
    Event,
    HTTPError,
    ProtocolSwitched,
    RequestBody,
    RequestReceived,
    error_response_bytes,
    server_connection,
)

from ._streams import StreamSet
from ._threads import BodyInbox, WorkerPool, reject_connection, write_response
from .common import Runtime, call_handler, discard_unread, logger, socket_address, thread_count

__all__ = ["ThreadedRuntime"]

RECV_SIZE = 64 * 1024


class ThreadedRuntime(Runtime):
    name = "threaded"

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._all_closed = threading.Condition(self._lock)
        self._wake_r, self._wake_w = socket.socketpair()
        self.accepted = 0
        self.rejected = 0

    # 1. Accepting ---------------------------------------------------------

    def serve(self, ready: Callable[[], None]) -> None:
        if self.config.thread_stack_size:
            threading.stack_size(self.config.thread_stack_size)
        # The accept loop waits on the listener and on a wake-up socket, so
        # that stop() can interrupt it (closing a socket another thread is
        # blocked on does not wake that thread on Linux).
        selector = selectors.DefaultSelector()
        for listener in self.listeners:
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        ready()
        try:
            while not self.stopping:
                for key, _ in selector.select():
                    if key.fileobj is not self._wake_r:
                        self._accept_ready(key.fileobj)
        finally:
            selector.close()
            for listener in self.listeners:
                listener.close()
            self._drain()
            self._wake_r.close()
            self._wake_w.close()

    def _accept_ready(self, listener: socket.socket) -> None:
        while not self.stopping:
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: back off, do not spin
                logger.warning("accept failed: %s", exc)
                time.sleep(0.05)
                return
            self.accepted += 1
            sock.settimeout(None)
            with self._lock:
                full = len(self._connections) >= self.config.max_connections
            if full:
                self._reject(sock, "too many connections")
                continue
            connection = Connection(self, sock, peer)
            with self._lock:
                self._connections.add(connection)
            try:
                # Not threading.Thread: its start() waits until the new thread
                # has run, two trips through the GIL per connection. Under
                # load, with hundreds of threads queueing for the GIL, that
                # starved the accept loop (at 1,000 connections half of them
                # waited in the backlog for seconds).
                _thread.start_new_thread(connection.run, ())
            except RuntimeError:  # the OS will not give us another thread
                self._forget(connection)
                self._reject(sock, "cannot start a thread for this connection")

    def _reject(self, sock: socket.socket, why: str) -> None:
        self.rejected += 1
        reject_connection(sock, why)

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            if not self._connections:
                self._all_closed.notify_all()

    # 5. Stopping ----------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain(self) -> None:
        """Close idle connections now, let busy ones finish their request, then force the rest."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            if connection.idle:
                connection.interrupt()
            elif connection.streams is not None:
                connection.announce_shutdown()
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self._lock:
            while self._connections and (left := deadline - time.monotonic()) > 0:
                self._all_closed.wait(left)
            stragglers = list(self._connections)
        if stragglers:
            logger.warning("shutdown timeout: closing %d busy connections", len(stragglers))
            for connection in stragglers:
                connection.interrupt()

    def stats(self) -> dict[str, int]:
        with self._lock:
            open_connections = len(self._connections)
        return {
            "connections_open": open_connections,
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "threads": thread_count(),
        }


# 2. One connection, on its own thread ---------------------------------------

class Connection:
    """A client connection and the thread that serves it."""

    def __init__(self, runtime: ThreadedRuntime, sock: socket.socket, peer) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.sock = sock
        self.peer = peer
        self.idle = True  # waiting for a request head: safe to close at shutdown
        self._recv_timeout = -1.0
        self.accepted_at = time.monotonic()
        self.streams: StreamSet | None = None  # HTTP/2 only

    def interrupt(self) -> None:
        """Wake the thread out of any recv/send (shutdown, not close: the fd stays ours)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self) -> None:
        sock = self.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.config.io_timeout))
            info = ConnectionInfo(socket_address(self.peer), socket_address(sock.getsockname()))
            self.conn = server_connection(info, self.config.limits, self.config.http)
            if self.conn.multiplexed:
                self._serve_streams()
            else:
                self._serve()
        except (ClientDisconnected, OSError):
            pass  # the client went away or stalled: its connection is all it costs
        except Exception:
            logger.exception("connection %s failed", self.peer)
        finally:
            discard_unread(sock)
            if self.streams is None:
                sock.close()
            else:
                with self.write_lock:  # no stream thread sends on a closed (reused) fd
                    self.closed = True
                    sock.close()
                with self.streams.lock:
                    self.streams.fail_all(ClientDisconnected("connection closed"))
                self.stream_threads.close()
            self.runtime._forget(self)

    def _serve(self) -> None:
        conn = self.conn
        handler = self.runtime.handler
        first = True
        while True:
            events = self._wait_for_request(first)
            if events is None:
                return
            if type(events[-1]) is ProtocolSwitched:
                self.conn = events[-1].connection
                self._serve_streams()
                return
            first = False
            self.idle = False
            started = events[0]
            assert isinstance(started, RequestReceived)
            request = started.request
            if started.has_body:
                reader = BodyReader(self, started.stream_id)
                for event in events[1:]:
                    reader.absorb(event)
                request.body = RequestBody(reader.read_chunk)
            response = call_handler(handler, request)
            if self.runtime.stopping:
                conn.close_after_current()
            write_response(conn, started.stream_id, response, self.flush)
            if conn.should_close:
                self.write(conn.data_to_send())
                return

    def _wait_for_request(self, first: bool) -> list[Event] | None:
        """Read until a request head is parsed; None means close the connection.

        A new connection must deliver its first head within header_timeout of
        connecting. An idle keep-alive connection may stay silent for
        keep_alive_timeout; once the next head starts arriving it has
        header_timeout to finish it.
        """
        conn = self.conn
        config = self.config
        deadline = self.accepted_at + config.header_timeout if first else None
        while True:
            events = conn.events()
            if events:
                if type(events[0]) is RequestReceived or type(events[0]) is ProtocolSwitched:
                    return events
                self.write(conn.data_to_send())  # ProtocolFailed: its 4xx is queued
                return None
            if conn.should_close:
                self.write(conn.data_to_send())
                return None
            if deadline is None:
                timeout = config.keep_alive_timeout
            else:
                timeout = deadline - time.monotonic()
            self.idle = True
            if self.runtime.stopping or timeout <= 0:
                data = None
            else:
                data = self.recv(timeout)
            if data is None:  # timed out (or shutting down)
                if deadline is not None and not self.runtime.stopping:
                    self.write(error_response_bytes(408, "request head not received in time"))
                return None
            if deadline is None:
                deadline = time.monotonic() + config.header_timeout
            conn.receive_data(data)

    # 4. HTTP/2: a reader thread plus a thread per stream ----------------------

    def _serve_streams(self) -> None:
        """Read frames on this thread; run each stream's handler on a new thread.

        The loop ends when the protocol says close (the client went away,
        broke the protocol, or a GOAWAY's last stream has finished), or when
        the connection has been idle, with no stream running, for
        keep_alive_timeout.
        """
        conn = self.conn
        lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.closed = False
        streams = self.streams = StreamSet(
            conn, lock, self.runtime.handler, self.config.io_timeout, self._flush_streams, self._stream_done,
        )
        # A thread per stream in progress, kept for the connection's next
        # streams: starting a thread costs more than a small request.
        limit = self.config.limits.max_concurrent_streams
        self.stream_threads = WorkerPool(limit, self.config.keep_alive_timeout, limit)
        with lock:
            started = streams.absorb(conn.events())
        while True:
            self._start(started)
            self._flush_streams()
            with lock:
                if self.runtime.stopping:
                    conn.close_after_current()
                if conn.should_close:
                    break
                self.idle = streams.running == 0
                gathering_until = streams.next_deadline()
            if self.idle and self.runtime.stopping:
                break
            timeout = self.config.keep_alive_timeout
            if gathering_until is not None:  # wake up for the first small body that may come too late
                timeout = max(0.01, min(timeout, gathering_until - time.monotonic()))
            data = self.recv(timeout)
            with lock:
                late = streams.overdue(time.monotonic())
            for stream in late:
                streams.refuse(stream, 408, "request body not received in time")
            if data is None:  # quiet for keep_alive_timeout
                if self.idle:
                    break
                started = []
                continue
            with lock:
                conn.receive_data(data)
                started = streams.absorb(conn.events())
        self._flush_streams()

    def _start(self, started: list[RequestReceived]) -> None:
        streams = self.streams
        for stream in started:
            if not self.stream_threads.submit(lambda stream=stream: streams.serve(stream)):
                streams.refuse(stream, 503, "cannot start a thread for this request", {"retry-after": "1"})

    def _flush_streams(self) -> None:
        """Any thread: send what the protocol has queued, in the order it was queued."""
        with self.write_lock:
            with self.streams.lock:
                data = self.conn.data_to_send()
            if data:
                if self.closed:
                    raise ClientDisconnected("connection closed")
                self.write(data)

    def announce_shutdown(self) -> None:
        """HTTP/2, at shutdown: GOAWAY now; the streams already accepted are still answered."""
        with self.streams.lock:
            self.conn.close_after_current()
        try:
            self._flush_streams()
        except (ClientDisconnected, OSError):
            self.interrupt()

    def _stream_done(self) -> None:
        """A stream's thread has finished: wake the reader if the connection should now close."""
        with self.streams.lock:
            closing = self.conn.should_close
        if closing:
            self.interrupt()

    # Socket edges ------------------------------------------------------------

    def recv(self, timeout: float) -> bytes | None:
        """One blocking read: bytes, b"" at end of stream, None on timeout."""
        if timeout != self._recv_timeout:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._recv_timeout = timeout
        try:
            return self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except ConnectionError:
            return b""

    def flush(self) -> None:
        self.write(self.conn.data_to_send())

    def write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.sock.sendall(data)
        except BlockingIOError:
            raise ClientDisconnected("client stopped reading") from None


# 3. The request body, read on demand ----------------------------------------

class BodyReader(BodyInbox):
    """Feeds ``request.body`` from the socket, on the handler's own thread.

    Body chunks parsed along with the head are queued first; after that each
    read that finds the queue empty does one blocking ``recv``. A client that
    sent ``Expect: 100-continue`` is told to go ahead only now, when the
    handler actually asks for the body.
    """

    def __init__(self, connection: Connection, stream_id: int) -> None:
        super().__init__(stream_id)
        self.connection = connection

    def read_chunk(self) -> bytes:
        connection = self.connection
        conn = connection.conn
        while (chunk := self.take()) is None:
            if conn.expects_continue:
                conn.send_continue(self.stream_id)
                connection.write(conn.data_to_send())
            data = connection.recv(connection.config.io_timeout)
            if data is None:
                raise HTTPError(408, "request body not received in time")
            conn.receive_data(data)
            for event in conn.events():
                self.absorb(event)
        return chunk


def _timeval(seconds: float) -> bytes:
    seconds = max(seconds, 0.001)  # a zero timeval means "wait forever"
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))

