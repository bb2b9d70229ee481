"""A connection owned by one thread from its first request to its close.

This is "yield to the OS" in its plainest form, and two runtimes share it:
``threaded`` starts a thread per connection to run :meth:`OwnedConnection.serve`,
and ``pinned`` (the seeds' design) hands a connection whose first request is
ready to a pool worker, which runs the very same loop.

The owning thread waits for each request head with a blocking read, runs
the handler itself (HTTP/1.1 requests come one at a time, so nothing else
would use the thread meanwhile), and lets the handler's body reads pull
bytes from the socket. On HTTP/2 it becomes the connection's reader and
hands every stream to a thread (:class:`~._sync.StreamSet` is the lifecycle
either way).

Graceful shutdown (:meth:`OwnedConnection.begin_shutdown`, from the
runtime's thread) never closes a socket under a request that has arrived:
a thread waiting for a request is woken by shutting only the socket's read
side, so it still finds a request already in the kernel and answers it; an
HTTP/2 connection sends GOAWAY and ends only once every stream it covered
has been answered and flushed. Only a connection with nothing to answer
closes at once.

An HTTP/2 connection ends with a staged close: FIN after the last frame,
then the reader drops what the client still sends (window updates for the
last DATA, a SETTINGS or PING acknowledgement) until the client closes too,
for at most ``LINGER`` seconds. Closing with those bytes arriving would make
the kernel answer them with a reset, and a client that sees the reset may
never read the responses it was owed.

Deadlines owned here: the first request head must be complete within
``header_timeout`` of the connection opening (408), an idle keep-alive
connection waits ``keep_alive_timeout`` for its next request and then has
``header_timeout`` to finish its head; a send of n bytes fails after
``io_timeout`` without progress or ``io_timeout + n / min_send_rate`` in all
(in the transport).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from protocols import ClientDisconnected, RequestReceived, error_response_bytes, server_connection

from ._lifecycle import access_log, trusted_proxies
from ._memory import HeapTrimmer
from ._pool import WorkerPool
from ._sync import StreamSet
from ._transport import SocketTransport
from .common import Config, Handler, logger

__all__ = ["OwnedConnection", "OwnedConnections"]

#: How often an HTTP/2 reader whose read side is shut looks for bytes still arriving (a window update)
#: while it waits for the streams it owes.
DRAIN_TICK = 0.1
#: How long an HTTP/2 connection that has sent its FIN waits for the client to close in turn.
LINGER = 1.0

#: Runs a job on some thread; False when no thread can take it.
Submit = Callable[[Callable[[], None]], bool]


class OwnedConnection:
    """One client connection, served by the thread that calls :meth:`serve`.

    ``submit_stream`` runs an HTTP/2 stream on another thread; without one,
    the connection keeps a small pool of its own for its streams.
    ``on_close`` is called (on the owning thread) once the socket is closed.
    """

    def __init__(self, transport: SocketTransport, config: Config, handler: Handler,
                 on_close: Callable[[OwnedConnection], None], submit_stream: Submit | None = None,
                 before_wait: Callable[[], None] | None = None) -> None:
        self.transport = transport
        #: Called each time the thread is about to wait for a request (``threaded``: help accept).
        self.before_wait = before_wait
        self.config = config
        self.on_close = on_close
        self.submit_stream = submit_stream
        proto = server_connection(transport.info, config.limits, config.http, transport.tls)
        self.streams = StreamSet(proto, self, handler, config.io_timeout,
                                 config.min_receive_rate, config.min_send_rate,
                                 proxies=trusted_proxies(config), access_log=access_log(config))
        self.streams.pull = self._pull
        self.write_lock = threading.Lock()  # stream threads send one at a time, in protocol order
        self.closed = False
        self.sending_done = False  # FIN sent: whatever is queued from now on is dropped
        #: Waiting for a request, none begun: a shutdown may wake the thread to close. False until the
        #: thread first waits (``pinned`` queues a connection for a worker with its request already read).
        self.idle = False
        self.stopping = False  # graceful shutdown: answer what has arrived, then close
        self.forced = False  # the shutdown timeout passed: stop waiting for anything
        #: Notified (when stopping) as each HTTP/2 stream finishes, for a reader that can no longer read.
        self.stream_finished = threading.Condition(self.streams.lock)
        self._stream_pool: WorkerPool | None = None

    def serve(self, ready: list[RequestReceived] | None = None, head_deadline: float | None = None) -> None:
        """Serve until the connection closes. ``ready``: requests already parsed (by a reactor)."""
        streams = self.streams
        streams.pull = self._pull  # this thread reads for its handlers from now on
        try:
            self.transport.block(self.config.io_timeout, self.config.min_send_rate)
            if ready is None:
                ready = self._wait_for_request(head_deadline)
            while ready is not None:
                if streams.proto.multiplexed:
                    self._serve_multiplexed(ready)
                    return
                with streams.lock:  # (see _wait_for_request)
                    self.idle = False
                streams.serve(ready[0])  # and any pipelined request that follows it
                ready = self._wait_for_request(None)
        except (ClientDisconnected, OSError):
            pass  # the client went away or stalled: its connection is all it costs
        except Exception:
            logger.exception("connection %s failed", self.transport.info.peer)
        finally:
            self._close()

    def _wait_for_request(self, deadline: float | None) -> list[RequestReceived] | None:
        """Read until a request is ready (or HTTP/2 has begun); None means close the connection.

        ``deadline`` is when the head must be complete (a new connection);
        None for a keep-alive connection, which may stay silent for
        keep_alive_timeout and then has header_timeout to finish its head.
        Nothing parsed is waiting when this is called: a pipelined request
        was found when the response before it ended (see StreamSet.serve).
        """
        streams = self.streams
        config = self.config
        # Set under the lock under which begin_shutdown sets ``stopping`` and reads this: either this
        # thread sees the shutdown, or the shutdown sees it idle and wakes its read. (Two plain
        # stores and loads were enough under the GIL; without it the lock is what orders them.)
        with streams.lock:
            self.idle = True
        while True:
            # Only this thread changes a one-at-a-time connection's state, so
            # these reads need no lock.
            if streams.proto.multiplexed:
                return []  # HTTP/2 may begin without a request: its SETTINGS must go out now
            if self.stopping:
                return self._request_already_here()
            if streams.proto.should_close:
                self.flush(True)  # a 4xx for a broken request, perhaps
                return None
            if self.before_wait is not None:
                self.before_wait()
            timeout = config.keep_alive_timeout if deadline is None else deadline - time.monotonic()
            data = None if timeout <= 0 else self.transport.receive(timeout)
            if data is None:  # timed out
                if deadline is not None and not self.stopping:
                    self.transport.send_all(error_response_bytes(408, "request head not received in time"))
                return None
            ready = self._absorb(data)
            if ready or streams.proto.multiplexed:
                return ready
            if not data:  # the client closed its side (or a shutdown stopped our reading) without a request
                self.flush(True)
                return None
            if deadline is None:  # a head has begun (only now: most arrive whole, in one read)
                deadline = time.monotonic() + config.header_timeout

    def _request_already_here(self) -> list[RequestReceived] | None:
        """Shutting down: answer a request whose bytes have arrived, but wait for none (None: close).

        A request the client sent before it could know of the shutdown
        deserves its answer (with ``Connection: close``); a partial head is
        dropped, as on every runtime, since waiting for the rest would
        hold the shutdown up.
        """
        while data := self.transport.receive_pending():
            ready = self._absorb(data)
            if ready or self.streams.proto.multiplexed:
                return ready  # HTTP/2 arriving now: its reader sends GOAWAY and answers what it covers
        self.flush(True)  # a 4xx for a broken request, perhaps
        return None

    def _absorb(self, data: bytes) -> list[RequestReceived]:
        streams = self.streams
        with streams.lock:
            streams.proto.receive_data(data)
            events = streams.proto.events()
            return streams.absorb(events) if events else events

    def _pull(self, timeout: float) -> bool:
        """A handler on this thread wants body bytes: one read from the socket."""
        data = self.transport.receive(timeout)
        if data is None:
            return False
        with self.streams.lock:
            self.streams.proto.receive_data(data)
            self.streams.absorb(self.streams.proto.events())
        return True

    # HTTP/2: this thread reads, each stream runs on a thread of its own ----------------

    def _serve_multiplexed(self, ready: list[RequestReceived]) -> None:
        """Read frames until the protocol says close, or the connection idles past keep_alive_timeout.

        At shutdown the protocol says close once GOAWAY is queued and every
        stream it covered has ended; the staged close after the loop sends
        what the last of them queued, then FIN. If our read side is shut before then (a
        connection that became HTTP/2 as the shutdown began, or a client
        that half-closed), the socket can no longer be waited on: the reader
        waits for its stream threads instead, looking now and then for bytes
        that still arrive (a window update a parked response needs).
        """
        streams = self.streams
        can_wait = True  # False once a read returned end of stream during a shutdown
        while True:
            for stream in ready:
                if not self._submit(lambda stream=stream: streams.serve(stream)):
                    streams.turn_away(stream)
            if self.stopping:
                with streams.lock:
                    streams.close_after_current()  # GOAWAY, if begin_shutdown found this not yet HTTP/2
            self.flush(False)
            with streams.lock:
                if streams.proto.should_close or self.forced:
                    break
                self.idle = streams.running == 0
                # Wake up for a small body that may come too late, or a response parked too long.
                wake_at = min((t for t in (streams.next_deadline(), streams.parked.next_due()) if t is not None),
                              default=None)
                if not can_wait:
                    self.stream_finished.wait(DRAIN_TICK)
            if can_wait:
                timeout = self.config.keep_alive_timeout
                if wake_at is not None:
                    timeout = max(0.01, min(timeout, wake_at - time.monotonic()))
                data = self.transport.receive(timeout)
            else:
                data = self.transport.receive_pending()
            with streams.lock:
                now = time.monotonic()
                late = streams.overdue(now)
                streams.abort_parked(now)  # its resets go out with the next flush, at the loop's top
            for stream in late:
                streams.refuse(stream, 408, "request body not received in time")
            ready = []
            if data is None:  # quiet for keep_alive_timeout (or a gathering deadline), or nothing arrived
                if self.idle and can_wait:
                    break
                continue
            if not data and self.stopping:
                # Not the client's goodbye to the protocol (that would abandon its streams): we stopped
                # reading, or it half-closed. The streams GOAWAY covered are answered all the same.
                can_wait = False
                continue
            with streams.lock:
                streams.proto.receive_data(data)
                ready = streams.absorb(streams.proto.events())
        if not self.forced:
            self._end_gracefully()

    def _end_gracefully(self) -> None:
        """The staged close (see the module's docstring): FIN, then wait for the client's."""
        self.finish_sending()
        deadline = time.monotonic() + LINGER
        while not self.forced and (left := deadline - time.monotonic()) > 0:
            if not self.transport.receive(left):  # the client closed (b""), or LINGER passed (None)
                return

    def finish_sending(self) -> None:
        """Any thread: send what the protocol has queued, then FIN. The connection says no more.

        Under the write lock, so no stream thread's bytes can follow the FIN
        and none queued before it are left behind. The reader, still
        reading, sees the client close in turn.
        """
        with self.write_lock:
            if self.sending_done or self.closed:
                return
            self.sending_done = True
            with self.streams.lock:
                data = self.streams.proto.data_to_send()
            try:
                self.transport.send_all(data)
            except ClientDisconnected:
                pass  # the client is gone: the reader hears so too
            self.transport.finish_sending()

    def _submit(self, job: Callable[[], None]) -> bool:
        if self.submit_stream is not None:
            return self.submit_stream(job)
        if self._stream_pool is None:
            # Threads kept for the connection's next streams: starting one costs more than a small request.
            limit = self.config.limits.max_concurrent_streams
            self._stream_pool = WorkerPool(limit, self.config.keep_alive_timeout, limit)
        return self._stream_pool.submit(job)

    # The Owner interface (see _sync.Owner) --------------------------------------------

    def flush(self, wait: bool) -> None:
        """Any thread: send what the protocol has queued, in the order it was queued.

        Always waits for the client (up to io_timeout): a thread that owns its
        connection has nothing better to do, and nobody else would send.
        """
        streams = self.streams
        if not streams.proto.multiplexed:  # one request at a time: this thread is the only sender
            with streams.lock:
                data = streams.proto.data_to_send()
            self.transport.send_all(data)
            return
        with self.write_lock:
            with streams.lock:
                data = streams.proto.data_to_send()
            if data and not self.sending_done:  # after our FIN, nothing is sent (a late PING ack, say)
                if self.closed:
                    raise ClientDisconnected("connection closed")
                self.transport.send_all(data)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        """This thread sends the file itself, blocking (only HTTP/1.1 sends raw bodies: no other
        thread writes to the socket meanwhile)."""
        self.transport.send_file(fd, offset, count)

    def stream_done(self) -> None:
        """A stream thread finished: wake the reader if the connection should now close.

        It is woken by the client's close, in answer to our FIN: the FIN
        follows every byte queued, other stream threads' included, since
        :meth:`finish_sending` takes them under the write lock. (Shutting
        the socket here instead cut off responses that other stream threads
        had queued but not yet sent, streams GOAWAY had promised to answer.)
        """
        streams = self.streams
        if not streams.proto.multiplexed:
            return  # HTTP/1.1: the reader is this very thread
        with streams.lock:
            wake = streams.proto.should_close
            if self.stopping:
                self.stream_finished.notify()
        if wake:
            self.finish_sending()

    def input_wanted(self) -> None:
        pass  # this thread reads only when a handler asks, or between requests

    def backlogged(self) -> bool:
        return False  # every send here waits until the kernel has taken the bytes

    # Shutdown, from the runtime's thread ---------------------------------------------

    def begin_shutdown(self) -> None:
        """Graceful: an idle connection closes now; a busy one after its responses (HTTP/2: GOAWAY now).

        Never closes the socket itself: the owning thread closes once nothing
        is owed (see the module's docstring).
        """
        streams = self.streams
        with streams.lock:
            self.stopping = True  # and ``idle`` read under the same lock: see _wait_for_request
            idle = self.idle
            streams.close_after_current()
            multiplexed = streams.proto.multiplexed
            nothing_owed = streams.proto.should_close and streams.running == 0
        if not multiplexed:
            # HTTP/1.1 queues nothing for a shutdown: a response under way says Connection: close.
            # A thread waiting for a request wakes, answers one that has arrived, or closes.
            if idle:
                self.transport.stop_reading()
            return
        if nothing_owed:
            self.finish_sending()  # GOAWAY and FIN; the reader closes when the client does
            return
        try:
            self.flush(False)  # the GOAWAY now; the last stream to finish sends FIN (stream_done)
        except (ClientDisconnected, OSError):
            self.transport.shutdown()

    def interrupt(self) -> None:
        """Wake the owning thread out of any read, send or wait (the shutdown timeout has passed)."""
        self.forced = True
        self.transport.shutdown()
        with self.streams.lock:
            self.stream_finished.notify_all()

    def _close(self) -> None:
        with self.write_lock:  # no stream thread sends on a closed (reused) descriptor
            self.closed = True
            self.transport.close()
        with self.streams.lock:
            self.streams.fail_all(ClientDisconnected("connection closed"))
            self.streams.proto.release()  # queued responses go now, not when a cycle is collected
        if self._stream_pool is not None:
            self._stream_pool.close()
        self.on_close(self)


class OwnedConnections:
    """The connections a runtime's threads own, for counting them and for a graceful shutdown.

    A connection may be counted before it exists: :meth:`reserve` holds a
    place for one whose thread is still starting (it builds its own
    connection, see ``threaded``), and that thread then calls
    :meth:`arrived` or :meth:`abandon`. A shutdown waits for those too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all_closed = threading.Condition(self._lock)
        self._open: set[OwnedConnection] = set()
        self._starting = 0  # reserved places whose connection has not arrived yet
        self._draining = False
        self._trimmer = HeapTrimmer()  # a crowd of threads leaves freed pages behind: see _memory

    def __len__(self) -> int:
        return len(self._open) + self._starting

    def add(self, connection: OwnedConnection) -> None:
        with self._lock:
            self._open.add(connection)
            self._trimmer.opened(len(self._open))

    def reserve(self, limit: int) -> bool:
        """Hold a place for a connection about to start; False at ``limit`` connections."""
        with self._lock:
            if len(self._open) + self._starting >= limit:
                return False
            self._starting += 1
            return True

    def arrived(self, connection: OwnedConnection) -> None:
        """A reserved place is filled. A connection that arrives during a shutdown begins its own."""
        with self._lock:
            self._starting -= 1
            self._open.add(connection)
            self._trimmer.opened(len(self._open))
            draining = self._draining
        if draining:
            connection.begin_shutdown()

    def abandon(self) -> None:
        """A reserved place will not be filled (the client left, or no thread could start)."""
        with self._lock:
            self._starting -= 1
            if not self._open and not self._starting:
                self._all_closed.notify_all()

    def forget(self, connection: OwnedConnection) -> None:
        """A connection closed (its thread calls this, as the connection's ``on_close``)."""
        with self._lock:
            self._open.discard(connection)
            if not self._open and not self._starting:
                self._all_closed.notify_all()
            trim = self._trimmer.due(len(self._open))
        if trim:
            self._trimmer.trim()

    def drain(self, timeout: float) -> None:
        """Idle connections close now, busy ones after their response; past ``timeout``, force the rest."""
        with self._lock:
            self._draining = True
            connections = list(self._open)
        for connection in connections:
            connection.begin_shutdown()
        deadline = time.monotonic() + timeout
        with self._lock:
            while (self._open or self._starting) and (left := deadline - time.monotonic()) > 0:
                self._all_closed.wait(left)
            stragglers = list(self._open)
        if stragglers:
            logger.warning("shutdown timeout: closing %d busy connections", len(stragglers))
            for connection in stragglers:
                connection.interrupt()
