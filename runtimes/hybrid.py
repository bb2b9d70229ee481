"""Hybrid: one reactor thread waits on every socket; a pool of worker threads runs handlers.

This is the Rust astra's design (a small evented loop in front of a thread
pool, so handlers may block) without the three flaws its users hit:

- **Requests, not connections, go to workers.** An idle keep-alive connection,
  or a client still trickling its head, costs a registered descriptor and a
  few hundred bytes, never a worker.
- **The queue in front of the pool is bounded.** Past ``max_queued_requests``
  a request is answered 503 with ``Retry-After`` at once, by the reactor.
- **The reactor owns every timer.** Header, keep-alive and write-stall
  timeouts are enforced whether or not a worker is involved.

Read it in this order:

1. :meth:`HybridRuntime.serve`: the reactor loop (accept, read, flush, timers).
2. :class:`Channel`: one connection's state, shared by the reactor and at
   most one worker at a time, under the channel's lock.
3. :class:`Exchange`: one request on a worker: body, handler, response.
4. Shutdown, at the end of :meth:`HybridRuntime.serve`.

The worker pool (``_threads.WorkerPool``: starts empty, grows to
``max_workers``, shrinks after ``worker_keep_alive`` seconds idle, refuses
past ``max_queued_requests``) is shared with the event-loop runtimes, which
run blocking handlers on the same kind of pool.

Who does what: only the reactor waits on sockets, changes the selector and
closes sockets. A worker with a response ready tries one non-blocking
``send`` itself: handing a ready response to the reactor would cost a wake-up
and two thread switches per request for nothing. Whatever the kernel does not
take is left for the reactor to flush, and the worker waits (on a condition,
not a socket) only while more than ``HIGH_WATER`` bytes are pending: that is
the backpressure a slow reader exerts on a streaming handler.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from protocols import (
    ClientDisconnected,
    ConnectionClosed,
    ConnectionInfo,
    Event,
    HTTP11Connection,
    HTTPError,
    ProtocolFailed,
    RequestBody,
    RequestReceived,
    error_response_bytes,
)

from ._threads import BodyInbox, WorkerPool, reject_connection, write_response
from .common import Runtime, call_handler, error_response, logger, socket_address, thread_count

__all__ = ["HybridRuntime"]

RECV_SIZE = 64 * 1024
HIGH_WATER = 256 * 1024  # pending output past which a streaming worker waits
BODY_HIGH_WATER = 1024 * 1024  # buffered request body past which the reactor stops reading
TICK = 0.1  # how often the reactor checks deadlines (timeouts are this precise)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_WAKE = object()  # selector data: the wake-up socket
_LISTENER = object()  # selector data: a listening socket

# What a channel's deadline means when it passes.
HEAD_DEADLINE = "head"  # the request head did not arrive in time: 408, close
IDLE_DEADLINE = "idle"  # keep-alive idle timeout: close quietly


class HybridRuntime(Runtime):
    name = "hybrid"
    uses_worker_pool = True

    def __init__(self, handler, config, listeners) -> None:
        super().__init__(handler, config, listeners)
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.channels: dict[int, Channel] = {}
        self.pool = WorkerPool(config.max_workers, config.worker_keep_alive, config.max_queued_requests)
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_pending = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.accepted = 0
        self.rejected = 0
        self.overloaded = 0

    # 1. The reactor -----------------------------------------------------

    def serve(self, ready: Callable[[], None]) -> None:
        if self.config.thread_stack_size:
            threading.stack_size(self.config.thread_stack_size)
        for listener in self.listeners:
            listener.setblocking(False)
            self.selector.register(listener, READ, _LISTENER)
        self.selector.register(self._wake_r, READ, _WAKE)
        ready()
        next_tick = time.monotonic() + TICK
        drain_deadline = None
        try:
            while True:
                if self.stopping and drain_deadline is None:
                    drain_deadline = time.monotonic() + self.config.shutdown_timeout
                    self._begin_drain()
                if drain_deadline is not None and (not self.channels or time.monotonic() > drain_deadline):
                    break
                for key, mask in self.selector.select(max(0.0, next_tick - time.monotonic())):
                    channel = key.data
                    if channel is _LISTENER:
                        self._accept_ready(key.fileobj)
                    elif channel is _WAKE:
                        self._drain_wake_socket()
                    else:
                        if mask & READ:
                            self._on_readable(channel)
                        if mask & WRITE and not channel.closed:
                            self._on_writable(channel)
                self._run_calls()
                now = time.monotonic()
                if now >= next_tick:
                    self._check_deadlines(now)
                    next_tick = now + TICK
        finally:
            for channel in list(self.channels.values()):
                self.close(channel)
            self.pool.close()
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the reactor thread (from any thread)."""
        self._calls.append(call)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def _run_calls(self) -> None:
        self._wake_pending = False  # before draining: a later call_soon wakes us again
        calls = self._calls
        while calls:
            calls.popleft()()

    def _drain_wake_socket(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _accept_ready(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again next tick
                logger.warning("accept failed: %s", exc)
                return
            self.accepted += 1
            if len(self.channels) >= self.config.max_connections:
                self.rejected += 1
                reject_connection(sock, "too many connections")
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            channel = Channel(self, sock, peer)
            self.channels[channel.fd] = channel
            self.selector.register(sock, READ, channel)

    def _on_readable(self, channel: Channel) -> None:
        try:
            data = channel.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        with channel.lock:
            channel.proto.receive_data(data)
            if data and channel.exchange is None and channel.deadline_kind is IDLE_DEADLINE:
                channel.set_deadline(self.config.header_timeout, HEAD_DEADLINE)
            started = channel.absorb(channel.proto.events())
            exchange = channel.exchange
            # Stop reading when nothing more is wanted for now: at end of
            # stream, while a complete request is being answered (a
            # pipelined one waits in the kernel, not in our memory), or
            # while the handler lags behind a large upload.
            if not data:
                channel.eof = True
            elif exchange is not None and (
                exchange.inbox is None or exchange.inbox.ended
                or exchange.inbox.buffered > BODY_HIGH_WATER
            ):
                channel.paused = True
        self.sync_interest(channel)
        if started is not None:
            self.dispatch(started)

    def dispatch(self, exchange: Exchange) -> None:
        if not self.pool.submit(exchange.run):
            self.overloaded += 1
            exchange.channel.refuse(exchange, 503, "server overloaded")

    def _on_writable(self, channel: Channel) -> None:
        with channel.lock:
            try:
                sent = channel.sock.send(channel.out)
            except BlockingIOError:
                return
            except OSError:
                sent = -1
            if sent >= 0:
                del channel.out[:sent]
                channel.last_progress = time.monotonic()
                if len(channel.out) <= HIGH_WATER:
                    channel.writable.notify_all()
            done = sent < 0 or not channel.out
            if done:
                channel.want_write = False
            close = sent < 0 or (done and channel.close_when_flushed)
        if close:
            self.close(channel)
        elif done:
            self.sync_interest(channel)

    def _check_deadlines(self, now: float) -> None:
        io_timeout = self.config.io_timeout
        for channel in list(self.channels.values()):
            deadline = channel.deadline
            if deadline is not None and now >= deadline:
                with channel.lock:
                    if channel.exchange is not None or channel.deadline is None:
                        continue  # a request arrived in the meantime
                    head_timeout = channel.deadline_kind is HEAD_DEADLINE
                    channel.deadline = None
                if head_timeout:
                    channel.send_and_close(error_response_bytes(408, "request head not received in time"))
                else:
                    self.close(channel)
            elif channel.out and now - channel.last_progress > io_timeout:
                self.close(channel)  # the client stopped reading our response

    # Selector interest and closing: reactor thread only -------------------

    def sync_interest(self, channel: Channel) -> None:
        """Make the selector match what the channel wants now.

        Workers change ``paused`` and ``want_write`` under the channel lock
        and then ask for a sync; whatever order those requests arrive in,
        each sync reads the flags' latest values, so none is lost.
        """
        if channel.closed:
            return
        reading = not (channel.paused or channel.eof or channel.close_when_flushed)
        mask = (READ if reading else 0) | (WRITE if channel.want_write else 0)
        if mask == channel.registered:
            return
        if channel.registered and mask:
            self.selector.modify(channel.sock, mask, channel)
        elif mask:
            self.selector.register(channel.sock, mask, channel)
        else:
            self.selector.unregister(channel.sock)
        channel.registered = mask

    def close(self, channel: Channel) -> None:
        with channel.lock:
            if channel.closed:
                return
            channel.closed = True  # under the lock: no worker sends on a reused fd
            channel.writable.notify_all()
            if channel.exchange is not None and channel.exchange.inbox is not None:
                channel.exchange.inbox.fail(ClientDisconnected("connection closed"))
                channel.exchange.inbox.ready.notify_all()
            if channel.registered:
                self.selector.unregister(channel.sock)
                channel.registered = 0
            channel.sock.close()
        self.channels.pop(channel.fd, None)

    # 4. Shutdown -----------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        self.call_soon(lambda: None)  # wake the reactor

    def _begin_drain(self) -> None:
        """Stop accepting; close idle connections; busy ones close after their response."""
        for listener in self.listeners:
            self.selector.unregister(listener)
            listener.close()
        for channel in list(self.channels.values()):
            with channel.lock:
                busy = channel.exchange is not None or bool(channel.out)
                channel.proto.close_after_current()
            if busy:
                channel.close_when_flushed = True
                self.sync_interest(channel)
            else:
                self.close(channel)

    def stats(self) -> dict[str, int]:
        return {
            "connections_open": len(self.channels),
            "connections_accepted": self.accepted,
            "connections_rejected": self.rejected,
            "requests_overloaded": self.overloaded,
            "threads": thread_count(),
            **self.pool.stats(),
        }


# 2. One connection ------------------------------------------------------------

class Channel:
    """A connection as the reactor and its workers share it.

    Everything mutable is guarded by ``lock``: the protocol connection, the
    pending output, the current exchange, the deadline and the wishes
    ``paused`` / ``want_write``. The selector registration itself
    (``registered``) is touched by the reactor thread only.
    """

    def __init__(self, runtime: HybridRuntime, sock: socket.socket, peer) -> None:
        self.runtime = runtime
        self.sock = sock
        self.fd = sock.fileno()
        self.lock = threading.Lock()
        self.writable = threading.Condition(self.lock)  # pending output fell below HIGH_WATER
        info = ConnectionInfo(socket_address(peer), socket_address(sock.getsockname()))
        self.proto = HTTP11Connection(info, runtime.config.limits)
        self.out = bytearray()
        self.exchange: Exchange | None = None
        self.closed = False
        self.close_when_flushed = False
        # What the channel wants from the selector (guarded by lock) ...
        self.paused = False  # stop reading for now (backpressure)
        self.want_write = False  # output is pending
        # ... and what the reactor last told the selector (reactor only).
        self.eof = False
        self.registered = READ
        self.last_progress = time.monotonic()
        self.deadline: float | None = None
        self.deadline_kind = HEAD_DEADLINE
        self.set_deadline(runtime.config.header_timeout, HEAD_DEADLINE)

    def set_deadline(self, seconds: float, kind: str) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    def absorb(self, events: list[Event]) -> Exchange | None:
        """File protocol events (lock held). Returns a new exchange to dispatch, if any."""
        started = None
        for event in events:
            if type(event) is RequestReceived:
                started = self.exchange = Exchange(self, event)
                self.deadline = None
            elif self.exchange is not None:
                if self.exchange.inbox is not None:
                    self.exchange.inbox.absorb(event)
                    self.exchange.inbox.ready.notify_all()
                if type(event) is ProtocolFailed:
                    self.close_when_flushed = True
            elif type(event) is ProtocolFailed or type(event) is ConnectionClosed:
                self.runtime.call_soon(self._flush_and_close)
        return started

    def _flush_and_close(self) -> None:
        with self.lock:
            data = self.proto.data_to_send()
        self.send_and_close(data)

    def send_and_close(self, data: bytes) -> None:
        """Reactor thread: queue ``data`` and close once it is flushed."""
        with self.lock:
            self.out += data
            self.close_when_flushed = True
            pending = self.want_write = bool(self.out)
        if pending:
            self.runtime.sync_interest(self)
        else:
            self.runtime.close(self)

    def refuse(self, exchange: Exchange, status: int, why: str) -> None:
        """Reactor thread: answer the exchange ourselves and close (overload)."""
        with self.lock:
            self.exchange = None
            self.proto.close_after_current()
            response = error_response(status, why, {"retry-after": "1"})
            self.proto.send_response(exchange.stream_id, response)
            self.proto.send_data(exchange.stream_id, response.body.data)
            self.proto.end_stream(exchange.stream_id)
            data = self.proto.data_to_send()
        self.send_and_close(data)

    def write(self, data: bytes) -> None:
        """Worker thread: send ``data``, waiting only while too much is pending."""
        if not data:
            return
        with self.lock:
            if self.closed:
                raise ClientDisconnected("connection closed")
            if not self.out:  # nothing queued ahead of us: try the kernel directly
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise ClientDisconnected(str(exc)) from None
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
                self.last_progress = time.monotonic()
            self.out += data
            must_arm = not self.want_write
            self.want_write = True
            if len(self.out) > HIGH_WATER:
                deadline = time.monotonic() + self.runtime.config.io_timeout
                if must_arm:
                    self.runtime.call_soon(lambda: self.runtime.sync_interest(self))
                    must_arm = False
                while len(self.out) > HIGH_WATER:
                    if self.closed:
                        raise ClientDisconnected("connection closed")
                    left = deadline - time.monotonic()
                    if left <= 0 or not self.writable.wait(left):
                        raise ClientDisconnected("client stopped reading")
        if must_arm:
            self.runtime.call_soon(lambda: self.runtime.sync_interest(self))

    def finish(self, exchange: Exchange) -> Exchange | None:
        """Worker thread, after a response: close, go idle, or start a pipelined request."""
        runtime = self.runtime
        following = None
        resume = False
        with self.lock:
            self.exchange = None
            data = self.proto.data_to_send()  # e.g. an error queued by a broken body
            closing = self.proto.should_close or self.closed
            if not closing:
                following = self.absorb(self.proto.events())
                if following is None:
                    self.set_deadline(runtime.config.keep_alive_timeout, IDLE_DEADLINE)
                if self.paused and (following is None or following.inbox is not None):
                    self.paused = False
                    resume = True
        if closing:
            runtime.call_soon(lambda: self.send_and_close(data))
            return None
        if data:
            self.write(data)
        if resume:
            runtime.call_soon(lambda: runtime.sync_interest(self))
        return following


# 3. One request on a worker -----------------------------------------------------

class Exchange:
    """A request and its response, run on a worker thread."""

    def __init__(self, channel: Channel, started: RequestReceived) -> None:
        self.channel = channel
        self.stream_id = started.stream_id
        self.request = started.request
        self.inbox = PooledBody(channel, started.stream_id) if started.has_body else None

    def run(self) -> None:
        exchange: Exchange | None = self
        while exchange is not None:  # pipelined requests continue on this worker
            exchange = exchange._run_one()

    def _run_one(self) -> Exchange | None:
        channel = self.channel
        runtime = channel.runtime
        request = self.request
        if self.inbox is not None:
            request.body = RequestBody(self.inbox.read_chunk)
        try:
            response = call_handler(runtime.handler, request)
            if runtime.stopping:
                with channel.lock:
                    channel.proto.close_after_current()
            write_response(channel.proto, self.stream_id, response, channel.write, channel.lock)
        except (ClientDisconnected, OSError):
            with channel.lock:
                channel.proto.abort_stream(self.stream_id)
        return channel.finish(self)


class PooledBody(BodyInbox):
    """``request.body`` on a worker: chunks arrive from the reactor thread."""

    def __init__(self, channel: Channel, stream_id: int) -> None:
        super().__init__(stream_id)
        self.channel = channel
        self.ready = threading.Condition(channel.lock)

    def read_chunk(self) -> bytes:
        channel = self.channel
        runtime = channel.runtime
        timeout = runtime.config.io_timeout
        while True:
            with channel.lock:
                chunk = self.take()
                if chunk is not None:
                    resume = channel.paused and self.buffered <= BODY_HIGH_WATER // 2
                    if resume:
                        channel.paused = False
                    break
                go_ahead = b""
                if channel.proto.expects_continue:
                    channel.proto.send_continue(self.stream_id)
                    go_ahead = channel.proto.data_to_send()
                elif not self.ready.wait(timeout) and self.take_would_wait():
                    raise HTTPError(408, "request body not received in time")
            if go_ahead:
                channel.write(go_ahead)
        if resume:
            runtime.call_soon(lambda: runtime.sync_interest(channel))
        return chunk

    def take_would_wait(self) -> bool:
        return not self.chunks and not self.ended and self.error is None
