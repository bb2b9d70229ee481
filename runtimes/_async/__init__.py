"""The event-loop runtimes' one driver, written once on anyio.

``asyncio_runtime`` and ``trio_runtime`` differ only in which event loop
``anyio.run`` starts (and asyncio brings a faster transport of its own);
everything else, from accepting to shutting down, is this package.
hypercorn keeps a tree of worker code per event loop and the two drift
apart; here there is one driver and two thin edges.

Read it in this order; each module imports only the ones above it:

1. ``transport.py``: :class:`~.transport.AsyncTransport`, the seam every
   read, write and close of a client socket goes through (receive, send,
   aclose, and the addresses). The driver never touches a socket, so a TLS
   transport slots in without touching it.
2. ``exchange.py``: one request's life, for HTTP/1.1 and HTTP/2 alike:
   :class:`~.exchange.AsyncBody` (the one body reader), the gather-before-
   dispatch rule, the handler call (awaited, on the worker pool, or
   inline) and the response writer. It knows the server as a
   :class:`~.exchange.Host` and the connection (or stream set) that
   carries it as a :class:`~.exchange.Carrier`.
3. ``streams.py``: :class:`~.streams.StreamSet`, overlapping streams
   (HTTP/2): the connection's task reads, a task per stream answers. It
   knows its connection as a :class:`~.streams.Line`.
4. ``connection.py``: :class:`~.connection.Connection`, one connection's
   life as a task: requests one at a time on the hot path, a protocol
   switch, the hand-over to a stream set; its deadlines.
5. ``waiting.py``: :class:`~.waiting.WaitingRoom`, where an accepted
   socket waits for its first byte with no transport, task or protocol
   state (one ``epoll`` set for all of them), so that a burst of
   connections, or thousands that stay silent, cost next to nothing.
6. ``server.py``: :class:`~.server.AsyncRuntime` starts the loop;
   :class:`~.server.AsyncServer` accepts, sweeps deadlines, runs blocking
   handlers on the same elastic, bounded ``WorkerPool`` the hybrid runtime
   uses (so the two differ only in how sockets wait, and overload gets the
   same 503), and shuts down gracefully. To connections it is the small
   :class:`~.connection.Server` interface.

Deadlines, one owner each (the module docstrings say more): the waiting
room owns HEAD until the first byte, then hands it to the connection; the
connection task owns HEAD and IDLE on HTTP/1.1, the stream set owns IDLE on HTTP/2; a
body read owns BODY; the sender owns SEND. None costs a cancel scope on the
hot path: one sweeper task checks them all every tick.

The backend edges supply the loop's own thread-safe "call this soon"
(:meth:`~.server.AsyncRuntime.thread_notifier`: asyncio's
``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``), which a
worker uses to say its handler is done without waiting for the loop; and,
where the loop's own are cheaper than anyio's, what each connection costs:
its transport (:meth:`~.server.AsyncRuntime.open_transport`), its task
(:meth:`~.server.AsyncRuntime.connection_tasks`) and its cancel scope
(:meth:`~.server.AsyncRuntime.cancel_scope`). The defaults are anyio's.
"""

from .server import AsyncRuntime

__all__ = ["AsyncRuntime"]
