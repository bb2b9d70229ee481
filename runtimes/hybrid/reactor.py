"""The hybrid runtime's reactor: one thread that waits on every socket and every timer."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from protocols import ClientDisconnected, ProtocolSwitched, RequestReceived, error_response_bytes

from .._threads import WorkerPool, reject_connection
from ..common import Runtime, discard_unread, logger, thread_count
from .connection import (
    BODY_DEADLINE,
    BODY_HIGH_WATER,
    HEAD_DEADLINE,
    HIGH_WATER,
    IDLE_DEADLINE,
    READ,
    RECV_SIZE,
    WRITE,
    Channel,
    Exchange,
)

__all__ = ["HybridRuntime"]

TICK = 0.1  # how often the reactor checks deadlines (timeouts are this precise)
_WAKE = object()  # selector data: the wake-up socket
_LISTENER = object()  # selector data: a listening socket


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
                        try:
                            if mask & READ:
                                self._on_readable(channel)
                            if mask & WRITE and not channel.closed:
                                self._on_writable(channel)
                        except Exception:  # a bug must cost one connection, not the server
                            logger.exception("connection failed")
                            self.close(channel)
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
            events = channel.proto.events()
            if events and type(events[-1]) is ProtocolSwitched:
                channel.switch_to_streams(events[-1].connection)
                events = channel.proto.events()
            if channel.streams is not None:
                started_streams = channel.streams.absorb(events)
                closing = channel.streams_settled()
        if channel.streams is not None:
            if not data:
                channel.eof = True
            for stream in started_streams:
                self.dispatch_stream(channel, stream)
            channel.flush(wait=False)  # SETTINGS and PING acknowledgements, WINDOW_UPDATEs
            if closing:
                channel.send_and_close(b"")
            else:
                self.sync_interest(channel)
            return
        with channel.lock:
            if data and channel.exchange is None and channel.deadline_kind is IDLE_DEADLINE:
                channel.set_deadline(self.config.header_timeout, HEAD_DEADLINE)
            started = channel.absorb(events)
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

    def dispatch_stream(self, channel: Channel, stream: RequestReceived) -> None:
        """An HTTP/2 stream to a worker; if none can take it, refuse the stream (the client may retry it)."""
        if not self.pool.submit(lambda: channel.streams.serve(stream)):
            self.overloaded += 1
            with channel.lock:
                channel.proto.refuse_stream(stream.stream_id)
                channel.streams.running -= 1
                channel.streams.inboxes.pop(stream.stream_id, None)

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
                    gathering = channel.exchange is not None and channel.exchange.gathering
                    if (channel.busy and not gathering) or channel.deadline is None:
                        continue  # a request arrived (or its body did) in the meantime
                    kind = channel.deadline_kind
                    channel.deadline = None
                if kind is HEAD_DEADLINE or kind is BODY_DEADLINE:
                    channel.send_and_close(error_response_bytes(408, f"request {kind} not received in time"))
                else:
                    self.close(channel)
            elif channel.out and now - channel.last_progress > io_timeout:
                self.close(channel)  # the client stopped reading our response
            if channel.streams is not None and channel.streams.gathering:
                with channel.lock:
                    late = channel.streams.overdue(now)
                for stream in late:  # a small HTTP/2 body that never finished arriving
                    channel.streams.refuse(stream, 408, "request body not received in time",
                                           flush=lambda channel=channel: channel.flush(wait=False))

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
            if channel.streams is not None:
                channel.streams.fail_all(ClientDisconnected("connection closed"))
            if channel.registered:
                self.selector.unregister(channel.sock)
                channel.registered = 0
            discard_unread(channel.sock)
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
                busy = channel.busy or bool(channel.out)
                channel.proto.close_after_current()  # on HTTP/2: GOAWAY, the streams go on
                idle_streams = channel.streams is not None and not channel.streams.running
                goodbye = channel.proto.data_to_send() if idle_streams else b""
            if channel.streams is not None and channel.streams.running:
                try:
                    channel.flush(wait=False)  # closed by the last stream to finish
                except ClientDisconnected:  # the client is gone already: its streams are moot
                    self.close(channel)
            elif channel.streams is not None:
                channel.send_and_close(goodbye)
            elif busy:
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
