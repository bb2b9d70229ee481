"""The event-loop runtimes' one driver, written once on anyio.

``asyncio_runtime`` and ``trio_runtime`` differ only in which event loop
``anyio.run`` starts; everything else, from accepting to shutting down, is
this module. hypercorn keeps a tree of worker code per event loop and the two
drift apart; here there is one driver and two one-line edges.

Read it in this order:

1. ``server.py``: :meth:`AsyncRuntime.serve` starts the loop;
   :meth:`AsyncServer.run` accepts connections until told to stop, then
   shuts down gracefully.
2. ``connection.py``: :meth:`AsyncConnection.serve`, one connection's life,
   as a task.
3. ``connection.py``: :meth:`AsyncConnection.call_handler`: how the *same* handlers run here.
   An ``async def`` handler is awaited. A plain blocking handler goes to the
   same elastic, bounded ``WorkerPool`` the hybrid runtime uses (so the two
   differ only in how sockets wait, and overload gets the same 503): a
   blocking call blocks a thread, not the loop. With
   ``blocking_handlers="inline"`` it runs on the loop itself, which is fast
   for handlers that never block and the clearest demonstration of what one
   blocking call does to everyone else.

The backend edges supply one thing: :meth:`AsyncRuntime.thread_notifier`,
the loop's own thread-safe "call this soon" (asyncio's
``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``), which a
worker uses to say its handler is done without waiting for the loop.
4. ``connection.py``: :class:`AsyncBodyInbox`: the request body, awaited by async handlers and
   fetched through the loop by handlers on threads.
"""

from .server import AsyncRuntime

__all__ = ["AsyncRuntime"]
