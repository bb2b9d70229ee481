"""One hybrid connection, as the reactor and its workers share it; one request on a worker."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

from protocols import (
    ClientDisconnected,
    ConnectionClosed,
    ConnectionInfo,
    Event,
    HTTPError,
    ProtocolFailed,
    RequestBody,
    RequestReceived,
    server_connection,
)

from .._streams import StreamSet
from .._threads import BodyInbox, write_response
from ..common import call_handler, error_response, gather_body_first, socket_address

if TYPE_CHECKING:
    from .reactor import HybridRuntime

__all__ = ["Channel", "Exchange", "PooledBody"]

RECV_SIZE = 64 * 1024
HIGH_WATER = 256 * 1024  # pending output past which a streaming worker waits
BODY_HIGH_WATER = 1024 * 1024  # buffered request body past which the reactor stops reading

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

# What a channel's deadline means when it passes.
HEAD_DEADLINE = "head"  # the request head did not arrive in time: 408, close
BODY_DEADLINE = "body"  # a small body being gathered did not arrive in time: 408, close
IDLE_DEADLINE = "idle"  # keep-alive idle timeout: close quietly


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
        self.proto = server_connection(info, runtime.config.limits, runtime.config.http)
        self.out = bytearray()
        self.exchange: Exchange | None = None  # HTTP/1.1: the request being answered
        self.streams: StreamSet | None = None  # HTTP/2: the streams being answered
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
        if self.proto.multiplexed:
            self.switch_to_streams(self.proto)

    def set_deadline(self, seconds: float, kind: str) -> None:
        self.deadline = time.monotonic() + seconds
        self.deadline_kind = kind

    @property
    def busy(self) -> bool:
        """A request is being answered (lock held)."""
        return self.exchange is not None or (self.streams is not None and self.streams.running > 0)

    def switch_to_streams(self, proto) -> None:
        """From now on an HTTP/2 connection: streams go to workers concurrently (lock held)."""
        config = self.runtime.config
        self.proto = proto
        self.streams = StreamSet(proto, self.lock, self.runtime.handler, config.io_timeout,
                                 self.flush, self._stream_done, flush_whole=self.queue_whole)
        self.set_deadline(config.keep_alive_timeout, IDLE_DEADLINE)

    def streams_settled(self) -> bool:
        """HTTP/2 (lock held): keep the idle deadline current; True when the connection should close."""
        if self.streams.running:
            self.deadline = None
        elif self.deadline is None:
            self.set_deadline(self.runtime.config.keep_alive_timeout, IDLE_DEADLINE)
        return self.proto.should_close and not self.streams.running

    def _stream_done(self) -> None:
        """Worker thread, after an HTTP/2 stream: close if that was the last one owed."""
        with self.lock:
            closing = self.streams_settled() and not self.closed
        if closing:
            self.runtime.call_soon(lambda: self.send_and_close(b""))

    def absorb(self, events: list[Event]) -> Exchange | None:
        """File protocol events (lock held). Returns a new exchange to dispatch, if any."""
        started = None
        for event in events:
            if type(event) is RequestReceived:
                exchange = self.exchange = Exchange(self, event)
                self.deadline = None
                if exchange.inbox is not None and gather_body_first(event.request, self.proto):
                    exchange.gathering = True  # dispatched once the body is in (see gather_body_first)
                    self.set_deadline(self.runtime.config.io_timeout, BODY_DEADLINE)
                else:
                    started = exchange
            elif self.exchange is not None:
                inbox = self.exchange.inbox
                if inbox is not None:
                    inbox.absorb(event)
                    inbox.ready.notify_all()
                    if self.exchange.gathering and (inbox.ended or inbox.error is not None):
                        self.exchange.gathering = False
                        self.deadline = None
                        started = self.exchange
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

    def flush(self, wait: bool = True) -> None:
        """Send what the protocol has queued; a worker waits while too much is pending.

        Taking the bytes and queueing them happen under one hold of the lock,
        so output leaves in the order the protocol produced it, whichever
        thread flushes (HTTP/2 streams share one connection). The reactor
        passes ``wait=False``: it must never block.
        """
        with self.lock:
            data = self.proto.data_to_send()
            if not data:
                return
            if self.closed:
                if not wait:
                    return
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
            if wait and len(self.out) > HIGH_WATER:
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

    def queue_whole(self) -> None:
        """Worker thread: send a whole in-memory response without waiting for the client.

        The bytes exist already; what the kernel does not take now the
        reactor sends as the client reads, and the worker moves on.
        """
        self.flush(wait=False)

    def finish(self, exchange: Exchange) -> Exchange | None:
        """Worker thread, after a response: close, go idle, or start a pipelined request."""
        runtime = self.runtime
        following = None
        resume = False
        with self.lock:
            self.exchange = None
            closing = self.proto.should_close or self.closed
            data = self.proto.data_to_send() if closing else b""
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
        self.flush()  # e.g. an error queued by a broken body
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
        self.gathering = False  # its body is being read before a worker is involved

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
            write_response(channel.proto, self.stream_id, response, channel.flush, channel.lock,
                           flush_whole=channel.queue_whole)
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
                go_ahead = False
                if channel.proto.expects_continue:
                    channel.proto.send_continue(self.stream_id)
                    go_ahead = True
                elif not self.ready.wait(timeout) and self.take_would_wait():
                    raise HTTPError(408, "request body not received in time")
            if go_ahead:
                channel.flush()
        if resume:
            runtime.call_soon(lambda: runtime.sync_interest(channel))
        return chunk
