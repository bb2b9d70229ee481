"""ASGI 3 applications (HTTP and lifespan) on astra's event-loop runtimes.

::

    from astra import ASGIHandler, Server
    from myapp import app  # a Starlette or FastAPI app, or any ASGI 3 callable

    Server.bind("127.0.0.1:8000", runtime="asyncio").serve(ASGIHandler(app))

:class:`ASGIHandler` makes the app an ``async def`` astra handler; astra's
protocol layer still does the HTTP (both versions, its limits, timeouts and
defences), so the app sees only requests astra accepted. Read in this order:

1. ``exchange.py``: one request between the app's task and the connection's
   (the handoff, backpressure, disconnects);
2. ``lifespan.py``: the lifespan protocol;
3. ``handler.py``: the scope, starting the app's task, and the lifespan
   hook through which the server hosts the app's tasks.

What is implemented: the ``http`` scope at spec version 2.4 (``send()``
raises :class:`ClientGone`, an ``OSError``, once the client has gone) and
lifespan with its ``state`` extension, and over HTTPS the ``tls`` extension
(``scope["extensions"]["tls"]``: version and cipher suite as numbers, the
server's certificate, the client's chain and name). Not implemented:
WebSockets, and the ``http.response.trailers``, ``pathsend`` and
``zerocopysend`` extensions (none is advertised).
"""

from .exchange import ClientGone
from .handler import ASGIHandler
from .lifespan import LifespanFailed, LifespanMode

__all__ = ["ASGIHandler", "ClientGone", "LifespanFailed", "LifespanMode"]
