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

1. ``reactor.py``: :meth:`HybridRuntime.serve`, the reactor loop (accept,
   read, flush, timers), dispatching each ready request to the pool, and the
   shutdown at its end.
2. ``connection.py``: :class:`Connection`, one connection as the reactor
   and the workers share it, and the small ``Loop`` interface through which
   it asks the reactor for anything.

One request's life on a worker (body, handler, response, a pipelined
request after it) is :class:`~.._sync.StreamSet`, which every thread
runtime shares, for HTTP/1.1 and HTTP/2 alike. The worker pool
(``_pool.WorkerPool``: starts empty, grows to ``max_workers``, shrinks after
``worker_keep_alive`` seconds idle, refuses past ``max_queued_requests``) is
shared with ``pinned`` and the event-loop runtimes.

Who does what: only the reactor waits on sockets, changes the selector and
closes sockets. A worker with a response ready tries one non-blocking
``send`` itself: handing a ready response to the reactor would cost a wake-up
and two thread switches per request for nothing. Whatever the kernel does not
take is left for the reactor to flush, and the worker waits (on a condition,
not a socket) only while more than ``HIGH_WATER`` bytes are pending: that is
the backpressure a slow reader exerts on a streaming handler.

Threading model: the reactor thread alone waits on sockets, changes the
selector, closes sockets, runs the timers, and owns the connection table,
the counters and the heap trimmer. Workers run a request from handler to
response and try one non-blocking send themselves; what the kernel does not
take waits in the connection's ``out`` for the reactor. ``Connection.lock``
(the stream set's) guards the protocol, ``out``, the deadlines and the
interest flags, and its ``writable`` condition is the workers'
backpressure. Workers ask the reactor for anything through ``call_soon``
(a queue and a wake-up flag under one lock, and the waker). A worker
sending a file takes the lock around each ``sendfile``.
"""

from .reactor import HybridRuntime

__all__ = ["HybridRuntime"]
